//! Asking the provider what it knows of one order's payment, and applying the answer:
//! the one path behind the reconciler, the return page and the operator's "sync".
//! Asking holds no database connection (the provider may be slow); applying is
//! `settle::apply`, the same exactly-once step as a webhook's. The operator's action
//! applies `ask`'s facts itself, in the transaction that writes its audit row.

use crate::db::orders::Order;
use crate::domain::order::{FactKind, OrderStatus, PaymentFact};
use crate::orders::settle::{self, OrderRef, Settled};
use crate::payments::{ChargeSnapshot, IntentSnapshot, ProviderError};
use crate::state::AppState;

/// How much to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The PaymentIntent alone: has it been paid, failed or canceled?
    Intent,
    /// And its latest charge's refund total (an operator's sync: a refund may have been
    /// made in Stripe's dashboard and its event lost).
    IntentAndRefunds,
}

/// What the provider said.
#[derive(Debug)]
pub struct Answer {
    pub intent: IntentSnapshot,
    pub charge: Option<ChargeSnapshot>,
    /// What the answer establishes, in the order `settle::apply` should take them.
    pub facts: Vec<PaymentFact>,
}

/// Asks the provider about PaymentIntent `pi`. An answer about another PaymentIntent is
/// refused as an invalid response: its facts would be applied to the wrong order.
pub async fn ask(state: &AppState, pi: &str, depth: Depth) -> Result<Answer, ProviderError> {
    let intent = state.provider.retrieve_intent(pi).await?;
    if intent.id != pi {
        return Err(ProviderError::InvalidResponse(format!(
            "provider answered with PaymentIntent {} for {pi}",
            intent.id
        )));
    }
    let mut facts: Vec<PaymentFact> = intent.fact().into_iter().collect();
    let charge = match (&intent.latest_charge, depth) {
        (Some(charge_id), Depth::IntentAndRefunds) => {
            let charge = state.provider.retrieve_charge(charge_id).await?;
            facts.push(PaymentFact {
                payment_intent_id: Some(pi.to_owned()),
                kind: FactKind::RefundsSynced {
                    charge_amount: charge.amount,
                    amount_refunded: charge.amount_refunded,
                    currency: charge.currency.clone(),
                    as_of: chrono::Utc::now().timestamp(),
                },
            });
            Some(charge)
        }
        _ => None,
    };
    Ok(Answer {
        intent,
        charge,
        facts,
    })
}

/// What syncing one order came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// Nothing the provider said moves the order (or another path moved it first).
    Unchanged,
    /// The order moved (`to` is `needs_review` when the answer contradicts the order).
    Changed { from: OrderStatus, to: OrderStatus },
}

/// Asks about the order's PaymentIntent and applies the answer in a transaction of its
/// own, `cause` naming who asked on the order's transition. An order without a
/// PaymentIntent has nothing to ask about: `Unchanged`.
pub async fn with_provider(state: &AppState, order: &Order, cause: &str) -> anyhow::Result<Synced> {
    let Some(pi) = order.payment_intent_id.as_deref() else {
        return Ok(Synced::Unchanged);
    };
    let answer = ask(state, pi, Depth::Intent).await?;
    let Some(fact) = answer.facts.into_iter().next() else {
        return Ok(Synced::Unchanged);
    };
    let reference = OrderRef {
        metadata_order_id: Some(order.id.to_string()),
        payment_intent_id: Some(pi.to_owned()),
        charge_id: None,
    };
    let outbox = state.config.outbox();
    let settled = state
        .db
        .transaction::<_, anyhow::Error, _>(async |c| {
            Ok(settle::apply(c, &reference, &fact, cause, outbox).await?)
        })
        .await?;
    Ok(match settled {
        Settled::Applied { from, to, .. } if from != to => Synced::Changed { from, to },
        Settled::Mismatch { .. } if order.status != OrderStatus::NeedsReview => Synced::Changed {
            from: order.status,
            to: OrderStatus::NeedsReview,
        },
        _ => Synced::Unchanged,
    })
}
