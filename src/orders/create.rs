//! Order creation in three phases, so no transaction is ever open across the provider:
//! 1. one short transaction stores the account and the pending order (and ties it to the
//!    Idempotency-Key claim, if any); 2. the provider is asked for a PaymentIntent with the
//!    order's own key; 3. one statement attaches it. A crash or provider outage between 1
//!    and 3 leaves a pending order with no intent: nothing a shopper can pay. Resuming it
//!    (a retried request, the reconciler) repeats 2 with the same key: same intent.

use diesel_async::AsyncConnection;
use uuid::Uuid;

use crate::db::{self, orders::Order};
use crate::domain::email::Email;
use crate::domain::order::OrderStatus;
use crate::error::AppError;
use crate::payments::{CreateIntent, ProviderError};
use crate::state::AppState;

pub struct NewOrderRequest {
    pub email: Email,
    pub pack_id: String,
}

/// Validates raw input into a request; errors are 422 with a field-specific code.
pub fn validate(email: &str, pack_id: &str) -> Result<NewOrderRequest, AppError> {
    let email = Email::parse(email).map_err(|m| AppError::unprocessable("invalid_email", m))?;
    let pack_id = pack_id.trim();
    if pack_id.is_empty() || pack_id.len() > 64 {
        return Err(AppError::unprocessable(
            "unknown_pack",
            "pack_id is required",
        ));
    }
    // No pack id has one, and a NUL would make Postgres refuse the lookup (a 500).
    if pack_id.chars().any(char::is_control) {
        return Err(AppError::unprocessable(
            "unknown_pack",
            "pack_id holds a control character",
        ));
    }
    Ok(NewOrderRequest {
        email,
        pack_id: pack_id.to_owned(),
    })
}

/// Creates (or, with `resume`, finishes) an order. `idempotency_key` is the caller's
/// claimed key: the order id is recorded on it in the same transaction as the order.
#[tracing::instrument(skip_all, fields(order_id))]
pub async fn create_order(
    state: &AppState,
    req: &NewOrderRequest,
    idempotency_key: Option<&str>,
    resume: Option<Uuid>,
) -> Result<(Order, String), AppError> {
    let mut conn = state.db.get_verified().await?;
    let existing = match resume {
        Some(id) => db::orders::find(&conn, id).await?,
        None => None,
    };
    let order = match existing {
        Some(order) => order,
        None => {
            refuse_card_testing(state, &mut conn, &req.email).await?;
            let pack = db::packs::find(&mut conn, &req.pack_id)
                .await?
                .ok_or_else(|| {
                    AppError::unprocessable(
                        "unknown_pack",
                        format!("no pack named {:?}", req.pack_id),
                    )
                })?;
            let email = req.email.clone();
            let key = idempotency_key.map(str::to_owned);
            let order = conn
                .transaction::<_, diesel::result::Error, _>(async move |c| {
                    let account_id = db::accounts::upsert(c, &email).await?;
                    let id = Uuid::new_v4();
                    let provider_key = format!("paidonce-order-{id}");
                    let order = db::orders::insert(
                        c,
                        &db::orders::NewOrder {
                            id,
                            account_id,
                            pack_id: &pack.id,
                            credits: pack.credits,
                            amount: pack.amount,
                            currency: &pack.currency,
                            provider_key: &provider_key,
                        },
                    )
                    .await?;
                    db::orders::insert_transition(
                        c,
                        id,
                        None,
                        OrderStatus::Pending,
                        "created",
                        None,
                    )
                    .await?;
                    if let Some(key) = &key {
                        db::idempotency::set_order(c, key, id).await?;
                    }
                    Ok(order)
                })
                .await?;
            metrics::counter!("orders_created_total").increment(1);
            order
        }
    };
    tracing::Span::current().record("order_id", tracing::field::display(order.id));
    let email = db::accounts::email_of(&mut conn, order.account_id).await?;
    if order.payment_intent_id.is_some() {
        return Ok((order, email));
    }
    // The provider call happens with no connection held: a slow provider must not
    // make other requests queue for database connections.
    drop(conn);
    let order = attach_intent(state, order, Some(req.email.as_str())).await?;
    Ok((order, email))
}

/// RATE_LIMIT_FAILED_PAYMENTS: an e-mail whose payments keep failing gets no new order
/// until its window passes. Counted from the database, so every instance agrees.
async fn refuse_card_testing(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    email: &Email,
) -> Result<(), AppError> {
    let rate = state.config.failed_payments;
    let since = chrono::Utc::now()
        - chrono::Duration::from_std(rate.window).map_err(anyhow::Error::from)?;
    let failed = db::orders::failed_payments_since(conn, email.as_str(), since).await?;
    // Over the rate: more failures than it allows in its window.
    if failed > i64::from(rate.count) {
        metrics::counter!("rate_limited_total", "limit" => "failed_payments").increment(1);
        return Err(AppError::RateLimited {
            code: "too_many_failed_payments",
            message: "too many failed payments for this e-mail; try again later or contact support"
                .into(),
            retry_after_secs: rate.window.as_secs(),
        });
    }
    Ok(())
}

/// Phase 2 and 3 for an order without an intent. Also used by the reconciler and the
/// pay page, which pass no `email`: it is read from the order's account when Stripe is
/// to send its receipt (a resumed creation must ask with the very same parameters).
pub async fn attach_intent(
    state: &AppState,
    order: Order,
    email: Option<&str>,
) -> Result<Order, AppError> {
    let receipt_email = match (state.config.stripe_receipts, email) {
        (false, _) => None,
        (true, Some(email)) => Some(email.to_owned()),
        (true, None) => {
            let mut conn = state.db.get().await?;
            Some(db::accounts::email_of(&mut conn, order.account_id).await?)
        }
    };
    let request = CreateIntent {
        order_id: order.id,
        amount: order.amount,
        currency: &order.currency,
        description: format!("{} credits ({})", order.credits, order.pack_id),
        idempotency_key: &order.provider_key,
        receipt_email: receipt_email.as_deref(),
    };
    let intent = match state.provider.create_intent(&request).await {
        Ok(intent) => intent,
        Err(ProviderError::Rejected { status, message }) => {
            return Err(refused(state, &order, status, &message).await);
        }
        Err(other) => return Err(other.into()),
    };
    if intent.amount != order.amount || !intent.currency.eq_ignore_ascii_case(&order.currency) {
        return Err(AppError::Provider(anyhow::anyhow!(
            "provider made an intent for {} {} instead of {} {}",
            intent.amount,
            intent.currency,
            order.amount,
            order.currency
        )));
    }
    let Some(client_secret) = intent
        .client_secret
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return Err(AppError::Provider(anyhow::anyhow!(
            "provider answered without a usable client_secret"
        )));
    };
    // Attaches only where nothing is attached yet, so it is repeatable: the database may
    // have restarted while Stripe answered, and had a first try gone through, the second
    // finds the intent attached, as below.
    let (conn, attached) = state
        .db
        .send_repeatable::<_, AppError, _>(async |c| {
            db::orders::attach_payment_intent(c, order.id, &intent.id, client_secret).await
        })
        .await?;
    match attached {
        Some(updated) => Ok(updated),
        None => {
            // Someone else attached first (a concurrent resume): same key, so same intent.
            let current = db::orders::find(&conn, order.id)
                .await?
                .ok_or(AppError::NotFound("order"))?;
            if current.payment_intent_id.as_deref() != Some(intent.id.as_str()) {
                return Err(AppError::Internal(anyhow::anyhow!(
                    "order {} already has another PaymentIntent attached",
                    order.id
                )));
            }
            Ok(current)
        }
    }
}

/// The provider refused to make the order's intent (a 4xx). Stripe remembers the answer
/// under the order's key, so no retry can ever succeed: the order is canceled through
/// the one settlement path, with the provider's reason on its timeline and in the log.
async fn refused(state: &AppState, order: &Order, status: u16, message: &str) -> AppError {
    tracing::warn!(order_id = %order.id, status, reason = message, "provider refused to create the PaymentIntent");
    let reason: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let cause = format!("provider_refused ({status}): {reason}");
    let reference = crate::orders::settle::OrderRef {
        metadata_order_id: Some(order.id.to_string()),
        payment_intent_id: None,
        charge_id: None,
    };
    let fact = crate::domain::order::PaymentFact {
        payment_intent_id: None,
        kind: crate::domain::order::FactKind::Canceled,
    };
    let outbox = state.config.outbox();
    let canceled = match state.db.get().await {
        Ok(mut conn) => conn
            .transaction::<_, diesel::result::Error, _>(async |c| {
                crate::orders::settle::apply(c, &reference, &fact, &cause, outbox).await
            })
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = canceled {
        tracing::warn!(order_id = %order.id, error = %e, "could not cancel the refused order; the reconciler will");
    }
    AppError::ProviderRefused(anyhow::anyhow!("provider refused ({status}): {message}"))
}
