//! The event catch-up's single row: its cursor, its lease and what its last pass did.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::event_catchup;

/// Takes the catch-up for one pass until `lease_until` unless another instance holds
/// it. `Some(cursor)` when claimed (the cursor is `None` before the first pass).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    lease_until: DateTime<Utc>,
) -> QueryResult<Option<Option<i64>>> {
    diesel::update(
        event_catchup::table.filter(event_catchup::id.eq(1)).filter(
            event_catchup::lease_until
                .is_null()
                .or(event_catchup::lease_until.lt(diesel::dsl::now)),
        ),
    )
    .set((
        event_catchup::lease_until.eq(lease_until),
        event_catchup::last_started_at.eq(diesel::dsl::now),
    ))
    .returning(event_catchup::cursor_created)
    .get_result(conn)
    .await
    .optional()
}

/// What one pass did, stored for the operator page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub listed: i32,
    pub applied: i32,
    pub duplicate: i32,
    pub errors: i32,
}

/// Ends a claimed pass: moves the cursor (never backwards past what it was, unless an
/// error holds it there), releases the lease and records the counts.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    cursor: Option<i64>,
    counts: &PassCounts,
    error: Option<&str>,
) -> QueryResult<()> {
    diesel::update(event_catchup::table.filter(event_catchup::id.eq(1)))
        .set((
            event_catchup::cursor_created.eq(cursor),
            event_catchup::lease_until.eq(None::<DateTime<Utc>>),
            event_catchup::last_finished_at.eq(diesel::dsl::now),
            event_catchup::last_listed.eq(counts.listed),
            event_catchup::last_applied.eq(counts.applied),
            event_catchup::last_duplicate.eq(counts.duplicate),
            event_catchup::last_errors.eq(counts.errors),
            event_catchup::last_error.eq(error),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = event_catchup, check_for_backend(diesel::pg::Pg))]
pub struct LastPass {
    pub cursor_created: Option<i64>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_finished_at: Option<DateTime<Utc>>,
    pub last_listed: i32,
    pub last_applied: i32,
    pub last_duplicate: i32,
    pub last_errors: i32,
    pub last_error: Option<String>,
}

pub async fn last(conn: &mut AsyncPgConnection) -> QueryResult<Option<LastPass>> {
    event_catchup::table
        .find(1)
        .select(LastPass::as_select())
        .first(conn)
        .await
        .optional()
}
