//! A row per reconciler pass, for the operator page.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::schema::reconcile_runs;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = reconcile_runs, check_for_backend(diesel::pg::Pg))]
pub struct Run {
    pub id: i64,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub checked: i32,
    pub changed: i32,
    pub errors: i32,
}

pub async fn start(conn: &mut AsyncPgConnection, trigger: &str) -> QueryResult<i64> {
    diesel::insert_into(reconcile_runs::table)
        .values(reconcile_runs::trigger.eq(trigger))
        .returning(reconcile_runs::id)
        .get_result(conn)
        .await
}

pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: i64,
    checked: i32,
    changed: i32,
    errors: i32,
) -> QueryResult<()> {
    diesel::update(reconcile_runs::table.find(id))
        .set((
            reconcile_runs::finished_at.eq(diesel::dsl::now),
            reconcile_runs::checked.eq(checked),
            reconcile_runs::changed.eq(changed),
            reconcile_runs::errors.eq(errors),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn last(conn: &mut AsyncPgConnection) -> QueryResult<Option<Run>> {
    reconcile_runs::table
        .order(reconcile_runs::id.desc())
        .select(Run::as_select())
        .first(conn)
        .await
        .optional()
}
