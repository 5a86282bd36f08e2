//! The credit ledger: the only record of balances (balance = Σ delta).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::ledger;

#[derive(Debug, Insertable)]
#[diesel(table_name = ledger)]
pub struct NewEntry<'a> {
    pub account_id: Uuid,
    pub order_id: Uuid,
    pub kind: &'a str,
    pub delta: i64,
    pub refund_total: i64,
    pub cause: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = ledger, check_for_backend(diesel::pg::Pg))]
pub struct Entry {
    #[serde(skip)]
    pub id: i64,
    pub order_id: Uuid,
    pub kind: String,
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

/// SUM over bigint is numeric in Postgres; the cast keeps it an i64 without a decimal crate.
pub async fn balance(conn: &mut AsyncPgConnection, account_id: Uuid) -> QueryResult<i64> {
    ledger::table
        .filter(ledger::account_id.eq(account_id))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(delta), 0)::bigint",
        ))
        .first(conn)
        .await
}
