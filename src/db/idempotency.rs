//! Idempotency-Key rows. The primary key makes a claim atomic; the feature module
//! `crate::idempotency` decides what a found row means.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::idempotency_keys;

crate::text_enum! {
    /// Where a key's request stands (its `state` column).
    pub enum KeyState {
        /// A request holds the key and is still working (its heartbeat says how recently).
        InProgress => "in_progress",
        /// The answer is stored and replayed to every retry.
        Completed => "completed",
        /// The request failed in a way worth retrying: the next one with the key takes it.
        Released => "released",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
pub struct KeyRow {
    pub key: String,
    pub fingerprint: String,
    pub state: KeyState,
    pub order_id: Option<Uuid>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub heartbeat_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn delete_if_expired(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<()> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::key.eq(key))
            .filter(idempotency_keys::expires_at.lt(diesel::dsl::now)),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Inserts an `in_progress` claim; `false` when the key already has a row.
pub async fn insert_claim(
    conn: &mut AsyncPgConnection,
    key: &str,
    fingerprint: &str,
    expires_at: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::key.eq(key),
            idempotency_keys::fingerprint.eq(fingerprint),
            idempotency_keys::state.eq(KeyState::InProgress),
            idempotency_keys::expires_at.eq(expires_at),
        ))
        .on_conflict(idempotency_keys::key)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Call inside a transaction.
pub async fn lock(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<KeyRow>> {
    idempotency_keys::table
        .find(key)
        .select(KeyRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Makes the caller the owner of an existing row (released, or abandoned in progress).
pub async fn take_over(
    conn: &mut AsyncPgConnection,
    key: &str,
    fingerprint: &str,
    order_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(idempotency_keys::table.find(key))
        .set((
            idempotency_keys::state.eq(KeyState::InProgress),
            idempotency_keys::fingerprint.eq(fingerprint),
            idempotency_keys::order_id.eq(order_id),
            idempotency_keys::heartbeat_at.eq(diesel::dsl::now),
            idempotency_keys::expires_at.eq(expires_at),
            idempotency_keys::response_status.eq(None::<i32>),
            idempotency_keys::response_body.eq(None::<String>),
        ))
        .cached()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Takes a shared connection, so a caller can pipeline it with its other writes.
pub async fn set_order(mut conn: &AsyncPgConnection, key: &str, order_id: Uuid) -> QueryResult<()> {
    diesel::update(idempotency_keys::table.find(key))
        .set((
            idempotency_keys::order_id.eq(order_id),
            idempotency_keys::heartbeat_at.eq(diesel::dsl::now),
        ))
        .cached()
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn complete(
    conn: &mut AsyncPgConnection,
    key: &str,
    status: i32,
    body: &str,
) -> QueryResult<()> {
    diesel::update(
        idempotency_keys::table
            .find(key)
            .filter(idempotency_keys::state.eq(KeyState::InProgress)),
    )
    .set((
        idempotency_keys::state.eq(KeyState::Completed),
        idempotency_keys::response_status.eq(status),
        idempotency_keys::response_body.eq(body),
    ))
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn release(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<()> {
    diesel::update(
        idempotency_keys::table
            .find(key)
            .filter(idempotency_keys::state.eq(KeyState::InProgress)),
    )
    .set(idempotency_keys::state.eq(KeyState::Released))
    .cached()
    .execute(conn)
    .await
    .map(|_| ())
}

/// Removes expired keys in bounded batches; returns how many went.
pub async fn delete_expired(conn: &mut AsyncPgConnection, batch: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE key IN \
         (SELECT key FROM idempotency_keys WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
    .await
}
