//! Operator actions (SPEC §7): refund, resolve, sync and cancel. Each is checked against
//! the order's status first (409 `invalid_action`, nothing changed), claims its own key
//! (a double submit or a retried request acts once, and the provider sees that key too),
//! calls the provider outside any transaction, then applies what the provider answered
//! through `settle`, in one transaction with its audit row. Credits move only there.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::db::actions::ActionState;
use crate::db::{self, orders::Order};
use crate::domain::order::{FactKind, OrderStatus, PaymentFact};
use crate::error::AppError;
use crate::orders::settle::{self, OrderRef, Settled};
use crate::orders::sync;
use crate::payments::{CreateRefund, ProviderError};
use crate::state::AppState;
use crate::web::html::money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// In minor units; `None` refunds all that is left.
    Refund(Option<i64>),
    ResolveGrant,
    ResolveRefund,
    Sync,
    Cancel,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Refund(_) => "refund",
            ActionKind::ResolveGrant => "resolve_grant",
            ActionKind::ResolveRefund => "resolve_refund",
            ActionKind::Sync => "sync",
            ActionKind::Cancel => "cancel",
        }
    }
}

/// What was done, for the operator's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Performed {
    pub id: i64,
    pub action: String,
    pub state: ActionState,
    pub result: String,
    pub order_id: Uuid,
    pub status: OrderStatus,
    /// The same key was used before: this is that action's answer, nothing was redone.
    pub replayed: bool,
}

/// The checked plan: the refund amount is settled here, before anything is claimed.
struct Plan {
    kind: ActionKind,
    refund_amount: i64,
}

fn invalid(reason: String) -> AppError {
    AppError::Client {
        status: actix_web::http::StatusCode::CONFLICT,
        code: "invalid_action",
        message: reason,
    }
}

/// Whether `kind` makes sense for the order as it is; pure.
fn check(order: &Order, kind: ActionKind) -> Result<Plan, AppError> {
    use OrderStatus::*;
    let status = order.status;
    let left = order.amount - order.amount_refunded;
    let plan = |refund_amount| {
        Ok(Plan {
            kind,
            refund_amount,
        })
    };
    match kind {
        ActionKind::Refund(amount) => {
            if !matches!(status, Paid | PartiallyRefunded | Disputed) {
                return Err(invalid(format!(
                    "only a paid, partially refunded or disputed order can be refunded; this one is {status}"
                )));
            }
            if order.payment_intent_id.is_none() || left <= 0 {
                return Err(invalid("nothing is left to refund on this order".into()));
            }
            match amount {
                None => plan(left),
                Some(a) if (1..=left).contains(&a) => plan(a),
                Some(a) => Err(AppError::unprocessable(
                    "invalid_amount",
                    format!(
                        "amount must be between 1 and {left} (minor units left to refund), not {a}"
                    ),
                )),
            }
        }
        ActionKind::ResolveGrant | ActionKind::ResolveRefund if status != NeedsReview => {
            Err(invalid(format!(
                "only an order in needs_review can be resolved; this one is {status}"
            )))
        }
        ActionKind::ResolveGrant => plan(0),
        ActionKind::ResolveRefund => {
            if order.payment_intent_id.is_none() {
                return Err(invalid("this order has no payment to refund".into()));
            }
            plan(left.max(0))
        }
        ActionKind::Sync if order.payment_intent_id.is_none() => Err(invalid(
            "this order has no PaymentIntent yet: nothing to ask the provider about".into(),
        )),
        ActionKind::Sync => plan(0),
        ActionKind::Cancel if !status.is_unsettled() => Err(invalid(format!(
            "only a pending, processing or failed order can be canceled; this one is {status}"
        ))),
        ActionKind::Cancel => plan(0),
    }
}

/// A note is required: what the operator did and why, for whoever reads the audit later.
pub fn validate_note(note: &str) -> Result<&str, AppError> {
    let note = note.trim();
    let bad = note.is_empty()
        || note.chars().count() > 1000
        || note
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if bad {
        return Err(AppError::unprocessable(
            "invalid_note",
            "a note of 1 to 1000 characters is required (what you did and why)",
        ));
    }
    Ok(note)
}

/// Runs an operator action once per `key`.
pub async fn perform(
    state: &AppState,
    order_id: Uuid,
    kind: ActionKind,
    note: &str,
    key: &str,
) -> Result<Performed, AppError> {
    let note = validate_note(note)?;
    // A connection that has just answered: an operator's click is worth the round trip
    // (the action calls the provider anyway), and after a database restart it must not
    // be the request that finds the pool's first dead connection.
    let mut conn = state.db.get_verified().await?;
    let order = db::orders::find(&conn, order_id)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    let plan = check(&order, kind)?;
    let params = match kind {
        ActionKind::Refund(_) | ActionKind::ResolveRefund => json!({"amount": plan.refund_amount}),
        _ => json!({}),
    };
    let id = match db::actions::claim(&mut conn, order_id, kind.name(), key, note, &params).await? {
        Some(claimed) => claimed.id,
        None => {
            let earlier = db::actions::by_key(&mut conn, key)
                .await?
                .ok_or_else(|| AppError::Internal(anyhow::anyhow!("action key vanished")))?;
            if earlier.order_id != order_id || earlier.action != kind.name() {
                return Err(AppError::KeyMismatch);
            }
            match earlier.state {
                ActionState::Done => {
                    return Ok(Performed {
                        id: earlier.id,
                        action: earlier.action,
                        state: earlier.state,
                        result: earlier.result.unwrap_or_default(),
                        order_id,
                        status: order.status,
                        replayed: true,
                    });
                }
                ActionState::Failed if db::actions::retry_failed(&mut conn, earlier.id).await? => {
                    earlier.id
                }
                _ => return Err(AppError::KeyInUse),
            }
        }
    };
    drop(conn);

    let asked = ask_provider(state, &order, &plan, key).await;
    let (facts, said) = match asked {
        Ok(answer) => answer,
        Err(e) => {
            let words = e.to_string();
            if let Ok(conn) = state.db.get().await {
                let _ = db::actions::finish(&conn, id, false, &words).await;
            }
            metrics::counter!("operator_actions_total", "action" => kind.name(), "result" => "provider_error").increment(1);
            return Err(e.into());
        }
    };

    let reference = OrderRef {
        metadata_order_id: Some(order_id.to_string()),
        payment_intent_id: order.payment_intent_id.clone(),
        charge_id: None,
    };
    let outbox = state.config.outbox();
    let (result, status) = state
        .db
        .transaction::<_, AppError, _>(async |c| {
            let mut changes = Vec::new();
            for fact in &facts {
                match settle::apply(c, &reference, fact, "operator", outbox).await? {
                    Settled::Applied { from, to, .. } if from != to => {
                        changes.push(format!("order {from} → {to}"));
                    }
                    Settled::Mismatch { reason, .. } => {
                        changes.push(format!(
                            "the provider's answer contradicts the order ({reason}): needs_review"
                        ));
                    }
                    _ => {}
                }
            }
            let mut result = said.clone();
            if changes.is_empty() {
                result.push_str("; the order's status did not change");
            } else {
                result.push_str("; ");
                result.push_str(&changes.join(", "));
            }
            db::actions::finish(c, id, true, &result).await?;
            let status = db::orders::find(c, order_id)
                .await?
                .map_or(order.status, |o| o.status);
            Ok((result, status))
        })
        .await?;
    metrics::counter!("operator_actions_total", "action" => kind.name(), "result" => "done")
        .increment(1);
    tracing::info!(order_id = %order_id, action = kind.name(), result = %result, "operator action");
    Ok(Performed {
        id,
        action: kind.name().to_owned(),
        state: ActionState::Done,
        result,
        order_id,
        status,
        replayed: false,
    })
}

/// The provider's part of an action: the facts it establishes and what it did in words.
async fn ask_provider(
    state: &AppState,
    order: &Order,
    plan: &Plan,
    key: &str,
) -> Result<(Vec<PaymentFact>, String), ProviderError> {
    let pi = order.payment_intent_id.clone();
    let fact = |kind| PaymentFact {
        payment_intent_id: pi.clone(),
        kind,
    };
    let provider_key = format!("paidonce-action-{key}");
    let amount = |minor| money(minor, &order.currency);
    match plan.kind {
        ActionKind::ResolveGrant => Ok((
            vec![fact(FactKind::OperatorGrant)],
            format!("granted {} credits", order.credits),
        )),
        ActionKind::Refund(_) | ActionKind::ResolveRefund => {
            let pi = pi.as_deref().unwrap_or_default();
            let refund = state
                .provider
                .create_refund(&CreateRefund {
                    order_id: order.id,
                    payment_intent_id: pi,
                    amount: plan.refund_amount,
                    idempotency_key: &provider_key,
                })
                .await?;
            let said = format!(
                "refund {} of {} at the provider: {}",
                refund.id,
                amount(refund.amount),
                refund.status
            );
            if plan.kind == ActionKind::ResolveRefund {
                return Ok((vec![fact(FactKind::OperatorRefunded)], said));
            }
            // Credits follow the charge's refund total, as for a `charge.refunded`.
            let charge_id = match refund.charge_id {
                Some(c) => Some(c),
                None => state.provider.retrieve_intent(pi).await?.latest_charge,
            };
            let Some(charge_id) = charge_id else {
                return Ok((
                    Vec::new(),
                    format!("{said}; credits follow the provider's refund event"),
                ));
            };
            let charge = state.provider.retrieve_charge(&charge_id).await?;
            let kind = if matches!(refund.status.as_str(), "failed" | "canceled") {
                FactKind::RefundsSynced {
                    charge_amount: charge.amount,
                    amount_refunded: charge.amount_refunded,
                    currency: charge.currency,
                    as_of: chrono::Utc::now().timestamp(),
                }
            } else {
                FactKind::Refunded {
                    charge_amount: charge.amount,
                    amount_refunded: charge.amount_refunded,
                    currency: charge.currency,
                    as_of: None,
                }
            };
            Ok((vec![fact(kind)], said))
        }
        ActionKind::Sync => {
            let pi = pi.as_deref().unwrap_or_default();
            let answer = sync::ask(state, pi, sync::Depth::IntentAndRefunds).await?;
            let mut said = format!(
                "PaymentIntent {}: {}",
                answer.intent.id, answer.intent.status
            );
            if let Some(charge) = &answer.charge {
                said.push_str(&format!(
                    "; charge {}: {} refunded",
                    charge.id,
                    amount(charge.amount_refunded)
                ));
            }
            Ok((answer.facts, said))
        }
        ActionKind::Cancel => match pi.as_deref() {
            Some(pi) => {
                let intent = state.provider.cancel_intent(pi, &provider_key).await?;
                let said = format!(
                    "PaymentIntent {} canceled at the provider: {}",
                    intent.id, intent.status
                );
                Ok((intent.fact().into_iter().collect(), said))
            }
            None => Ok((
                vec![fact(FactKind::Canceled)],
                "canceled here; the provider never made a PaymentIntent".into(),
            )),
        },
    }
}
