//! Connection pool, migrations and the per-table query modules.
//! Query functions take `&mut AsyncPgConnection` and never open transactions: the
//! feature modules (`orders`, `webhook`, `idempotency`…) own transaction boundaries.

pub mod accounts;
pub mod cached;
pub mod embedded;
pub mod events;
pub mod idempotency;
pub mod ledger;
pub mod orders;
pub mod packs;
pub mod pool;
pub mod reconcile_runs;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod stats;

use anyhow::Context;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use pool::{Db, PoolError, PooledConn};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Runs pending migrations; returns the versions applied (empty when up to date).
/// Uses a blocking connection on a blocking thread: diesel's harness is synchronous.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .context("connecting to the database to migrate")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        Ok(applied.into_iter().map(|v| v.to_string()).collect())
    })
    .await
    .context("migration thread")?
}
