//! Notifications to the merchant's own system (SPEC §9): the outbox written in each
//! change's transaction (`record`), and the dispatcher that delivers it (`dispatch`).

pub mod dispatch;

use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::domain::order::OrderStatus;

crate::text_enum! {
    /// What a notification announces (SPEC §9 `type`).
    pub enum NotificationKind {
        Granted => "credits.granted",
        Revoked => "credits.revoked",
        Spent => "credits.spent",
        Restored => "credits.restored",
        OrderUpdated => "order.updated",
    }
}

impl NotificationKind {
    /// The notification for a ledger row of `kind` moving `delta` credits.
    pub fn for_ledger(kind: &str, delta: i64) -> NotificationKind {
        match kind {
            "grant" => NotificationKind::Granted,
            "spend" => NotificationKind::Spent,
            "spend_reversal" => NotificationKind::Restored,
            // refund / dispute rows take credits back, or give them back after a refund
            // that failed.
            _ if delta > 0 => NotificationKind::Restored,
            _ => NotificationKind::Revoked,
        }
    }
}

/// Whether this instance writes notifications: only with MERCHANT_WEBHOOK_URL set
/// (SPEC §9: unset, no notifications; and no rows piling up that nobody sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox {
    pub enabled: bool,
}

impl Outbox {
    pub const OFF: Outbox = Outbox { enabled: false };
}

/// One change to announce. `status` is the order's status after the change.
#[derive(Debug, Clone)]
pub struct Note {
    pub kind: NotificationKind,
    pub order_id: Option<Uuid>,
    pub spend_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    pub delta: i64,
}

/// Writes `notes` for `account`, in the caller's transaction and after the change's
/// ledger rows (the balance in each is the account's balance once the change is in).
/// One round trip: `paidonce_notify` (see its migration) takes the account row's lock,
/// so per-account order is commit order, then sums the balance with a snapshot taken
/// under that lock. The body is built there once and kept as text: every retry sends
/// (and signs) the same bytes, so the receiver can deduplicate by `id`.
pub async fn record(
    mut conn: &AsyncPgConnection,
    outbox: Outbox,
    account: Uuid,
    notes: &[Note],
) -> QueryResult<()> {
    if !outbox.enabled || notes.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = notes
        .iter()
        .map(|_| format!("ntf_{}", Uuid::new_v4().simple()))
        .collect();
    let kinds: Vec<&str> = notes.iter().map(|n| n.kind.as_str()).collect();
    let orders: Vec<Option<Uuid>> = notes.iter().map(|n| n.order_id).collect();
    let spends: Vec<Option<Uuid>> = notes.iter().map(|n| n.spend_id).collect();
    let statuses: Vec<Option<&str>> = notes
        .iter()
        .map(|n| n.status.map(OrderStatus::as_str))
        .collect();
    let deltas: Vec<i64> = notes.iter().map(|n| n.delta).collect();
    diesel::sql_query("SELECT paidonce_notify($1, $2, $3, $4, $5, $6, $7)")
        .bind::<SqlUuid, _>(account)
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Text>, _>(kinds)
        .bind::<Array<Nullable<SqlUuid>>, _>(orders)
        .bind::<Array<Nullable<SqlUuid>>, _>(spends)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<BigInt>, _>(deltas)
        .cached()
        .execute(&mut conn)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_rows_map_to_their_announcement() {
        use NotificationKind::*;
        assert_eq!(NotificationKind::for_ledger("grant", 100), Granted);
        assert_eq!(NotificationKind::for_ledger("refund", -40), Revoked);
        assert_eq!(NotificationKind::for_ledger("refund", 40), Restored);
        assert_eq!(NotificationKind::for_ledger("dispute", -100), Revoked);
        assert_eq!(NotificationKind::for_ledger("spend", -5), Spent);
        assert_eq!(NotificationKind::for_ledger("spend_reversal", 5), Restored);
    }
}
