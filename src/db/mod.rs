//! Connection pool, migrations and the per-table query modules.
//! Query functions never open transactions: the feature modules (`orders`, `webhook`,
//! `idempotency`…) own transaction boundaries. Most take `&mut AsyncPgConnection`; those
//! a caller pipelines with others (the statements of one settlement, of one spend) take
//! `&AsyncPgConnection`, which diesel-async lets several queries share at once.

pub mod accounts;
pub mod actions;
pub mod api_keys;
pub mod cached;
pub mod catchup;
pub mod charges;
pub mod embedded;
pub mod events;
pub mod idempotency;
pub mod ledger;
pub mod notifications;
pub mod orders;
pub mod packs;
pub mod pool;
pub mod reconcile_runs;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod spends;
pub mod stats;

use anyhow::Context;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use pool::{Db, PoolError, PooledConn};

/// The column mapping of a `text_enum!`: written as its text, read back through its
/// parse, so an unknown value in the database is an error rather than a default.
macro_rules! text_enum_sql {
    ($($ty:ty),+) => {$(
        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::pg::Pg,
                >>::from_sql(bytes)?;
                text.parse::<$ty>().map_err(Into::into)
            }
        }
    )+};
}

text_enum_sql!(
    actions::ActionState,
    idempotency::KeyState,
    crate::domain::ledger::LedgerKind,
    crate::domain::order::OrderStatus,
    crate::domain::order::DisputeState,
    crate::notify::NotificationKind,
    crate::notify::NotificationState,
    crate::payments::IntentStatus
);

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Session advisory lock held while migrating ("paidonce" in ASCII).
const MIGRATION_LOCK: i64 = 0x7061_6964_6f6e_6365;

/// Runs pending migrations; returns the versions applied (empty when up to date).
/// Instances starting together on one database take turns: without the lock both would
/// see the same migrations pending, and the second would fail creating what the first
/// just created. The lock is the session's, so a process that dies releases it.
/// Uses a blocking connection on a blocking thread: diesel's harness is synchronous.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use diesel::connection::SimpleConnection;
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .context("connecting to the database to migrate")?;
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .context("waiting for the migration lock")?;
        let applied: anyhow::Result<Vec<String>> = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.into_iter().map(|v| v.to_string()).collect())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        // Released with the session anyway; unlocking lets the next instance go now.
        let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
        applied
    })
    .await
    .context("migration thread")?
}
