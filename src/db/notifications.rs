//! The outbox as the operator sees it: counts, the recent list, and redelivery.
//! (Writing and dispatching live in `notify`.)

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::notify::{NotificationKind, NotificationState};

#[derive(Debug, Default, QueryableByName)]
pub struct Counts {
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub delivered: i64,
    /// The oldest notification still waiting to be delivered.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest_pending: Option<DateTime<Utc>>,
}

pub async fn counts(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Counts> {
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
                count(*) FILTER (WHERE state = 'failed') AS failed, \
                count(*) FILTER (WHERE state = 'delivered') AS delivered, \
                min(created_at) FILTER (WHERE state = 'pending') AS oldest_pending \
         FROM notifications",
    )
    .get_result(conn)
    .await
}

#[derive(Debug, QueryableByName, serde::Serialize)]
pub struct Row {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub kind: NotificationKind,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = BigInt)]
    pub account_seq: i64,
    #[diesel(sql_type = Text)]
    pub state: NotificationState,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub next_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Int4>)]
    pub last_status: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_answer: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Newest first; `state` filters when given.
pub async fn recent(
    conn: &mut AsyncPgConnection,
    state: Option<NotificationState>,
    limit: i64,
) -> diesel::QueryResult<Vec<Row>> {
    diesel::sql_query(
        "SELECT n.id, n.kind, a.email, n.account_seq, n.state, n.attempts, n.created_at, \
                n.next_attempt_at, n.last_attempt_at, n.last_status, n.last_answer, n.delivered_at \
         FROM notifications n JOIN accounts a ON a.id = n.account_id \
         WHERE $1::text IS NULL OR n.state = $1 \
         ORDER BY n.created_at DESC, n.account_seq DESC LIMIT $2",
    )
    .bind::<Nullable<Text>, _>(state)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// What a redelivery came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Redelivery {
    /// Due again now, with a fresh 3-day window; `was` is the state it left.
    Queued {
        was: NotificationState,
    },
    /// A dispatcher is sending it right now: nothing changed.
    InFlight,
    NotFound,
}

/// Puts a notification back in the queue (failed, or delivered and wanted again), and
/// the audit row with the operator's note, in one transaction.
pub async fn redeliver(
    conn: &mut AsyncPgConnection,
    id: &str,
    note: &str,
) -> diesel::QueryResult<Redelivery> {
    #[derive(QueryableByName)]
    struct Was {
        #[diesel(sql_type = Text)]
        was: NotificationState,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        leased: bool,
    }
    let (id, note) = (id.to_owned(), note.to_owned());
    conn.transaction(async |c| {
        let found: Option<Was> = diesel::sql_query(
            "SELECT state AS was, COALESCE(leased_until > now(), false) AS leased \
             FROM notifications WHERE id = $1 FOR UPDATE",
        )
        .bind::<Text, _>(&id)
        .get_result(c)
        .await
        .optional()?;
        let Some(found) = found else {
            return Ok(Redelivery::NotFound);
        };
        if found.leased {
            return Ok(Redelivery::InFlight);
        }
        diesel::sql_query(
            "UPDATE notifications SET state = 'pending', next_attempt_at = now(), \
             retry_since = now(), leased_until = NULL WHERE id = $1",
        )
        .bind::<Text, _>(&id)
        .execute(c)
        .await?;
        let result = format!("queued again (was {})", found.was);
        diesel::sql_query(
            "INSERT INTO notification_actions (notification_id, action, note, result) \
             VALUES ($1, 'redeliver', $2, $3)",
        )
        .bind::<Text, _>(&id)
        .bind::<Text, _>(&note)
        .bind::<Text, _>(&result)
        .execute(c)
        .await?;
        Ok(Redelivery::Queued { was: found.was })
    })
    .await
}
