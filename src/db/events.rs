//! Stored webhook events: one row per Stripe event id, ever.

use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::webhook_events;

#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub livemode: bool,
    pub api_version: Option<&'a str>,
    pub payload: RawJson<'a>,
}

/// An event body stored as it arrived. Binding the bytes skips re-serialising the
/// parsed value (2 % of a webhook's CPU in the profile); `Event::parse` has already
/// refused what serde_json or Postgres's jsonb would not take.
#[derive(Debug, Clone, Copy, diesel::expression::AsExpression)]
#[diesel(sql_type = Jsonb)]
pub struct RawJson<'a>(pub &'a [u8]);

impl ToSql<Jsonb, Pg> for RawJson<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // jsonb's binary format: a version byte, then the JSON text.
        out.write_all(&[1])?;
        out.write_all(self.0)?;
        Ok(IsNull::No)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = webhook_events, check_for_backend(diesel::pg::Pg))]
pub struct EventSummary {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub outcome: Option<String>,
    pub received_at: DateTime<Utc>,
    pub order_id: Option<Uuid>,
    /// Later deliveries of the same event id, absorbed.
    pub duplicates: i32,
}

/// Stores the event unless its id was seen; `false` means a duplicate. A concurrent
/// twin blocks on the primary key until the first transaction ends, then sees it.
/// Takes a shared connection so the caller can pipeline it with the order lookup.
pub async fn insert_if_new(
    mut conn: &AsyncPgConnection,
    event: &NewEvent<'_>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(webhook_events::table)
        .values(event)
        .on_conflict(webhook_events::event_id)
        .do_nothing()
        .cached()
        .execute(&mut conn)
        .await?;
    Ok(inserted == 1)
}

/// Adds counted duplicate deliveries to their events, in one statement.
pub async fn add_duplicates(
    conn: &mut AsyncPgConnection,
    event_ids: &[String],
    counts: &[i32],
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE webhook_events w SET duplicates = w.duplicates + d.n \
         FROM unnest($1::text[], $2::int[]) AS d(id, n) WHERE w.event_id = d.id",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(event_ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(counts)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn exists(mut conn: &AsyncPgConnection, event_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(webhook_events::table.find(event_id)))
        .get_result(&mut conn)
        .await
}

pub async fn set_outcome(
    mut conn: &AsyncPgConnection,
    event_id: &str,
    outcome: &str,
    order_id: Option<Uuid>,
) -> QueryResult<()> {
    diesel::update(webhook_events::table.find(event_id))
        .set((
            webhook_events::outcome.eq(outcome),
            webhook_events::order_id.eq(order_id),
        ))
        .cached()
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn for_order(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Vec<EventSummary>> {
    webhook_events::table
        .filter(webhook_events::order_id.eq(order_id))
        .order(webhook_events::received_at)
        .select(EventSummary::as_select())
        .load(conn)
        .await
}

pub async fn recent(
    conn: &mut AsyncPgConnection,
    outcome: Option<&str>,
    event_type: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<EventSummary>> {
    let mut query = webhook_events::table.into_boxed();
    match outcome {
        // Duplicates are deliveries, not events: the events that absorbed some.
        Some("duplicate") => query = query.filter(webhook_events::duplicates.gt(0)),
        Some(outcome) => query = query.filter(webhook_events::outcome.eq(outcome)),
        None => {}
    }
    if let Some(event_type) = event_type {
        query = query.filter(webhook_events::event_type.eq(event_type));
    }
    query
        .order(webhook_events::received_at.desc())
        .limit(limit)
        .select(EventSummary::as_select())
        .load(conn)
        .await
}

/// Deliveries absorbed as duplicates, over all events.
pub async fn duplicates_absorbed(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    webhook_events::table
        .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "COALESCE(SUM(duplicates), 0)::bigint",
        ))
        .first(conn)
        .await
}

pub async fn count_by_outcome(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(Option<String>, i64)>> {
    webhook_events::table
        .group_by(webhook_events::outcome)
        .select((webhook_events::outcome, diesel::dsl::count_star()))
        .load(conn)
        .await
}
