//! The sandbox provider's tables: its PaymentIntents and its outbox of webhook deliveries.
//! Only `payments::sandbox` uses these.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{sandbox_deliveries, sandbox_payment_intents, sandbox_refunds};
use crate::payments::IntentStatus;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sandbox_payment_intents, check_for_backend(diesel::pg::Pg))]
pub struct Intent {
    pub id: String,
    pub client_secret: String,
    pub amount: i64,
    pub currency: String,
    pub status: IntentStatus,
    pub metadata: serde_json::Value,
    pub last_payment_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub amount_refunded: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sandbox_payment_intents)]
pub struct NewIntent<'a> {
    pub id: &'a str,
    pub client_secret: &'a str,
    pub idempotency_key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub status: IntentStatus,
    pub metadata: &'a serde_json::Value,
}

/// Inserts the intent unless one exists for its idempotency key; returns the stored one.
pub async fn insert_or_get(
    conn: &mut AsyncPgConnection,
    intent: &NewIntent<'_>,
) -> QueryResult<Intent> {
    diesel::insert_into(sandbox_payment_intents::table)
        .values(intent)
        .on_conflict(sandbox_payment_intents::idempotency_key)
        .do_nothing()
        .execute(conn)
        .await?;
    sandbox_payment_intents::table
        .filter(sandbox_payment_intents::idempotency_key.eq(intent.idempotency_key))
        .select(Intent::as_select())
        .first(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<Intent>> {
    sandbox_payment_intents::table
        .find(id)
        .select(Intent::as_select())
        .first(conn)
        .await
        .optional()
}

/// Moves an intent to `status` if it is in one of `from`; `None` if it was not.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    id: &str,
    from: &[IntentStatus],
    status: IntentStatus,
    last_payment_error: Option<&str>,
) -> QueryResult<Option<Intent>> {
    diesel::update(
        sandbox_payment_intents::table
            .filter(sandbox_payment_intents::id.eq(id))
            .filter(sandbox_payment_intents::status.eq_any(from)),
    )
    .set((
        sandbox_payment_intents::status.eq(status),
        sandbox_payment_intents::last_payment_error.eq(last_payment_error),
        sandbox_payment_intents::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Intent::as_returning())
    .get_result(conn)
    .await
    .optional()
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = sandbox_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub payload: String,
    pub attempts: i32,
}

pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    event_id: &str,
    payload: &str,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(sandbox_deliveries::table)
        .values((
            sandbox_deliveries::event_id.eq(event_id),
            sandbox_deliveries::payload.eq(payload),
            sandbox_deliveries::next_attempt_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Leases up to `limit` due deliveries until `lease_until`: a worker posts them without
/// holding any lock, and another instance skips them meanwhile.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease_until: DateTime<Utc>,
) -> QueryResult<Vec<Delivery>> {
    diesel::sql_query(
        "UPDATE sandbox_deliveries SET next_attempt_at = $2, attempts = attempts + 1 WHERE id IN ( \
            SELECT id FROM sandbox_deliveries WHERE delivered_at IS NULL AND next_attempt_at <= now() \
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, event_id, payload, attempts",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .bind::<diesel::sql_types::Timestamptz, _>(lease_until)
    .load(conn)
    .await
}

pub async fn mark_delivered(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::update(sandbox_deliveries::table.find(id))
        .set(sandbox_deliveries::delivered_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn reschedule(
    conn: &mut AsyncPgConnection,
    id: i64,
    at: DateTime<Utc>,
    error: &str,
) -> QueryResult<()> {
    diesel::update(sandbox_deliveries::table.find(id))
        .set((
            sandbox_deliveries::next_attempt_at.eq(at),
            sandbox_deliveries::last_error.eq(error),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn pending_count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    sandbox_deliveries::table
        .filter(sandbox_deliveries::delivered_at.is_null())
        .count()
        .get_result(conn)
        .await
}

#[derive(QueryableByName)]
struct ListedPayload {
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
}

/// The sandbox's events as Stripe's list returns them: newest first, one row per event
/// id (a chaos duplicate is one event), of the given types, created at or after
/// `created_gte`, after the event `starting_after`. Up to `limit` payloads.
pub async fn list_events(
    conn: &mut AsyncPgConnection,
    types: &[&str],
    created_gte: i64,
    starting_after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<String>> {
    let rows: Vec<ListedPayload> = diesel::sql_query(
        "SELECT d.payload FROM sandbox_deliveries d \
         WHERE (d.payload::jsonb ->> 'type') = ANY($1) \
           AND (d.payload::jsonb ->> 'created')::bigint >= $2 \
           AND NOT EXISTS (SELECT 1 FROM sandbox_deliveries e WHERE e.event_id = d.event_id AND e.id < d.id) \
           AND ($3::text IS NULL OR d.id < (SELECT min(id) FROM sandbox_deliveries WHERE event_id = $3)) \
         ORDER BY d.id DESC LIMIT $4",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(types)
    .bind::<diesel::sql_types::BigInt, _>(created_gte)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(starting_after)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.payload).collect())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sandbox_refunds, check_for_backend(diesel::pg::Pg))]
pub struct Refund {
    pub id: String,
    pub payment_intent_id: String,
    pub amount: i64,
}

/// The refund made under `key`, if any (a retried request gets the same refund).
pub async fn find_refund(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<Refund>> {
    sandbox_refunds::table
        .filter(sandbox_refunds::idempotency_key.eq(key))
        .select(Refund::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records a refund of `amount` on a succeeded intent, if that much is left to refund;
/// `None` otherwise. Call inside a transaction (with the event it enqueues).
pub async fn refund(
    conn: &mut AsyncPgConnection,
    id: &str,
    pi: &str,
    amount: i64,
    key: &str,
) -> QueryResult<Option<Intent>> {
    let intent = diesel::update(
        sandbox_payment_intents::table
            .filter(sandbox_payment_intents::id.eq(pi))
            .filter(sandbox_payment_intents::status.eq(IntentStatus::Succeeded))
            .filter(
                (sandbox_payment_intents::amount_refunded + amount)
                    .le(sandbox_payment_intents::amount),
            ),
    )
    .set((
        sandbox_payment_intents::amount_refunded
            .eq(sandbox_payment_intents::amount_refunded + amount),
        sandbox_payment_intents::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Intent::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    if intent.is_some() {
        diesel::insert_into(sandbox_refunds::table)
            .values((
                sandbox_refunds::id.eq(id),
                sandbox_refunds::idempotency_key.eq(key),
                sandbox_refunds::payment_intent_id.eq(pi),
                sandbox_refunds::amount.eq(amount),
            ))
            .execute(conn)
            .await?;
    }
    Ok(intent)
}
