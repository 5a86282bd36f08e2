//! Operator actions: the audit trail, and each action's claim on its own key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::schema::operator_actions;

crate::text_enum! {
    /// Where an operator action stands (its `state` column).
    pub enum ActionState {
        /// Claimed under its key; the provider may be answering.
        InProgress => "in_progress",
        Done => "done",
        /// The provider refused or could not be reached: the same key may try again.
        Failed => "failed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = operator_actions, check_for_backend(diesel::pg::Pg))]
pub struct Action {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub order_id: Uuid,
    pub action: String,
    pub note: String,
    pub params: serde_json::Value,
    pub state: ActionState,
    pub result: Option<String>,
    #[serde(rename = "at")]
    pub created_at: DateTime<Utc>,
}

/// Claims `key` for a new action on `order_id`; `None` when the key was claimed before
/// (the caller then reads that action with `by_key`).
pub async fn claim(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    action: &str,
    key: &str,
    note: &str,
    params: &serde_json::Value,
) -> QueryResult<Option<Action>> {
    diesel::insert_into(operator_actions::table)
        .values((
            operator_actions::order_id.eq(order_id),
            operator_actions::action.eq(action),
            operator_actions::key.eq(key),
            operator_actions::note.eq(note),
            operator_actions::params.eq(params),
        ))
        .on_conflict(operator_actions::key)
        .do_nothing()
        .returning(Action::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn by_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<Action>> {
    operator_actions::table
        .filter(operator_actions::key.eq(key))
        .select(Action::as_select())
        .first(conn)
        .await
        .optional()
}

/// Takes over an action that failed before, to run it again under the same key.
pub async fn retry_failed(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    diesel::update(
        operator_actions::table
            .filter(operator_actions::id.eq(id))
            .filter(operator_actions::state.eq(ActionState::Failed)),
    )
    .set(operator_actions::state.eq(ActionState::InProgress))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Ends an action: `done` with what it did, or `failed` with why.
pub async fn finish(
    mut conn: &AsyncPgConnection,
    id: i64,
    done: bool,
    result: &str,
) -> QueryResult<()> {
    diesel::update(operator_actions::table.find(id))
        .set((
            operator_actions::state.eq(if done {
                ActionState::Done
            } else {
                ActionState::Failed
            }),
            operator_actions::result.eq(result),
            operator_actions::finished_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn for_order(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Vec<Action>> {
    operator_actions::table
        .filter(operator_actions::order_id.eq(order_id))
        .order(operator_actions::id)
        .select(Action::as_select())
        .load(conn)
        .await
}
