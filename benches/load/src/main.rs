//! The load lab (issue 7): `cargo run --release -p paidonce-load` from the repository.
//!
//! Builds paidonce's release binary (or takes LOAD_PAIDONCE_BIN), starts it as child processes against a Postgres of its own
//! (the app's embedded cluster in a temp dir, or DATABASE_URL) and a Stripe double with a
//! configurable latency, drives real HTTP load, and measures the limit in the same run:
//! pgbench executing the same SQL on the same database at the same client counts.
//! Scenarios: unique webhooks at several concurrencies, the same at half of the peak rate
//! (open loop: evenly spaced, then Poisson arrivals next to pgbench -R at that rate), a
//! duplicate storm across two instances, order creation against a slow provider, order
//! polling, one event catch-up pass over thousands of listed events, credit spends,
//! webhooks with notifications on against off, and a notification backlog delivered once
//! the merchant's receiver is back. Everything listens on 127.0.0.1 only. Targets are
//! reported, never asserted; the run fails only if it cannot run.
//!
//! Settings (environment, defaults in brackets): LOAD_ORDERS [5000] orders per unique
//! level; LOAD_CONCURRENCY [8,32,64]; LOAD_HALF_SECS [10] measured after
//! LOAD_HALF_WARMUP_SECS [2] at the same rate; LOAD_STORM_EVENTS [1000], LOAD_STORM_COPIES
//! [10], LOAD_STORM_CONCURRENCY [64]; LOAD_CREATE_CONCURRENCY [64], LOAD_CREATE_SECS [15],
//! LOAD_CREATE_IDEMPOTENCY [1], LOAD_STRIPE_LATENCY_MS [300]; LOAD_POLL_CONCURRENCY [32],
//! LOAD_POLL_SECS [10]; LOAD_CATCHUP_EVENTS [10000]; LOAD_SPENDS [5000],
//! LOAD_SPEND_CONCURRENCY [32]; LOAD_NOTIFY_EVENTS [4000] per round, LOAD_NOTIFY_ROUNDS [6],
//! LOAD_NOTIFY_CONCURRENCY [32], LOAD_NOTIFY_DELIVER [1] (0: the outbox is written but
//! nothing sent); LOAD_BACKLOG_EVENTS [10000]; LOAD_ACCOUNTS [50] the orders are spread
//! over; LOAD_POOL_SIZE [10] per instance; LOAD_PGBENCH_TXNS [10000] per webhook run,
//! LOAD_PGBENCH_SECS [8] for select-only; LOAD_SCENARIO_SECS [30] cap per closed-loop
//! scenario; LOAD_PG_SETTINGS (`name=value,…` for the embedded server, after the
//! harness's max_connections=300, track_wal_io_timing=on, track_io_timing=on);
//! LOAD_DATA_DIR (keep the cluster there); LOAD_PGBENCH (path); DATABASE_URL (use that
//! database instead); LOAD_SCENARIOS [unique,half,storm,create,poll,catchup,spend,notify,
//! backlog] a subset to run while profiling (half needs unique, poll polls the orders the
//! webhook scenarios made); LOAD_PAIDONCE_BIN (run that binary instead of building
//! paidonce's release one); LOAD_RUST_LOG [info] the instances' log filter (the app's
//! default).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![recursion_limit = "256"]

mod backlog;
mod catchup;
mod cpu;
mod driver;
mod events;
mod notify;
mod output;
mod pgbench;
mod receiver;
mod scenarios;
mod spend;
mod stack;

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

use scenarios::Bench;
use stack::{Instance, Seeded, StripeDouble};

/// What to run, from LOAD_* environment variables (defaults fit a 2-core machine in
/// about two minutes).
pub struct Settings {
    /// Orders (one unique event each) per concurrency level.
    orders: usize,
    levels: Vec<usize>,
    storm_events: usize,
    storm_copies: usize,
    storm_concurrency: usize,
    create_concurrency: usize,
    create_secs: u64,
    create_idempotency: bool,
    stripe_latency: Duration,
    pool_size: usize,
    poll_concurrency: usize,
    poll_secs: u64,
    half_secs: f64,
    /// Sent at the half-peak rate before the measured window (see Bench::half_peak).
    half_warmup_secs: f64,
    pgbench_txns: usize,
    pgbench_secs: u64,
    scenario_limit: Duration,
    pg_settings: Vec<(String, String)>,
    scenarios: Vec<String>,
}

pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let levels = std::env::var("LOAD_CONCURRENCY")
            .unwrap_or_else(|_| "8,32,64".into())
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .filter(|c| *c > 0)
            .collect();
        // Defaults first: Postgres keeps the last `-c` of a name, so LOAD_PG_SETTINGS wins.
        let pg_settings = [
            ("max_connections", "300"),
            ("track_wal_io_timing", "on"),
            ("track_io_timing", "on"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain(
            std::env::var("LOAD_PG_SETTINGS")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())),
        )
        .collect();
        Settings {
            orders: env_or("LOAD_ORDERS", 5000),
            levels,
            storm_events: env_or("LOAD_STORM_EVENTS", 1000),
            storm_copies: env_or("LOAD_STORM_COPIES", 10),
            storm_concurrency: env_or("LOAD_STORM_CONCURRENCY", 64),
            create_concurrency: env_or("LOAD_CREATE_CONCURRENCY", 64),
            create_secs: env_or("LOAD_CREATE_SECS", 15),
            create_idempotency: env_or("LOAD_CREATE_IDEMPOTENCY", 1) != 0,
            stripe_latency: Duration::from_millis(env_or("LOAD_STRIPE_LATENCY_MS", 300)),
            pool_size: env_or("LOAD_POOL_SIZE", 10),
            poll_concurrency: env_or("LOAD_POLL_CONCURRENCY", 32),
            poll_secs: env_or("LOAD_POLL_SECS", 10),
            half_secs: env_or("LOAD_HALF_SECS", 10.0),
            half_warmup_secs: env_or("LOAD_HALF_WARMUP_SECS", 2.0),
            pgbench_txns: env_or("LOAD_PGBENCH_TXNS", 10000),
            pgbench_secs: env_or("LOAD_PGBENCH_SECS", 8),
            scenario_limit: Duration::from_secs(env_or("LOAD_SCENARIO_SECS", 30)),
            pg_settings,
            scenarios: std::env::var("LOAD_SCENARIOS")
                .unwrap_or_else(|_| {
                    "unique,half,storm,create,poll,catchup,spend,notify,backlog".into()
                })
                .split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect(),
        }
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|x| x == scenario)
    }
}

fn main() -> std::process::ExitCode {
    if let Err(e) = stack::find_binary() {
        eprintln!("load: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(Settings::from_env())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(s: Settings) -> anyhow::Result<()> {
    let run_started = Instant::now();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let work = std::env::temp_dir().join(format!("paidonce-load-work-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    println!("== paidonce load harness (run {tag})");
    let db = stack::Db::open(s.pg_settings.clone()).await?;
    let mut conn = stack::connect(&db.url).await?;
    println!("  binary: {}", stack::bin().display());
    println!(
        "  database: {} ({})",
        if db.embedded.is_some() {
            "embedded cluster in a temp dir, Unix socket"
        } else {
            "DATABASE_URL"
        },
        stack::text(&mut conn, "SELECT version() AS v").await?
    );
    let pg_conf = stack::text(
        &mut conn,
        "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) AS v FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'full_page_writes', 'min_wal_size')",
    )
    .await?;
    println!("  postgres settings: {pg_conf}");
    println!(
        "  machine: {} CPUs (shared by the client, paidonce and Postgres)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  migrate: {}",
        stack::migrate(&db.url).await?.replace('\n', "; ")
    );
    let double = StripeDouble::quiet(s.stripe_latency).await;
    let stripe_base = double.server.uri();
    println!(
        "  stripe double: {stripe_base}, answers after {} ms",
        s.stripe_latency.as_millis()
    );
    let a = Instance::spawn("A", &db.url, &stripe_base, s.pool_size).await?;
    let b = Instance::spawn("B", &db.url, &stripe_base, s.pool_size).await?;
    println!(
        "  instances: A {} (pid {}), B {} (pid {}), pool size {} each",
        a.base, a.pid, b.base, b.pid, s.pool_size
    );
    let backend: u32 = stack::text(&mut conn, "SELECT pg_backend_pid()::text AS v")
        .await?
        .parse()
        .unwrap_or(0);
    let meter = cpu::Meter {
        a: a.pid,
        b: b.pid,
        c: 0,
        postmaster: cpu::postmaster_of(backend).unwrap_or(0),
    };
    let pgbench_bin = pgbench::find();
    match &pgbench_bin {
        Some(p) => println!("  pgbench: {}", p.display()),
        None => println!("  pgbench: not found (set LOAD_PGBENCH); no limits measured"),
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()?;
    let pack = stack::pack(&mut conn).await?;
    stack::seed_accounts(&mut conn, &tag).await?;
    let sample = Seeded {
        id: uuid::Uuid::new_v4(),
        payment_intent_id: format!("pi_bench_{tag}_sample_00000"),
    };
    let payload = serde_json::to_string(&events::succeeded(
        &format!("evt_bench_{tag}_sample_00000"),
        &sample,
        &pack,
    ))?;
    println!(
        "  events: payment_intent.succeeded as Stripe sends it, {} bytes (pgbench stores the same bytes)",
        payload.len()
    );

    let mut bench = Bench {
        s,
        conn,
        client,
        a,
        b,
        meter,
        pgbench: pgbench_bin,
        work: work.clone(),
        db_url: db.url.clone(),
        tag,
        pack,
        payload,
        table: Vec::new(),
        targets: Vec::new(),
        all_ok: true,
        poll_ids: Vec::new(),
        checkpoint_refused: false,
    };
    let result = async {
        bench.warm_wal().await;
        let peak = if bench.s.wants("unique") {
            bench.unique().await?
        } else {
            None
        };
        if let (Some(peak), true) = (&peak, bench.s.wants("half")) {
            bench.half_peak(peak).await?;
        }
        if bench.s.wants("storm") {
            bench.storm(peak.and_then(|p| p.at_storm)).await?;
        }
        if bench.s.wants("create") {
            bench.create().await?;
        }
        if bench.s.wants("poll") {
            bench.poll().await?;
        }
        if bench.s.wants("catchup") {
            bench.catchup().await?;
        }
        if bench.s.wants("spend") {
            bench.spend().await?;
        }
        if bench.s.wants("notify") {
            bench.notify().await?;
        }
        if bench.s.wants("backlog") {
            bench.backlog().await?;
        }
        bench.balances().await
    }
    .await;

    let Bench {
        a,
        b,
        conn,
        table,
        targets,
        all_ok,
        ..
    } = bench;
    a.stop().await;
    b.stop().await;
    drop(double);
    drop(conn);
    drop(db);
    let _ = std::fs::remove_dir_all(&work);
    result?;

    let mut out = String::new();
    writeln!(
        out,
        "\n== results (latencies in ms; req/s for paidonce, tps for pgbench)\n"
    )?;
    writeln!(out, "{}", output::TABLE_HEADER)?;
    for row in &table {
        writeln!(out, "{row}")?;
    }
    writeln!(out, "\n== targets (reported, not asserted)\n")?;
    for t in &targets {
        writeln!(out, "- {t}")?;
    }
    writeln!(
        out,
        "\ncorrectness: {} (every order paid at most once and exactly once when a success arrived; balances = Σ ledger; no 5xx)",
        if all_ok { "ok" } else { "PROBLEMS, see above" }
    )?;
    writeln!(
        out,
        "total run time {:.0} s",
        run_started.elapsed().as_secs_f64()
    )?;
    print!("{out}");
    Ok(())
}
