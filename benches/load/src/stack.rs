//! What the load runs against: a Postgres of its own (the app's embedded-cluster code in a
//! temp dir, or DATABASE_URL), a Stripe double with a configurable latency, release
//! instances of paidonce as child processes, and the SQL that seeds and checks the data.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use paidonce::db::embedded::{EmbeddedPostgres, Options};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

pub const WEBHOOK_SECRET: &str = "whsec_bench";
pub const ADMIN_PASSWORD: &str = "bench";
/// Accounts the seeded orders are spread over (balances are checked per account).
/// Accounts the run's orders are spread over: LOAD_ACCOUNTS [50]. Fifty makes two
/// concurrent changes to one account common (a hot shop's regulars); thousands is a
/// shop whose shoppers rarely pay at the same moment.
pub fn accounts() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| crate::env_or("LOAD_ACCOUNTS", 50).max(1))
}

// ---------------------------------------------------------------- database

/// The database under test; stops the embedded cluster (and removes its dir) on drop.
pub struct Db {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
    dir: Option<PathBuf>,
}

impl Db {
    /// DATABASE_URL if set; otherwise a private cluster in a temp dir (LOAD_DATA_DIR to
    /// choose it), started with `settings` as extra server settings.
    pub async fn open(settings: Vec<(String, String)>) -> anyhow::Result<Db> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Db {
                url,
                embedded: None,
                dir: None,
            });
        }
        let (dir, remove) = match std::env::var_os("LOAD_DATA_DIR") {
            Some(d) => (PathBuf::from(d), false),
            None => (
                std::env::temp_dir().join(format!("paidonce-load-{}", std::process::id())),
                true,
            ),
        };
        let pg = EmbeddedPostgres::start(&dir, &Options { settings })?;
        pg.ensure_database("bench").await?;
        Ok(Db {
            url: pg.url("bench"),
            embedded: Some(pg),
            dir: remove.then_some(dir),
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // The server first (dropping it stops it), then its directory.
        drop(self.embedded.take());
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(url)
        .await
        .context("connecting to the bench database")
}

#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = Text)]
    v: String,
}

pub async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<()> {
    diesel_async::SimpleAsyncConnection::batch_execute(conn, sql)
        .await
        .with_context(|| format!("running {sql}"))
}

pub async fn text(conn: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<String> {
    let row: One = diesel::sql_query(sql).get_result(conn).await?;
    Ok(row.v)
}

/// Server counters that explain latency outliers: WAL flushes (and their time, with
/// track_wal_io_timing), checkpoints, autovacuum/autoanalyze runs. Postgres publishes
/// backends' counters about once a second, so a difference is approximate.
#[derive(Debug, Clone, Copy, Default, diesel::QueryableByName)]
pub struct DbStats {
    #[diesel(sql_type = BigInt)]
    pub checkpoints: i64,
    #[diesel(sql_type = BigInt)]
    pub vacuums: i64,
    #[diesel(sql_type = BigInt)]
    pub wal_syncs: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub wal_sync_ms: f64,
    #[diesel(sql_type = BigInt)]
    pub wal_bytes: i64,
    /// Blocks this database read from outside shared_buffers (page cache or disk).
    #[diesel(sql_type = BigInt)]
    pub blks_read: i64,
    /// Time spent reading them (0 unless track_io_timing, which the harness turns on).
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub blk_read_ms: f64,
    /// WAL segment files ahead of the insert position (recycled, ready to be reused);
    /// -1 when the role may not list pg_wal.
    #[diesel(sql_type = BigInt)]
    pub spare_segments: i64,
}

impl DbStats {
    pub async fn read(conn: &mut AsyncPgConnection) -> anyhow::Result<DbStats> {
        Ok(diesel::sql_query(
            "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints, \
                    (SELECT COALESCE(sum(autovacuum_count + autoanalyze_count), 0)::bigint FROM pg_stat_user_tables) AS vacuums, \
                    (SELECT wal_sync FROM pg_stat_wal) AS wal_syncs, \
                    (SELECT wal_sync_time FROM pg_stat_wal) AS wal_sync_ms, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal_bytes, \
                    (SELECT blks_read FROM pg_stat_database WHERE datname = current_database()) AS blks_read, \
                    (SELECT blk_read_time FROM pg_stat_database WHERE datname = current_database()) AS blk_read_ms, \
                    CASE WHEN pg_has_role('pg_monitor', 'USAGE') THEN \
                        (SELECT count(*) FROM pg_ls_waldir() \
                          WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_lsn())) \
                    ELSE -1 END AS spare_segments",
        )
        .get_result(conn)
        .await?)
    }

    pub fn since(&self, before: &DbStats) -> String {
        let syncs = self.wal_syncs - before.wal_syncs;
        let ms = self.wal_sync_ms - before.wal_sync_ms;
        format!(
            "{:.1} MiB of WAL ({} spare 16 MiB segments before) in {syncs} flushes{}, {} checkpoints, {} autovacuum/autoanalyze runs finished, {} blocks read into shared_buffers in {:.1} ms",
            (self.wal_bytes - before.wal_bytes) as f64 / (1024.0 * 1024.0),
            before.spare_segments,
            if syncs > 0 && ms > 0.0 {
                format!(" (avg {:.2} ms)", ms / syncs as f64)
            } else {
                String::new()
            },
            self.checkpoints - before.checkpoints,
            self.vacuums - before.vacuums,
            self.blks_read - before.blks_read,
            self.blk_read_ms - before.blk_read_ms
        )
    }
}

#[derive(Debug, Clone)]
pub struct Pack {
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
}

#[derive(diesel::QueryableByName)]
struct PackRow {
    #[diesel(sql_type = BigInt)]
    credits: i64,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

pub async fn pack(conn: &mut AsyncPgConnection) -> anyhow::Result<Pack> {
    let p: PackRow =
        diesel::sql_query("SELECT credits, amount, currency FROM packs WHERE id = 'starter'")
            .get_result(conn)
            .await
            .context("the seeded 'starter' pack")?;
    Ok(Pack {
        credits: p.credits,
        amount: p.amount,
        currency: p.currency,
    })
}

pub async fn seed_accounts(conn: &mut AsyncPgConnection, tag: &str) -> anyhow::Result<()> {
    conn.batch_execute(&format!(
        "INSERT INTO accounts (id, email) \
         SELECT md5('{tag}:acct:' || k)::uuid, 'load-{tag}-' || k || '@bench.example' \
         FROM generate_series(0, {last}) k",
        last = accounts() - 1
    ))
    .await?;
    Ok(())
}

#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Seeded {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub payment_intent_id: String,
}

/// `n` pending orders with their PaymentIntent attached, as a finished creation leaves
/// them (order row + `created` transition), spread over the run's accounts. `set` names
/// them (letters, digits, underscores): provider_key `bench-<tag>-<set>-<g>`.
pub async fn seed_orders(
    conn: &mut AsyncPgConnection,
    tag: &str,
    set: &str,
    n: usize,
) -> anyhow::Result<Vec<Seeded>> {
    let sql = format!(
        "WITH o AS ( \
           INSERT INTO orders (id, account_id, pack_id, credits, amount, currency, provider_key, payment_intent_id, client_secret) \
           SELECT gen_random_uuid(), md5('{tag}:acct:' || (g % {accounts}))::uuid, p.id, p.credits, p.amount, p.currency, \
                  'bench-{tag}-{set}-' || g, 'pi_bench_{tag}_{set}_' || g, 'pi_bench_{tag}_{set}_' || g || '_secret_bench' \
           FROM generate_series(1, {n}) g, packs p WHERE p.id = 'starter' \
           RETURNING id, payment_intent_id), \
         t AS (INSERT INTO order_transitions (order_id, from_status, to_status, cause) \
               SELECT id, NULL, 'pending', 'created' FROM o) \
         SELECT id, payment_intent_id FROM o",
        accounts = accounts()
    );
    let rows: Vec<Seeded> = diesel::sql_query(sql).load(conn).await?;
    if rows.len() != n {
        bail!("seeded {} orders instead of {n}", rows.len());
    }
    Ok(rows)
}

/// Pending orders for pgbench: ids `md5('pgb_<tag>_<set>_' || g)` for g in 0..n, so the
/// script can name order g without a lookup table.
pub async fn seed_pgbench_orders(
    conn: &mut AsyncPgConnection,
    tag: &str,
    set: &str,
    n: usize,
) -> anyhow::Result<()> {
    conn.batch_execute(&format!(
        "WITH o AS ( \
           INSERT INTO orders (id, account_id, pack_id, credits, amount, currency, provider_key, payment_intent_id, client_secret) \
           SELECT md5('pgb_{tag}_{set}_' || g)::uuid, md5('{tag}:acct:' || (g % {accounts}))::uuid, p.id, p.credits, p.amount, p.currency, \
                  'pgb-{tag}-{set}-' || g, 'pi_pgb_{tag}_{set}_' || g, 'pi_pgb_{tag}_{set}_' || g || '_secret_bench' \
           FROM generate_series(0, {last}) g, packs p WHERE p.id = 'starter' \
           RETURNING id) \
         INSERT INTO order_transitions (order_id, from_status, to_status, cause) \
         SELECT id, NULL, 'pending', 'created' FROM o; \
         ANALYZE orders; ANALYZE order_transitions; ANALYZE ledger; ANALYZE webhook_events",
        last = n - 1,
        accounts = accounts()
    ))
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone, diesel::QueryableByName)]
pub struct PaidCheck {
    /// Orders in the set.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    #[diesel(sql_type = BigInt)]
    pub paid: i64,
    /// Orders with exactly one grant row of exactly the order's credits.
    #[diesel(sql_type = BigInt)]
    pub one_grant: i64,
    /// Orders with more than one grant row (must be 0, always).
    #[diesel(sql_type = BigInt)]
    pub multi_grant: i64,
    /// Grant rows over the set.
    #[diesel(sql_type = BigInt)]
    pub grant_rows: i64,
    /// Webhook events stored for the set's orders.
    #[diesel(sql_type = BigInt)]
    pub events: i64,
}

impl PaidCheck {
    /// Every order paid, each exactly once.
    pub fn all_paid_once(&self) -> bool {
        self.paid == self.total
            && self.one_grant == self.total
            && self.multi_grant == 0
            && self.grant_rows == self.total
    }

    pub fn text(&self) -> String {
        format!(
            "{}/{} paid, {} with exactly one grant, {} with >1, {} grant rows, {} events stored",
            self.paid, self.total, self.one_grant, self.multi_grant, self.grant_rows, self.events
        )
    }
}

/// The money check over one seeded set, straight from the tables.
pub async fn check_set(
    conn: &mut AsyncPgConnection,
    key_prefix: &str,
) -> anyhow::Result<PaidCheck> {
    let sql = format!(
        "WITH s AS (SELECT id, credits, status FROM orders WHERE provider_key LIKE '{key_prefix}%'), \
              g AS (SELECT l.order_id, count(*) AS n, sum(l.delta) AS d FROM ledger l JOIN s ON s.id = l.order_id \
                    WHERE l.kind = 'grant' GROUP BY l.order_id) \
         SELECT count(*) AS total, \
                count(*) FILTER (WHERE s.status = 'paid') AS paid, \
                count(*) FILTER (WHERE g.n = 1 AND g.d = s.credits) AS one_grant, \
                count(*) FILTER (WHERE g.n > 1) AS multi_grant, \
                COALESCE(sum(g.n), 0)::bigint AS grant_rows, \
                (SELECT count(*) FROM webhook_events e JOIN s ON s.id = e.order_id) AS events \
         FROM s LEFT JOIN g ON g.order_id = s.id"
    );
    Ok(diesel::sql_query(sql).get_result(conn).await?)
}

#[derive(Debug, diesel::QueryableByName)]
pub struct CreateCheck {
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub without_intent: i64,
    #[diesel(sql_type = BigInt)]
    pub distinct_intents: i64,
}

/// Orders made by the create scenario (e-mails `create-<tag>-…`).
pub async fn check_created(conn: &mut AsyncPgConnection, tag: &str) -> anyhow::Result<CreateCheck> {
    let sql = format!(
        "SELECT count(*) AS orders, count(*) FILTER (WHERE o.payment_intent_id IS NULL) AS without_intent, \
                count(DISTINCT o.payment_intent_id) AS distinct_intents \
         FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.email LIKE 'create-{tag}-%'"
    );
    Ok(diesel::sql_query(sql).get_result(conn).await?)
}

#[derive(Debug, diesel::QueryableByName)]
struct Expected {
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = BigInt)]
    paid_credits: i64,
}

/// For every account of the run: the admin API's balance equals the sum of the ledger
/// rows it lists, and equals the credits of the account's paid orders. Returns
/// (accounts checked, accounts wrong, total balance, first problem).
pub async fn check_balances(
    conn: &mut AsyncPgConnection,
    client: &reqwest::Client,
    base: &str,
    tag: &str,
) -> anyhow::Result<(usize, usize, i64, Option<String>)> {
    let expected: Vec<Expected> = diesel::sql_query(format!(
        "SELECT a.email, (COALESCE(sum(o.credits) FILTER (WHERE o.status = 'paid'), 0) \
           + (SELECT COALESCE(sum(delta), 0) FROM ledger WHERE account_id = a.id AND cause = 'bench') \
           - (SELECT COALESCE(sum(credits), 0) FROM spends WHERE account_id = a.id AND reversed_at IS NULL))::bigint AS paid_credits \
         FROM accounts a LEFT JOIN orders o ON o.account_id = a.id \
         WHERE a.email LIKE 'load-{tag}-%' GROUP BY a.email, a.id"
    ))
    .load(conn)
    .await?;
    let mut wrong = 0;
    let mut total = 0;
    let mut first = None;
    for e in &expected {
        let res = client
            .get(format!("{base}/admin/api/accounts/{}", e.email))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or_default();
        let balance = body["balance"].as_i64().unwrap_or(i64::MIN);
        let sum: i64 = body["ledger"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["delta"].as_i64()).sum())
            .unwrap_or(i64::MIN);
        total += balance.max(0);
        if !status.is_success() || balance != sum || balance != e.paid_credits {
            wrong += 1;
            first.get_or_insert_with(|| {
                format!(
                    "{}: HTTP {status}, balance {balance}, Σ ledger {sum}, paid orders' credits {}",
                    e.email, e.paid_credits
                )
            });
        }
    }
    Ok((expected.len(), wrong, total, first))
}

// ---------------------------------------------------------------- Stripe double

/// The tests' Stripe double (the test kit), without request recording: POST
/// /v1/payment_intents answers after the run's latency, the same Idempotency-Key gets
/// the same intent, GET answers it back.
pub use paidonce_testkit::stripe_double::StripeDouble;

// ---------------------------------------------------------------- instances

static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The paidonce binary the instances run (see `find_binary`).
pub fn bin() -> &'static std::path::Path {
    BIN.get()
        .map_or(std::path::Path::new("paidonce"), PathBuf::as_path)
}

/// LOAD_PAIDONCE_BIN, or paidonce's release binary built now by the cargo that runs this
/// harness (the lab is a crate of its own: a binary of another package is no artifact
/// of ours). Cargo prints its progress; its messages say where the binary is.
pub fn find_binary() -> anyhow::Result<()> {
    let path = match std::env::var_os("LOAD_PAIDONCE_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            println!("== building paidonce (release) for the instances");
            let out = std::process::Command::new(cargo)
                .current_dir(&root)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "paidonce",
                    "--bin",
                    "paidonce",
                    "--message-format=json-render-diagnostics",
                ])
                .stderr(Stdio::inherit())
                .output()
                .context("running cargo build for paidonce")?;
            if !out.status.success() {
                bail!("cargo build --release -p paidonce failed");
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "paidonce")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .context("cargo built no paidonce executable")?
        }
    };
    // The instances start in a temp dir (no stray .env): a relative path would not hold.
    let path = path
        .canonicalize()
        .with_context(|| format!("no paidonce binary at {}", path.display()))?;
    if !path.is_file() {
        bail!("no paidonce binary at {}", path.display());
    }
    let _ = BIN.set(path);
    Ok(())
}

/// What an instance wrote to stderr: its log, at LOAD_RUST_LOG (default `info`, the
/// app's own default, so the hot path pays for its log lines as in production).
#[derive(Default)]
pub struct LogTail {
    pub lines: u64,
    /// The last few lines, for a start-up failure.
    pub last: VecDeque<String>,
    /// Lines at WARN or ERROR, and the last few of them.
    pub problems: u64,
    pub last_problems: VecDeque<String>,
}

fn keep_five(lines: &mut VecDeque<String>, line: String) {
    if lines.len() == 5 {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// A `/proc/<pid>/status` field in KiB (VmRSS:, VmHWM:).
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

pub struct Instance {
    pub base: String,
    pub pid: u32,
    child: Child,
    pub log: Arc<Mutex<LogTail>>,
}

pub fn command(db_url: &str, stripe_base: &str, pool_size: usize) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("PAIDONCE_BIND", "127.0.0.1:0")
        .env("STRIPE_SECRET_KEY", "sk_test_bench")
        .env("STRIPE_API_BASE", stripe_base)
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RECONCILE_INTERVAL_SECS", "0")
        // The harness creates thousands of orders from one address.
        .env("RATE_LIMIT_ORDERS", "1000000/min")
        .env("RATE_LIMIT_CREDITS_API", "100000000/min")
        .env("DATABASE_POOL_SIZE", pool_size.to_string())
        .env(
            "RUST_LOG",
            std::env::var("LOAD_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        // No stray .env from the working tree.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true);
    cmd
}

/// `paidonce migrate` against the bench database.
pub async fn migrate(db_url: &str) -> anyhow::Result<String> {
    let out = command(db_url, "http://127.0.0.1:9", 1)
        .arg("migrate")
        .output()
        .await
        .context("running paidonce migrate")?;
    if !out.status.success() {
        bail!(
            "paidonce migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Instance {
    pub async fn spawn(
        name: &str,
        db_url: &str,
        stripe_base: &str,
        pool_size: usize,
    ) -> anyhow::Result<Instance> {
        Self::spawn_with(name, db_url, stripe_base, pool_size, &[]).await
    }

    /// The same with `env` added (the notification scenario's merchant webhook).
    pub async fn spawn_with(
        name: &str,
        db_url: &str,
        stripe_base: &str,
        pool_size: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Instance> {
        let mut child = command(db_url, stripe_base, pool_size)
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin().display()))?;
        let pid = child.id().context("child pid")?;
        let log = Arc::new(Mutex::new(LogTail::default()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut l) = log.lock() {
                        l.lines += 1;
                        if line.contains("WARN") || line.contains("ERROR") {
                            l.problems += 1;
                            keep_five(&mut l.last_problems, line.clone());
                        }
                        keep_five(&mut l.last, line);
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Some(addr.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(base) = base else {
            let tail = log
                .lock()
                .map(|l| l.last.iter().cloned().collect::<Vec<_>>().join(" | "))
                .unwrap_or_default();
            bail!("instance {name} did not print `listening on`: {tail}");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Instance {
            base,
            pid,
            child,
            log,
        })
    }

    /// The address `base` names.
    pub fn addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let hostport = self.base.trim_start_matches("http://");
        hostport
            .parse()
            .with_context(|| format!("instance address {hostport}"))
    }

    /// Resident set size now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_kib(self.pid, "VmRSS:")
    }

    /// Peak resident set size since start (or since `reset_peak`), KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        proc_kib(self.pid, "VmHWM:")
    }

    /// Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`).
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    pub fn log_summary(&self) -> String {
        self.log
            .lock()
            .map(|l| {
                if l.problems == 0 {
                    format!("{} log lines, none at warn or above", l.lines)
                } else {
                    format!(
                        "{} log lines, {} at warn or above; last: {}",
                        l.lines,
                        l.problems,
                        l.last_problems
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                }
            })
            .unwrap_or_default()
    }

    /// SIGTERM (graceful), then SIGKILL after 20 s.
    pub async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
