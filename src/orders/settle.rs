//! The only place an order changes status or credits move. Callers: the webhook (and
//! the event catch-up, which runs the webhook's transaction), the reconciler and the
//! return page. Must run inside a transaction: it locks the order row
//! first, so concurrent callers for one order serialise here, and each sees the status
//! the previous one committed. The ledger's unique key refuses a second grant even if
//! this logic ever raced.

// Spelled out rather than diesel's `QueryResult` alias, which mutation testing cannot
// see through (every return-value mutant of these functions was unviable with it).
use diesel::result::Error as DbError;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::notify::{Note, NotificationKind, Outbox};

use crate::db::{charges, ledger, orders};
use crate::domain::ledger::LedgerKind;
use crate::domain::order::{Change, Decision, OrderStatus, PaymentFact, decide};

/// How the provider's object points at the order.
#[derive(Debug, Clone, Default)]
pub struct OrderRef {
    /// `metadata.order_id`, as sent (may be anything).
    pub metadata_order_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// The charge the object names (a refund's or dispute's `charge`, a success's
    /// `latest_charge`): remembered for the order, and the last way to find it.
    pub charge_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    UnknownOrder,
    Noop {
        order_id: Uuid,
    },
    Mismatch {
        order_id: Uuid,
        reason: String,
    },
    Applied {
        order_id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
    },
}

/// The order a payment fact points at, row-locked until the transaction ends.
#[derive(Debug, Clone)]
pub struct Locked {
    pub order: orders::Order,
    /// Found by PaymentIntent while `metadata.order_id` named something else.
    names_other_order: bool,
    /// The charge the fact named, remembered for the order unless the fact contradicts it.
    charge_id: Option<String>,
}

impl Locked {
    /// What `fact` does to this order; pure, writes nothing.
    pub fn decide(&self, fact: &PaymentFact) -> Decision {
        if self.names_other_order {
            Decision::Mismatch(format!(
                "metadata.order_id names another order; its PaymentIntent {} is order {}'s",
                self.order.payment_intent_id.as_deref().unwrap_or("?"),
                self.order.id
            ))
        } else {
            decide(&self.order.state(), fact)
        }
    }

    /// The result `write` brings about for `decision`.
    pub fn settled(&self, decision: &Decision) -> Settled {
        let order_id = self.order.id;
        match decision {
            Decision::Noop => Settled::Noop { order_id },
            Decision::Apply(change) if change.only_moves_the_sync_time(&self.order.state()) => {
                Settled::Noop { order_id }
            }
            Decision::Mismatch(reason) => Settled::Mismatch {
                order_id,
                reason: reason.clone(),
            },
            Decision::Apply(change) => Settled::Applied {
                order_id,
                from: self.order.status,
                to: change.to,
            },
        }
    }
}

/// Applies `fact` to the order `reference` names. `cause` is recorded on the transition
/// and ledger rows (an event id, `reconciler`, `return_sync`).
pub async fn apply(
    conn: &AsyncPgConnection,
    reference: &OrderRef,
    fact: &PaymentFact,
    cause: &str,
    outbox: Outbox,
) -> Result<Settled, DbError> {
    let Some(locked) = lock(conn, reference).await? else {
        return Ok(Settled::UnknownOrder);
    };
    let decision = locked.decide(fact);
    write(conn, &locked, &decision, cause, outbox).await?;
    Ok(locked.settled(&decision))
}

/// Finds and row-locks the order: by `metadata.order_id`, else by PaymentIntent, else by
/// a charge seen before. The first lookup is sent as soon as the future is first polled,
/// so a caller can pipeline it behind another statement (the webhook's dedup insert).
pub async fn lock(
    conn: &AsyncPgConnection,
    reference: &OrderRef,
) -> Result<Option<Locked>, DbError> {
    let found = |order, names_other_order| {
        Some(Locked {
            order,
            names_other_order,
            charge_id: reference.charge_id.clone(),
        })
    };
    let by_metadata = reference
        .metadata_order_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok());
    if let Some(id) = by_metadata
        && let Some(order) = orders::lock(conn, id).await?
    {
        return Ok(found(order, false));
    }
    let names_other = reference.metadata_order_id.is_some();
    if let Some(pi) = &reference.payment_intent_id
        && let Some(order) = orders::lock_by_payment_intent(conn, pi).await?
    {
        return Ok(found(order, names_other));
    }
    if let Some(charge) = &reference.charge_id
        && let Some(order) = orders::lock_by_charge(conn, charge).await?
    {
        return Ok(found(order, names_other));
    }
    Ok(None)
}

/// Carries out a decision on the locked order: nothing, review, or the change.
pub async fn write(
    conn: &AsyncPgConnection,
    locked: &Locked,
    decision: &Decision,
    cause: &str,
    outbox: Outbox,
) -> Result<(), DbError> {
    let order = &locked.order;
    // Sent first, in the same round trip as the change's statements.
    let remember = async {
        match (&locked.charge_id, decision) {
            (Some(charge), Decision::Noop | Decision::Apply(_)) => {
                charges::remember(conn, charge, order.id).await
            }
            _ => Ok(()),
        }
    };
    let ((), ()) = futures_util::try_join!(
        remember,
        write_decision(conn, order, decision, cause, outbox)
    )?;
    Ok(())
}

async fn write_decision(
    conn: &AsyncPgConnection,
    order: &orders::Order,
    decision: &Decision,
    cause: &str,
    outbox: Outbox,
) -> Result<(), DbError> {
    match decision {
        Decision::Noop => Ok(()),
        Decision::Mismatch(reason) => {
            tracing::warn!(order_id = %order.id, cause, reason = %reason, "payment contradicts the order; flagged for review");
            metrics::counter!("orders_mismatch_total").increment(1);
            if order.status == OrderStatus::NeedsReview {
                return Ok(());
            }
            let review = crate::domain::order::Change {
                to: OrderStatus::NeedsReview,
                grant: None,
                revoke: None,
                amount_refunded: order.amount_refunded,
                dispute: order.dispute,
                refunds_as_of: order.refunds_as_of,
                revoked: order.revoked,
                marks_paid: false,
                reason: Some(reason.clone()),
            };
            write_change(conn, order, &review, cause, outbox).await
        }
        Decision::Apply(change) => {
            write_change(conn, order, change, cause, outbox).await?;
            if change.to != order.status {
                metrics::counter!("orders_settled_total", "status" => change.to.as_str())
                    .increment(1);
            }
            Ok(())
        }
    }
}

/// The change's statements go out together, one round trip: none needs another's
/// result, and any failure (the guard below, the ledger's unique key) aborts the
/// transaction, so the others are rolled back with it. Its notifications go last in
/// that round trip: Postgres runs a pipeline's statements in order, so they see the
/// ledger rows (and the balance those put on the account) before them.
async fn write_change(
    conn: &AsyncPgConnection,
    order: &orders::Order,
    change: &Change,
    cause: &str,
    outbox: Outbox,
) -> Result<(), DbError> {
    let entry = |kind, delta, refund_total| ledger::NewEntry {
        account_id: order.account_id,
        order_id: Some(order.id),
        spend_id: None,
        kind,
        delta,
        refund_total,
        cause,
    };
    let grant = change
        .grant
        .map(|credits| entry(LedgerKind::Grant, credits, 0));
    let revoke = change
        .revoke
        .as_ref()
        .map(|r| entry(r.kind.ledger_kind(), r.delta, r.refund_total));
    let moves = change.to != order.status;
    let expected = order.expected();
    let note = |kind, delta| Note {
        kind,
        order_id: Some(order.id),
        spend_id: None,
        status: Some(change.to),
        delta,
    };
    let notes: Vec<Note> = [
        moves.then(|| note(NotificationKind::OrderUpdated, 0)),
        grant
            .as_ref()
            .map(|g| note(NotificationKind::Granted, g.delta)),
        revoke
            .as_ref()
            .map(|r| note(NotificationKind::for_ledger(r.kind, r.delta), r.delta)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (updated, (), (), (), ()) = futures_util::try_join!(
        orders::apply_change(conn, order.id, &expected, change),
        when(
            moves,
            orders::insert_transition(
                conn,
                order.id,
                Some(order.status),
                change.to,
                cause,
                change.reason.as_deref()
            )
        ),
        insert_entry(conn, grant.as_ref()),
        insert_entry(conn, revoke.as_ref()),
        crate::notify::record(conn, outbox, order.account_id, &notes),
    )?;
    if updated.is_none() {
        // Impossible under the row lock; refuse rather than write on a stale read.
        return Err(diesel::result::Error::RollbackTransaction);
    }
    Ok(())
}

/// Runs `statement` only if `needed` (an unpolled future sends nothing).
async fn when(
    needed: bool,
    statement: impl std::future::Future<Output = Result<(), DbError>>,
) -> Result<(), DbError> {
    if needed { statement.await } else { Ok(()) }
}

async fn insert_entry(
    conn: &AsyncPgConnection,
    entry: Option<&ledger::NewEntry<'_>>,
) -> Result<(), DbError> {
    match entry {
        Some(entry) => ledger::insert(conn, entry).await,
        None => Ok(()),
    }
}
