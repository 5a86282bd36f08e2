//! What an event needs from the provider before its transaction opens: the order behind
//! a charge we never saw (a dispute with `payment_intent: null`), and a failed refund's
//! effect, which only the charge's refund total now can tell. No connection is held
//! while the provider answers; a provider that cannot answer fails the delivery (Stripe
//! retries it; the catch-up counts it as an error and keeps its cursor before it).

use uuid::Uuid;

use crate::db;
use crate::domain::order::{FactKind, PaymentFact};
use crate::error::AppError;
use crate::orders::settle::OrderRef;
use crate::payments::{ChargeSnapshot, ProviderError};
use crate::state::AppState;
use crate::webhook::event::Meaning;

/// Completes `meaning` with what the provider knows. A duplicate delivery skips the
/// provider: its transaction will only record that it was seen.
pub async fn prepare(
    state: &AppState,
    event_id: &str,
    mut meaning: Meaning,
) -> Result<Meaning, AppError> {
    let Some(reference) = meaning.reference() else {
        return Ok(meaning);
    };
    let failed_refund = matches!(meaning, Meaning::RefundFailed { .. });
    let charge_to_resolve = reference
        .charge_id
        .clone()
        .filter(|_| !failed_refund && names_only_a_charge(reference));
    if !failed_refund && charge_to_resolve.is_none() {
        return Ok(meaning);
    }
    if seen_before(state, event_id).await? {
        return Ok(meaning);
    }
    if let Some(charge) = charge_to_resolve {
        if known_charge(state, &charge).await? {
            return Ok(meaning);
        }
        match state.provider.retrieve_charge(&charge).await {
            Ok(snapshot) => {
                if let Some(reference) = meaning.reference_mut() {
                    adopt(reference, &snapshot);
                }
            }
            // Not a charge the provider knows: not one of ours either.
            Err(ProviderError::NotFound | ProviderError::InvalidResponse(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(meaning);
    }
    let Meaning::RefundFailed {
        mut reference,
        charge_id,
        as_of,
    } = meaning
    else {
        return Ok(meaning);
    };
    let kind = match state.provider.retrieve_charge(&charge_id).await {
        Ok(charge) => {
            adopt(&mut reference, &charge);
            FactKind::RefundsSynced {
                charge_amount: charge.amount,
                amount_refunded: charge.amount_refunded,
                currency: charge.currency,
                as_of,
            }
        }
        Err(ProviderError::NotFound | ProviderError::InvalidResponse(_)) => {
            FactKind::Contradiction("the provider does not know the failed refund's charge")
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Meaning::Fact {
        fact: PaymentFact {
            payment_intent_id: reference.payment_intent_id.clone(),
            kind,
        },
        reference,
    })
}

/// Neither `metadata.order_id` nor a PaymentIntent: only the charge can lead to the order.
fn names_only_a_charge(reference: &OrderRef) -> bool {
    reference.payment_intent_id.is_none()
        && reference
            .metadata_order_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
            .is_none()
}

/// What the charge says about its order, where the event said nothing.
fn adopt(reference: &mut OrderRef, charge: &ChargeSnapshot) {
    if reference.payment_intent_id.is_none() {
        reference.payment_intent_id = charge.payment_intent_id.clone();
    }
    if reference.metadata_order_id.is_none() {
        reference.metadata_order_id = charge.metadata_order_id.clone();
    }
}

async fn seen_before(state: &AppState, event_id: &str) -> Result<bool, AppError> {
    Ok(state
        .db
        .read(async |c| db::events::exists(c, event_id).await)
        .await?)
}

async fn known_charge(state: &AppState, charge: &str) -> Result<bool, AppError> {
    Ok(state
        .db
        .read(async |c| db::charges::order_of(c, charge).await)
        .await?
        .is_some())
}
