//! The only place an order changes status or credits move. Callers: the webhook, the
//! reconciler and the return page. Must run inside a transaction: it locks the order row
//! first, so concurrent callers for one order serialise here, and each sees the status
//! the previous one committed. The ledger's unique key refuses a second grant even if
//! this logic ever raced.

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::db::{ledger, orders};
use crate::domain::order::{Decision, OrderStatus, PaymentFact, decide};

/// How the provider's object points at the order.
#[derive(Debug, Clone, Default)]
pub struct OrderRef {
    /// `metadata.order_id`, as sent (may be anything).
    pub metadata_order_id: Option<String>,
    pub payment_intent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    UnknownOrder,
    Noop {
        order_id: Uuid,
    },
    Mismatch {
        order_id: Uuid,
        reason: &'static str,
    },
    Applied {
        order_id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
    },
}

impl Settled {
    pub fn order_id(&self) -> Option<Uuid> {
        match self {
            Settled::UnknownOrder => None,
            Settled::Noop { order_id }
            | Settled::Mismatch { order_id, .. }
            | Settled::Applied { order_id, .. } => Some(*order_id),
        }
    }
}

/// Applies `fact` to the order `reference` names. `cause` is recorded on the transition
/// and ledger rows (an event id, `reconciler`, `return_sync`).
pub async fn apply(
    conn: &mut AsyncPgConnection,
    reference: &OrderRef,
    fact: &PaymentFact,
    cause: &str,
) -> QueryResult<Settled> {
    let Some((order, names_other_order)) = lock_order(conn, reference).await? else {
        return Ok(Settled::UnknownOrder);
    };
    let decision = if names_other_order {
        Decision::Mismatch(
            "the event's metadata.order_id names another order than its PaymentIntent",
        )
    } else {
        decide(&order.state(), fact)
    };

    match decision {
        Decision::Noop => Ok(Settled::Noop { order_id: order.id }),
        Decision::Mismatch(reason) => {
            flag_for_review(conn, &order, cause, reason).await?;
            Ok(Settled::Mismatch {
                order_id: order.id,
                reason,
            })
        }
        Decision::Apply(change) => {
            let Some(updated) = orders::apply_change(conn, order.id, order.status, &change).await?
            else {
                // Impossible under the row lock; refuse rather than write on a stale read.
                return Err(diesel::result::Error::RollbackTransaction);
            };
            if updated.status != order.status {
                orders::insert_transition(
                    conn,
                    order.id,
                    Some(order.status),
                    updated.status,
                    cause,
                )
                .await?;
                metrics::counter!("orders_settled_total", "status" => updated.status.as_str())
                    .increment(1);
            }
            if let Some(credits) = change.grant {
                let entry = ledger::NewEntry {
                    account_id: order.account_id,
                    order_id: order.id,
                    kind: "grant",
                    delta: credits,
                    refund_total: 0,
                    cause,
                };
                ledger::insert(conn, &entry).await?;
            }
            if let Some(revocation) = &change.revoke {
                let entry = ledger::NewEntry {
                    account_id: order.account_id,
                    order_id: order.id,
                    kind: "refund",
                    delta: revocation.delta,
                    refund_total: revocation.refund_total,
                    cause,
                };
                ledger::insert(conn, &entry).await?;
            }
            Ok(Settled::Applied {
                order_id: order.id,
                from: order.status,
                to: updated.status,
            })
        }
    }
}

/// Flags the referenced order for review without applying anything (a verified event
/// that contradicts our configuration). Returns the order it flagged, if any.
pub async fn flag(
    conn: &mut AsyncPgConnection,
    reference: &OrderRef,
    cause: &str,
    reason: &'static str,
) -> QueryResult<Option<Uuid>> {
    let Some((order, _)) = lock_order(conn, reference).await? else {
        return Ok(None);
    };
    flag_for_review(conn, &order, cause, reason).await?;
    Ok(Some(order.id))
}

/// Finds and row-locks the order: by `metadata.order_id`, else by PaymentIntent. The
/// flag says the order was found by PaymentIntent while metadata named something else.
async fn lock_order(
    conn: &mut AsyncPgConnection,
    reference: &OrderRef,
) -> QueryResult<Option<(orders::Order, bool)>> {
    let by_metadata = reference
        .metadata_order_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok());
    if let Some(id) = by_metadata {
        if let Some(order) = orders::lock(conn, id).await? {
            return Ok(Some((order, false)));
        }
    }
    let Some(pi) = &reference.payment_intent_id else {
        return Ok(None);
    };
    let order = orders::lock_by_payment_intent(conn, pi).await?;
    Ok(order.map(|o| (o, reference.metadata_order_id.is_some())))
}

async fn flag_for_review(
    conn: &mut AsyncPgConnection,
    order: &orders::Order,
    cause: &str,
    reason: &str,
) -> QueryResult<()> {
    tracing::warn!(order_id = %order.id, cause, reason, "payment contradicts the order; flagged for review");
    metrics::counter!("orders_mismatch_total").increment(1);
    if order.status == OrderStatus::NeedsReview {
        return Ok(());
    }
    let review = crate::domain::order::Change {
        to: OrderStatus::NeedsReview,
        grant: None,
        revoke: None,
        amount_refunded: order.amount_refunded,
        dispute_seen: order.dispute_seen,
        marks_paid: false,
    };
    if orders::apply_change(conn, order.id, order.status, &review)
        .await?
        .is_none()
    {
        return Err(diesel::result::Error::RollbackTransaction);
    }
    orders::insert_transition(
        conn,
        order.id,
        Some(order.status),
        OrderStatus::NeedsReview,
        cause,
    )
    .await
}
