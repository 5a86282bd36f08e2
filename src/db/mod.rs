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
pub mod reconcile_runs;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod stats;

use std::time::Duration;

use anyhow::Context;
use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type Pool = DeadPool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// A statement that runs longer than this is cancelled, so a stuck database turns into
/// an error (and a 503) instead of requests piling up.
const STATEMENT_TIMEOUT: &str = "15s";
/// How long a request waits for a pooled connection before answering 503.
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // Fast: no `SELECT 1` round trip per checkout (the load harness measured it as a large
    // share of a webhook's cost). A connection that died is reported broken and dropped;
    // a request that still meets one answers 503 and is retried by its sender.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(|url| {
        let url = url.to_owned();
        async move {
            let mut conn =
                tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(&url))
                    .await
                    .map_err(|_| {
                        ConnectionError::BadConnection(
                            "timed out connecting to the database".into(),
                        )
                    })??;
            conn.batch_execute(&format!(
                "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '10s'"
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    DeadPool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

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
