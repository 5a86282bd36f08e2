//! Spends of credits through the credits API, and the account row lock that serialises
//! them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::{accounts, ledger, spends};

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = spends, check_for_backend(diesel::pg::Pg))]
pub struct Spend {
    pub id: Uuid,
    #[serde(skip)]
    pub account_id: Uuid,
    pub credits: i64,
    pub reference: String,
    pub created_at: DateTime<Utc>,
    pub reversed_at: Option<DateTime<Utc>>,
}

/// The account's id, row-locked until the transaction ends (spends on one account take
/// turns here), and its balance as of the moment the lock was granted.
///
/// The balance is a statement of its own *after* the locking one: a subquery in the
/// locking statement would keep the snapshot taken before the lock was granted, and see
/// the balance without the spend that held the lock (a test of 100 racing spends
/// overdrew by 35 that way). The two are pipelined, one round trip: Postgres runs a
/// pipeline's statements one after the other, and under READ COMMITTED each takes its
/// snapshot when it starts, so the sum still starts only once the lock is held.
pub async fn lock_with_balance(
    mut conn: &AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(Uuid, i64)>> {
    let lock = accounts::table
        .filter(accounts::email.eq(email))
        .select(accounts::id)
        .for_update()
        .first::<Uuid>(&mut conn);
    let account = accounts::table
        .filter(accounts::email.eq(email))
        .select(accounts::id);
    let balance = ledger::table
        .filter(ledger::account_id.eq_any(account))
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(delta), 0)::bigint",
        ))
        .cached()
        .get_result::<i64>(&mut conn);
    let (account, balance) = futures_util::join!(lock, balance);
    match account.optional()? {
        Some(id) => Ok(Some((id, balance?))),
        None => Ok(None),
    }
}

/// Takes a shared connection: the spend pipelines it with its ledger row.
pub async fn insert(
    mut conn: &AsyncPgConnection,
    id: Uuid,
    account_id: Uuid,
    credits: i64,
    reference: &str,
    api_key_id: Uuid,
) -> QueryResult<Spend> {
    diesel::insert_into(spends::table)
        .values((
            spends::id.eq(id),
            spends::account_id.eq(account_id),
            spends::credits.eq(credits),
            spends::reference.eq(reference),
            spends::api_key_id.eq(api_key_id),
        ))
        .returning(Spend::as_returning())
        .get_result(&mut conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Spend>> {
    spends::table
        .find(id)
        .select(Spend::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks the spend reversed unless it already was; `None` then.
pub async fn mark_reversed(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Spend>> {
    diesel::update(
        spends::table
            .filter(spends::id.eq(id))
            .filter(spends::reversed_at.is_null()),
    )
    .set(spends::reversed_at.eq(diesel::dsl::now))
    .returning(Spend::as_returning())
    .get_result(conn)
    .await
    .optional()
}
