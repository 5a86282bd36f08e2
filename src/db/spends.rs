//! Spends of credits through the credits API, and the account row lock that serialises
//! them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::{accounts, spends};

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
/// turns here), and its balance once the lock was granted: the running balance the
/// ledger's trigger keeps on the row (migration `running_balance`). A `FOR UPDATE` that
/// waited for the lock returns the row as the holder committed it, so the balance
/// includes the spend that held the lock before.
pub async fn lock_with_balance(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(Uuid, i64)>> {
    accounts::table
        .filter(accounts::email.eq(email))
        .select((accounts::id, accounts::balance))
        .for_update()
        .first::<(Uuid, i64)>(conn)
        .await
        .optional()
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
