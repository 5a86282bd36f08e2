//! The connection pool: one deadpool shard per actix worker thread.
//!
//! Why shards: diesel-async drives every connection from a task spawned on the runtime
//! that opened it, and actix runs one single-threaded runtime per worker. With one
//! shared pool, a connection opened on worker A and checked out on worker B passes each
//! query to A's thread and each answer back to B's: two cross-thread wake-ups per round
//! trip, the largest single cost in the poll profile. A worker takes connections from
//! its own shard, so they are opened, driven and used on one thread.
//!
//! Each shard also keeps one connection that single-statement reads share without
//! checking it out (`Db::read`, the order poll): tokio-postgres pipelines the queries of
//! concurrent requests on it, so a burst of polls costs one write to Postgres, one
//! wake-up of its backend and one read of the answers instead of one of each per poll.
//! Only reads outside a transaction go there: a dropped request leaves nothing open.
//!
//! The shards together hold `DATABASE_POOL_SIZE` connections (SPEC: per instance), the
//! shared ones included. Threads that are not workers (start-up, background tasks,
//! tests) are given a shard in turn; their connections are correct everywhere, only
//! not hop-free.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::result::QueryResult;
use diesel::{ConnectionError, ConnectionResult};
use diesel_async::pooled_connection::deadpool::{Object, Pool as DeadPool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

pub type PooledConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;
pub type PoolStatus = deadpool::Status;

/// A statement that runs longer than this is cancelled, so a stuck database turns into
/// an error (and a 503) instead of requests piling up.
const STATEMENT_TIMEOUT: &str = "15s";
/// How long a request waits for a pooled connection before answering 503.
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a suspect connection has to answer `SELECT 1` (see `SUSPICION`).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a `Db::read` failed: no connection (503), or the statement itself.
#[derive(Debug)]
pub enum ReadError {
    Pool(PoolError),
    Query(diesel::result::Error),
}

struct Shard {
    pool: DeadPool<AsyncPgConnection>,
    /// None when the shard has a single connection: reads then check it out too.
    reads: Option<SharedReads>,
}

struct SharedReads {
    url: String,
    /// Opened on first use, by the thread that uses it (see above); dropped after any
    /// failed read so the next read opens a new one.
    slot: tokio::sync::Mutex<Option<Arc<AsyncPgConnection>>>,
}

#[derive(Clone)]
pub struct Db {
    shards: Arc<[Shard]>,
    /// Tells this pool's thread assignments from another's: tests run many apps, and so
    /// many pools, in one process.
    id: usize,
    /// The next shard for a worker, and for any other thread: counted apart, so worker
    /// k gets shard k however many other threads came first.
    next_worker: Arc<AtomicUsize>,
    next_other: Arc<AtomicUsize>,
    /// When one of this pool's connections was last found dead (`SUSPICION`).
    losses: Arc<Losses>,
}

thread_local! {
    /// (pool id, shard) this thread uses; `usize::MAX` for none yet.
    static HOME: Cell<(usize, usize)> = const { Cell::new((usize::MAX, 0)) };
    /// The pool this thread last took a connection from: a connection found dead on this
    /// thread is recorded there (`note_if_lost`), wherever the error is looked at.
    static LAST_POOL: RefCell<Option<Arc<Losses>>> = const { RefCell::new(None) };
}

impl Db {
    /// `size` connections in all, split over `shards` shards (fewer when `size` is
    /// smaller: every shard holds at least one).
    pub fn connect(url: &str, size: usize, shards: usize) -> anyhow::Result<Db> {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        let size = size.max(1);
        let n = shards.clamp(1, size);
        let losses = Arc::new(Losses::new());
        let shards = (0..n)
            .map(|i| Shard::new(url, size / n + usize::from(i < size % n), &losses))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Db {
            shards: shards.into(),
            losses,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            next_worker: Arc::new(AtomicUsize::new(0)),
            next_other: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// A connection from this thread's shard; waits up to `POOL_WAIT` for one.
    ///
    /// It may be dead: the pool checks nothing over the wire on checkout
    /// (`RecyclingMethod::Fast`), and a connection the database ended while it sat in the
    /// pool (a restart, a failover, a kill) is known to be closed only once this thread's
    /// runtime has read the socket's end. Once one is found dead, the older ones are
    /// verified on checkout for a while (`SUSPICION`), so a restart costs a worker at most
    /// the one request that found it; a transaction run by `transaction` runs again on
    /// a fresh connection when its BEGIN met a dead one, a statement safe to send twice
    /// goes through `send_repeatable`, and order creation and operator actions, which can
    /// afford a round trip, take `get_verified`.
    pub async fn get(&self) -> Result<PooledConn, PoolError> {
        self.home().pool.get().await
    }

    /// A connection that has just answered a round trip, for requests that call Stripe
    /// anyway or that a person made (order creation, operator actions), where a round
    /// trip costs nothing noticeable and a 503 costs a retry. Dead connections met on the way are dropped, up to as
    /// many as the shard holds.
    pub async fn get_verified(&self) -> Result<PooledConn, PoolError> {
        let pool = &self.home().pool;
        for _ in 0..pool.status().max_size {
            let mut conn = pool.get().await?;
            match conn.batch_execute("SELECT 1").await {
                Err(e) if note_if_lost(&e) => discard(conn),
                // Any other failure is the next statement's to report.
                _ => return Ok(conn),
            }
        }
        pool.get().await
    }

    /// Runs `work` in a transaction on a connection from this thread's shard. When the
    /// transaction's BEGIN fails because the connection was gone (the database ended it
    /// while it sat in the pool, and nothing had read its socket's end yet), no statement
    /// of `work` ran: the connection is dropped and `work` runs once more, whole, on a
    /// fresh one. A failure after BEGIN is the caller's, as it came: a statement may have
    /// run, so only the caller knows whether running it again is safe.
    pub async fn transaction<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: for<'r> AsyncFn(&'r mut AsyncPgConnection) -> Result<T, E>
            + for<'r> ConnWork<&'r mut AsyncPgConnection, Result<T, E>>
            + Sync,
        T: Send,
        E: From<diesel::result::Error> + From<PoolError> + Send,
    {
        let work = &work;
        let mut retried = false;
        loop {
            let began = AtomicBool::new(false);
            let mut conn = self.get().await?;
            let result = conn
                .transaction::<T, Failed<E>, _>(async |c| {
                    began.store(true, Ordering::Relaxed);
                    work(c).await.map_err(Failed::Work)
                })
                .await;
            match result {
                Ok(done) => return Ok(done),
                Err(Failed::Work(e)) => return Err(e),
                Err(Failed::Db(e))
                    if !retried && !began.load(Ordering::Relaxed) && note_if_lost(&e) =>
                {
                    tracing::info!(
                        "database: a pooled connection was dead at BEGIN; running the transaction on a fresh one"
                    );
                    discard(conn);
                    retried = true;
                }
                Err(Failed::Db(e)) => return Err(e.into()),
            }
        }
    }

    /// A pooled connection, and what `statement` answered on it: ONE statement whose
    /// effect is the same however often it is sent (an insert that does nothing on a
    /// conflict, an update guarded by the very state it changes). When the connection
    /// turns out to be dead (a restart this worker has not noticed yet) it is dropped and
    /// the statement sent once more on a fresh one; had the first reached the database,
    /// the second finds the work done, and the caller reads that answer as it would a
    /// concurrent request's. The connection is handed back for the caller's next steps.
    pub async fn send_repeatable<T, E, F>(&self, statement: F) -> Result<(PooledConn, T), E>
    where
        F: for<'r> AsyncFn(&'r mut AsyncPgConnection) -> QueryResult<T>
            + for<'r> ConnWork<&'r mut AsyncPgConnection, QueryResult<T>>,
        E: From<diesel::result::Error> + From<PoolError>,
    {
        let mut conn = self.get().await?;
        match statement(&mut conn).await {
            Err(e) if note_if_lost(&e) => {
                tracing::info!(
                    "database: a pooled connection was dead; sending a repeatable statement once more on a fresh one"
                );
                discard(conn);
                let mut fresh = self.get().await?;
                let answer = statement(&mut fresh).await?;
                Ok((fresh, answer))
            }
            answer => Ok((conn, answer?)),
        }
    }

    /// Runs `query`, ONE read statement outside any transaction, on this thread's
    /// shared connection (see above). Never a transaction or a write: those take `get`.
    /// A read is safe to repeat, so one that failed because its connection was gone (the
    /// database restarted, or killed it) runs once more on a fresh connection: a restart
    /// costs the shopper's poll nothing.
    pub async fn read<T, F>(&self, query: F) -> Result<T, ReadError>
    where
        F: for<'r> AsyncFn(&'r AsyncPgConnection) -> QueryResult<T>
            + for<'r> ConnWork<&'r AsyncPgConnection, QueryResult<T>>,
    {
        let shard = self.home();
        let Some(reads) = &shard.reads else {
            let conn = shard.pool.get().await.map_err(ReadError::Pool)?;
            return match query(&conn).await {
                Err(e) if note_if_lost(&e) => {
                    // A pooled connection that died is discarded, not returned to the pool.
                    discard(conn);
                    let fresh = shard.pool.get().await.map_err(ReadError::Pool)?;
                    query(&fresh).await.map_err(ReadError::Query)
                }
                other => other.map_err(ReadError::Query),
            };
        };
        let mut retried = false;
        loop {
            let conn = reads.connection().await.map_err(ReadError::Pool)?;
            let result = query(&conn).await;
            let Err(e) = &result else {
                return result.map_err(ReadError::Query);
            };
            // A lookup fails for connection-level reasons, or something odd: either way a
            // new connection costs one connect, a dead one kept would fail every poll.
            reads.forget(&conn).await;
            let lost = note_if_lost(e);
            if retried || !lost {
                return result.map_err(ReadError::Query);
            }
            retried = true;
        }
    }

    /// Gives the calling thread its own shard, the next in turn. Each actix worker
    /// calls it once, as it builds its app, before it serves anything.
    pub fn claim_for_this_thread(&self) {
        self.assign(&self.next_worker);
    }

    fn home(&self) -> &Shard {
        LAST_POOL.with(|last| {
            let mut last = last.borrow_mut();
            if !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &self.losses)) {
                *last = Some(self.losses.clone());
            }
        });
        &self.shards[self.home_index()]
    }

    fn home_index(&self) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        match HOME.with(Cell::get) {
            (id, i) if id == self.id => i,
            _ => self.assign(&self.next_other),
        }
    }

    fn assign(&self, counter: &AtomicUsize) -> usize {
        let i = counter.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        HOME.with(|h| h.set((self.id, i)));
        i
    }

    /// The shards' figures added up, shared read connections included.
    pub fn status(&self) -> PoolStatus {
        self.shards.iter().map(Shard::status).fold(
            PoolStatus {
                max_size: 0,
                size: 0,
                available: 0,
                waiting: 0,
            },
            |sum, s| PoolStatus {
                max_size: sum.max_size + s.max_size,
                size: sum.size + s.size,
                available: sum.available + s.available,
                waiting: sum.waiting + s.waiting,
            },
        )
    }
}

impl Shard {
    /// `size` connections: one shared for reads and the rest pooled, or one pooled.
    fn new(url: &str, size: usize, losses: &Arc<Losses>) -> anyhow::Result<Shard> {
        let (pooled, reads) = if size >= 2 {
            let reads = SharedReads {
                url: url.to_owned(),
                slot: tokio::sync::Mutex::new(None),
            };
            (size - 1, Some(reads))
        } else {
            (size, None)
        };
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // Fast: no `SELECT 1` round trip per checkout (the load harness measured it as a
        // large share of a webhook's cost). A connection that died is reported broken and
        // dropped; after one is found dead the rest are verified for a while
        // (`verify_if_suspect`).
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            async move { open(&url).await }.boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
        let pool = DeadPool::builder(manager)
            .max_size(pooled)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .post_recycle(verify_if_suspect(losses.clone()))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .context("building the database pool")?;
        Ok(Shard { pool, reads })
    }

    fn status(&self) -> PoolStatus {
        let mut status = self.pool.status();
        if let Some(reads) = &self.reads {
            let open = reads
                .slot
                .try_lock()
                .map_or(1, |slot| usize::from(slot.is_some()));
            status.max_size += 1;
            status.size += open;
            status.available += open;
        }
        status
    }
}

impl SharedReads {
    async fn connection(&self) -> Result<Arc<AsyncPgConnection>, PoolError> {
        // Waiters queue here while one of them opens the connection; bounded like a
        // pool checkout, so a database that is away answers 503, not a hang.
        let mut slot = tokio::time::timeout(POOL_WAIT, self.slot.lock())
            .await
            .map_err(|_| PoolError::Timeout(deadpool::managed::TimeoutType::Wait))?;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = Arc::new(open(&self.url).await.map_err(|e| {
            PoolError::Backend(diesel_async::pooled_connection::PoolError::ConnectionError(
                e,
            ))
        })?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Drops `failed` from the slot (unless a newer connection replaced it already).
    /// Reads still running on it finish or fail on their own; it closes after the last.
    async fn forget(&self, failed: &Arc<AsyncPgConnection>) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *slot = None;
        }
    }
}

/// The work `Db::transaction` and `Db::read` run, given a connection `A`: an async
/// closure whose future is `Send`, as diesel-async's transaction requires and as a
/// spawned task needs (stable Rust cannot say so of an `AsyncFn`'s future, so the
/// closure is also taken as a plain `Fn` returning a named future).
pub trait ConnWork<A, R>: Fn(A) -> <Self as ConnWork<A, R>>::Fut {
    type Fut: Future<Output = R> + Send;
}

impl<A, R, F, Fut> ConnWork<A, R> for F
where
    F: Fn(A) -> Fut,
    Fut: Future<Output = R> + Send,
{
    type Fut = Fut;
}

/// How a transaction run by `Db::transaction` failed: in its own BEGIN, COMMIT or
/// ROLLBACK (`Db`), or in the caller's work (`Work`, passed on untouched).
enum Failed<E> {
    Db(diesel::result::Error),
    Work(E),
}

impl<E> From<diesel::result::Error> for Failed<E> {
    fn from(e: diesel::result::Error) -> Self {
        Failed::Db(e)
    }
}

/// How long after a connection was found dead every connection opened before that is
/// verified with a round trip when it is handed out. The database ends its connections
/// together (a restart, a failover), so one found dead says its pool-mates most likely
/// are too, and under load nothing has noticed yet (see `Db::get`). Long enough for a
/// busy pool to hand each connection out at least once; after it, checkouts are free
/// again.
const SUSPICION: Duration = Duration::from_secs(5);

/// When one of a pool's connections was last found dead.
struct Losses {
    /// The pool's creation: `last` counts from it.
    start: Instant,
    /// Microseconds after `start`, 0 for never.
    last: AtomicU64,
}

impl Losses {
    fn new() -> Losses {
        Losses {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn record(&self, at: Instant) {
        let since = at.saturating_duration_since(self.start);
        let micros = u64::try_from(since.as_micros()).unwrap_or(u64::MAX);
        self.last.store(micros.max(1), Ordering::Relaxed);
    }

    /// Whether a connection opened at `created` must answer a round trip before it is
    /// handed out at `now`: it is older than the last connection found dead, and that
    /// was less than `SUSPICION` ago.
    fn suspect(&self, created: Instant, now: Instant) -> bool {
        let lost = self.last.load(Ordering::Relaxed);
        if lost == 0 {
            return false;
        }
        let lost_at = self.start + Duration::from_micros(lost);
        created <= lost_at && now.saturating_duration_since(lost_at) < SUSPICION
    }
}

/// Records `err` in this thread's pool if it says a connection was gone (or died inside
/// a transaction), so that the pool verifies its older connections before handing them
/// out (`SUSPICION`). Returns whether it did. `AppError`'s conversion calls it for every
/// database error, so whichever request meets the first dead connection raises it.
pub fn note_if_lost(err: &diesel::result::Error) -> bool {
    let lost =
        connection_lost(err) || matches!(err, diesel::result::Error::BrokenTransactionManager);
    if lost {
        LAST_POOL.with(|last| {
            if let Some(losses) = last.borrow().as_ref() {
                losses.record(Instant::now());
            }
        });
    }
    lost
}

type Hook = deadpool::managed::Hook<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// The pool's `post_recycle` hook: runs on every checkout, after the Fast recycle has
/// dropped the connections already known closed. A suspect connection that does not
/// answer `SELECT 1` is dropped, and the pool hands out the next one or opens a new one.
fn verify_if_suspect(losses: Arc<Losses>) -> Hook {
    Hook::async_fn(move |conn, metrics| {
        let suspect = losses.suspect(metrics.created, Instant::now());
        Box::pin(async move {
            if !suspect {
                return Ok(());
            }
            match tokio::time::timeout(VERIFY_TIMEOUT, conn.batch_execute("SELECT 1")).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "database pool: dropped a connection found dead after another one was");
                    Err(deadpool::managed::HookError::message("dead connection"))
                }
                Err(_) => {
                    tracing::info!(
                        "database pool: dropped a connection that did not answer after another one was found dead"
                    );
                    Err(deadpool::managed::HookError::message(
                        "unresponsive connection",
                    ))
                }
            }
        })
    })
}

/// Drops a connection for good instead of returning it to the pool.
pub fn discard(conn: PooledConn) {
    drop(PooledConn::take(conn));
}

/// The connection is gone (closed, or the server ended it), whatever the query was.
fn connection_lost(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let m = info.message();
            m.contains("connection closed") || m.contains("terminating connection")
        }
        _ => false,
    }
}

/// A new connection with the server-side timeouts every connection carries.
async fn open(url: &str) -> ConnectionResult<AsyncPgConnection> {
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| {
            ConnectionError::BadConnection("timed out connecting to the database".into())
        })??;
    conn.batch_execute(&format!(
        "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '10s'"
    ))
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://nobody@localhost/none";

    #[test]
    fn connections_older_than_a_recent_loss_are_suspect_and_no_others() {
        let losses = Losses::new();
        let opened = Instant::now();
        assert!(!losses.suspect(opened, opened), "nothing lost yet");
        let lost_at = opened + Duration::from_millis(10);
        losses.record(lost_at);
        assert!(losses.suspect(opened, lost_at), "opened before the loss");
        assert!(losses.suspect(opened, lost_at + SUSPICION - Duration::from_millis(1)));
        assert!(
            !losses.suspect(opened, lost_at + SUSPICION),
            "the suspicion has passed"
        );
        let reopened = lost_at + Duration::from_millis(1);
        assert!(
            !losses.suspect(reopened, lost_at + Duration::from_millis(2)),
            "opened after it"
        );
        // A later loss puts the connection opened in between under suspicion too.
        losses.record(lost_at + Duration::from_secs(1));
        assert!(losses.suspect(reopened, lost_at + Duration::from_secs(1)));
    }

    #[test]
    fn only_a_connection_level_failure_counts_as_a_loss() {
        use diesel::result::{DatabaseErrorKind, Error};
        let closed = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("connection closed".to_owned()),
        );
        assert!(note_if_lost(&closed));
        assert!(note_if_lost(&Error::BrokenTransactionManager));
        assert!(!note_if_lost(&Error::NotFound));
        let unique = Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        );
        assert!(!note_if_lost(&unique));
    }

    #[test]
    fn the_shards_hold_the_configured_size_in_all() {
        for (size, workers, shards) in [(10, 2, 2), (3, 2, 2), (1, 2, 1), (2, 8, 2), (7, 1, 1)] {
            let db = Db::connect(URL, size, workers).unwrap();
            assert_eq!(db.shards.len(), shards, "size {size}, {workers} workers");
            assert_eq!(db.status().max_size, size, "size {size}, {workers} workers");
            let sizes: Vec<usize> = db.shards.iter().map(|s| s.status().max_size).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn each_worker_keeps_a_shard_of_its_own_whoever_came_first() {
        let db = Db::connect(URL, 10, 2).unwrap();
        // A non-worker thread (start-up) uses the pool before the workers start.
        let before = std::thread::scope(|s| s.spawn(|| db.home_index()).join().unwrap());
        let workers: Vec<(usize, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        db.claim_for_this_thread();
                        let first = db.home_index();
                        (first, db.home_index())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut claimed: Vec<usize> = workers.iter().map(|w| w.0).collect();
        claimed.sort_unstable();
        assert_eq!(claimed, vec![0, 1], "one shard per worker: {workers:?}");
        assert!(workers.iter().all(|(a, b)| a == b), "stable: {workers:?}");
        assert!(before < 2);
    }

    #[test]
    fn a_thread_moving_between_pools_is_given_a_shard_in_each_in_turn() {
        let (a, b) = (
            Db::connect(URL, 4, 2).unwrap(),
            Db::connect(URL, 4, 2).unwrap(),
        );
        b.claim_for_this_thread();
        b.claim_for_this_thread();
        let in_b = b.home_index();
        let in_a = a.home_index();
        assert_eq!(in_b, 1);
        assert_eq!(in_a, 0);
        // The last pool used wins the thread's slot; going back re-assigns, in turn.
        assert_eq!(a.home_index(), 0);
        assert_eq!(b.home_index(), 0);
    }
}
