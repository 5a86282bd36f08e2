//! The credit ledger: the only record of balances (balance = Σ delta).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::ledger;
use crate::domain::ledger::LedgerKind;

#[derive(Debug, Insertable)]
#[diesel(table_name = ledger)]
pub struct NewEntry<'a> {
    pub account_id: Uuid,
    pub order_id: Option<Uuid>,
    pub spend_id: Option<Uuid>,
    pub kind: LedgerKind,
    pub delta: i64,
    pub refund_total: i64,
    pub cause: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = ledger, check_for_backend(diesel::pg::Pg))]
pub struct Entry {
    pub id: i64,
    pub order_id: Option<Uuid>,
    pub spend_id: Option<Uuid>,
    pub kind: LedgerKind,
    pub delta: i64,
    pub cause: String,
    #[serde(rename = "at")]
    pub created_at: DateTime<Utc>,
}

/// Plain insert: the schema's unique keys refuse a second grant or a second dispute
/// revocation for one order, rolling back the caller's transaction.
pub async fn insert(mut conn: &AsyncPgConnection, entry: &NewEntry<'_>) -> QueryResult<()> {
    diesel::insert_into(ledger::table)
        .values(entry)
        .cached()
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn for_order(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Vec<Entry>> {
    ledger::table
        .filter(ledger::order_id.eq(order_id))
        .order(ledger::id)
        .select(Entry::as_select())
        .load(conn)
        .await
}

pub async fn for_account(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
) -> QueryResult<Vec<Entry>> {
    ledger::table
        .filter(ledger::account_id.eq(account_id))
        .order(ledger::id)
        .select(Entry::as_select())
        .load(conn)
        .await
}

/// One page of an account's ledger, newest first, after the row `starting_after`.
pub async fn page_for_account(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
    starting_after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Entry>> {
    let mut query = ledger::table
        .filter(ledger::account_id.eq(account_id))
        .into_boxed();
    if let Some(after) = starting_after {
        query = query.filter(ledger::id.lt(after));
    }
    query
        .order(ledger::id.desc())
        .limit(limit)
        .select(Entry::as_select())
        .load(conn)
        .await
}

/// (granted, revoked, spent, balance) of an account: grants; refund and dispute rows
/// net, as a positive number; spends net of reversals, positive; the sum of all.
pub async fn totals(
    conn: &mut AsyncPgConnection,
    account_id: Uuid,
) -> QueryResult<(i64, i64, i64, i64)> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    ledger::table
        .filter(ledger::account_id.eq(account_id))
        .select((
            sql::<BigInt>("COALESCE(SUM(delta) FILTER (WHERE kind = 'grant'), 0)::bigint"),
            sql::<BigInt>("COALESCE(-SUM(delta) FILTER (WHERE kind IN ('refund', 'dispute')), 0)::bigint"),
            sql::<BigInt>("COALESCE(-SUM(delta) FILTER (WHERE kind IN ('spend', 'spend_reversal')), 0)::bigint"),
            sql::<BigInt>("COALESCE(SUM(delta), 0)::bigint"),
        ))
        .first(conn)
        .await
}
