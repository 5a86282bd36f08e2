//! Notifications to the merchant's own system (SPEC §9): the outbox written in each
//! change's transaction (`record`), and the dispatcher that delivers it (`dispatch`).

pub mod dispatch;

use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::domain::ledger::LedgerKind;
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

crate::text_enum! {
    /// Where a notification stands (its `state` column).
    pub enum NotificationState {
        /// Not delivered yet: due now, waiting for a retry, or for an earlier one.
        Pending => "pending",
        /// Retried for 3 days without a 2xx; only an operator's redeliver sends it again.
        Failed => "failed",
        Delivered => "delivered",
    }
}

impl NotificationKind {
    /// The notification for a ledger row of `kind` moving `delta` credits.
    pub fn for_ledger(kind: LedgerKind, delta: i64) -> NotificationKind {
        match kind {
            LedgerKind::Grant => NotificationKind::Granted,
            LedgerKind::Spend => NotificationKind::Spent,
            LedgerKind::SpendReversal => NotificationKind::Restored,
            // refund / dispute rows take credits back, or give them back after a refund
            // that failed.
            LedgerKind::Refund | LedgerKind::Dispute if delta > 0 => NotificationKind::Restored,
            LedgerKind::Refund | LedgerKind::Dispute => NotificationKind::Revoked,
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
///
/// One statement: it takes the account row's lock to number the notes (so per-account
/// order is commit order) and reads the balance from that locked row, which the
/// ledger's trigger keeps (migration `running_balance`); under READ COMMITTED an UPDATE
/// that waited for the lock works on the row as the other transaction committed it, so
/// the balance includes every change numbered before. The row keeps the fields; the
/// dispatcher renders the body from them (`Payload`), the same bytes on every try, so
/// the receiver can deduplicate by `id`.
pub async fn record(
    mut conn: &AsyncPgConnection,
    outbox: Outbox,
    account: Uuid,
    notes: &[Note],
) -> QueryResult<()> {
    if !outbox.enabled || notes.is_empty() {
        return Ok(());
    }
    // Time-ordered (v7): each new id lands at the right edge of the id index instead of
    // on a random page of it.
    let ids: Vec<String> = notes
        .iter()
        .map(|_| format!("ntf_{}", Uuid::now_v7().simple()))
        .collect();
    let kinds: Vec<&str> = notes.iter().map(|n| n.kind.as_str()).collect();
    let orders: Vec<Option<Uuid>> = notes.iter().map(|n| n.order_id).collect();
    let spends: Vec<Option<Uuid>> = notes.iter().map(|n| n.spend_id).collect();
    let statuses: Vec<Option<&str>> = notes
        .iter()
        .map(|n| n.status.map(OrderStatus::as_str))
        .collect();
    let deltas: Vec<i64> = notes.iter().map(|n| n.delta).collect();
    let written = diesel::sql_query(RECORD_SQL)
        .bind::<SqlUuid, _>(account)
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Text>, _>(kinds)
        .bind::<Array<Nullable<SqlUuid>>, _>(orders)
        .bind::<Array<Nullable<SqlUuid>>, _>(spends)
        .bind::<Array<Nullable<Text>>, _>(statuses)
        .bind::<Array<BigInt>, _>(deltas)
        .cached()
        .execute(&mut conn)
        .await?;
    if written != notes.len() {
        // No account row: nothing to number the notes by. Refuse the change with them.
        tracing::error!(account = %account, "notifications: no such account; change refused");
        return Err(diesel::result::Error::RollbackTransaction);
    }
    Ok(())
}

const RECORD_SQL: &str = "\
WITH a AS (
    UPDATE accounts SET notify_seq = notify_seq + cardinality($2::text[]) WHERE id = $1
    RETURNING notify_seq - cardinality($2::text[]) AS base, balance
)
INSERT INTO notifications
    (id, account_id, account_seq, kind, order_id, spend_id, status, delta, balance)
SELECT n.id, $1, a.base + n.ord, n.kind, n.order_id, n.spend_id, n.status, n.delta, a.balance
FROM a, unnest($2::text[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::bigint[])
     WITH ORDINALITY AS n(id, kind, order_id, spend_id, status, delta, ord)";

/// What the merchant receives (SPEC §9), rendered from an outbox row. Kind and status
/// are taken as the row holds them: a value this build does not know (written by a
/// newer one) is sent as it is rather than failing the claim it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    /// Unix seconds (`created_seconds`).
    pub created: i64,
    pub order_id: Option<Uuid>,
    pub spend_id: Option<Uuid>,
    pub email: &'a str,
    pub status: Option<&'a str>,
    pub delta: i64,
    pub balance: i64,
    pub sequence: i64,
}

/// A row's `created`: its created_at (the change's transaction time) in whole seconds,
/// rounded half up as `extract(epoch FROM now())::bigint` rounded it when the body was
/// built in SQL (before migration 14), so those rows render to the bytes they were
/// first sent with.
pub fn created_seconds(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp() + i64::from(at.timestamp_subsec_micros() >= 500_000)
}

impl Payload<'_> {
    /// The text Postgres gives `jsonb_build_object(…)::text` for these fields, byte for
    /// byte: keys ordered as jsonb orders them (shorter first, then bytewise), `": "`
    /// and `", "` between. Before migration 14 the outbox stored that text, so a
    /// notification written before it and retried after it is sent the same bytes (a
    /// test compares with Postgres). Strings are escaped by serde_json
    /// as jsonb escapes them; written out by hand because that cannot fail.
    pub fn render(&self) -> String {
        fn text(v: &str) -> String {
            serde_json::Value::from(v).to_string()
        }
        fn nullable(v: Option<&str>) -> String {
            v.map_or_else(|| "null".to_owned(), text)
        }
        let order = self.order_id.map(|u| u.hyphenated().to_string());
        let spend = self.spend_id.map(|u| u.hyphenated().to_string());
        format!(
            r#"{{"id": {}, "data": {{"delta": {}, "email": {}, "status": {}, "balance": {}, "order_id": {}, "sequence": {}, "spend_id": {}}}, "type": {}, "created": {}}}"#,
            text(self.id),
            self.delta,
            text(self.email),
            nullable(self.status),
            self.balance,
            nullable(order.as_deref()),
            self.sequence,
            nullable(spend.as_deref()),
            text(self.kind),
            self.created,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_renders_as_spec_json_with_its_strings_escaped() {
        let order = Uuid::parse_str("0b0e8a58-7a3c-4a51-9d3f-6a1f4c2f9e10").unwrap();
        let p = Payload {
            id: "ntf_1",
            kind: NotificationKind::Granted.as_str(),
            created: 1_764_720_000,
            order_id: Some(order),
            spend_id: None,
            email: "o\"brien\\x@example.com",
            status: Some(OrderStatus::Paid.as_str()),
            delta: 100,
            balance: -5,
            sequence: 7,
        };
        let body = p.render();
        assert_eq!(body, p.render(), "the same bytes on every try");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "ntf_1", "type": "credits.granted", "created": 1_764_720_000,
                "data": {"order_id": order.to_string(), "spend_id": null,
                         "email": "o\"brien\\x@example.com", "status": "paid",
                         "delta": 100, "balance": -5, "sequence": 7}
            })
        );
    }

    #[test]
    fn created_rounds_half_up_like_postgres_extract_to_bigint() {
        use chrono::TimeZone;
        let at = |micros: u32| {
            chrono::Utc
                .timestamp_opt(1_764_720_000, micros * 1000)
                .single()
                .unwrap()
        };
        assert_eq!(created_seconds(at(0)), 1_764_720_000);
        assert_eq!(created_seconds(at(499_999)), 1_764_720_000);
        assert_eq!(created_seconds(at(500_000)), 1_764_720_001);
        assert_eq!(created_seconds(at(999_999)), 1_764_720_001);
    }

    #[test]
    fn ledger_rows_map_to_their_announcement() {
        use NotificationKind::*;
        let of = NotificationKind::for_ledger;
        assert_eq!(of(LedgerKind::Grant, 100), Granted);
        assert_eq!(of(LedgerKind::Refund, -40), Revoked);
        assert_eq!(of(LedgerKind::Refund, 40), Restored);
        assert_eq!(of(LedgerKind::Dispute, -100), Revoked);
        assert_eq!(of(LedgerKind::Spend, -5), Spent);
        assert_eq!(of(LedgerKind::SpendReversal, 5), Restored);
    }
}
