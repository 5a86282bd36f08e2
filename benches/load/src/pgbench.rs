//! The limit: pgbench running the SQL paidonce runs, on the same database, at the same
//! client counts. The webhook scripts are the transaction of src/webhook/mod.rs +
//! src/orders/settle.rs + src/db/{events,orders,ledger}.rs for a success that pays a
//! pending order, statement for statement, prepared once per connection as diesel-async's
//! statement cache does (db::cached makes that true for every one of them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// Every column of `orders` as `Order::as_select()` reads them.
const ORDER_COLUMNS: &str = "id, account_id, pack_id, credits, amount, currency, status, provider_key, \
     payment_intent_id, client_secret, amount_refunded, created_at, updated_at, paid_at, dispute, refunds_as_of, reason, revoked";

/// How the statements travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One round trip per statement (BEGIN, six statements, COMMIT): the transaction as
    /// written, and the limit the target names.
    Sequential,
    /// The app's own round trips: BEGIN; the dedup insert with the order lock behind it;
    /// the four writes together; COMMIT. pgbench cannot `\gset` inside a pipeline, so the
    /// writes name the order, its account and its credits the way the seeding chose them
    /// instead of from the locked row: the same statements with the same values.
    /// Needs -D accounts, credits and account_prefix (`<tag>:acct:`, a variable because
    /// pgbench would read `:acct` inside a literal as one).
    Pipelined,
}

/// Client `c`'s transaction `i` pays order `c * stride + i` of the set (-D stride, -D i=0:
/// pgbench keeps a client's variables across its transactions), so no two transactions
/// touch the same order, as with unique events.
pub fn webhook_script(tag: &str, set: &str, shape: Shape) -> String {
    let ev = format!("('evt_pgb_{tag}_{set}_' || :n::text)");
    let order = format!("md5('pgb_{tag}_{set}_' || :n::text)::uuid");
    let insert_event = format!(
        "INSERT INTO webhook_events (event_id, event_type, livemode, api_version, payload) \
         VALUES ({ev}, 'payment_intent.succeeded', false, '2026-09-30.endive', :payload) ON CONFLICT (event_id) DO NOTHING;\n"
    );
    let lock = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = {order} LIMIT 1 FOR UPDATE");
    let head = "\\set n :client_id * :stride + :i\n\\set i :i + 1\n";
    match shape {
        Shape::Sequential => format!(
            "{head}BEGIN;\n\
             {insert_event}\
             {lock} \\gset o_\n\
             UPDATE orders SET status = 'paid', amount_refunded = 0, dispute = 'none', refunds_as_of = NULL, reason = COALESCE(NULL, reason), revoked = 0, paid_at = COALESCE(paid_at, now()), \
             updated_at = now() WHERE id = :o_id AND status = :o_status AND amount_refunded = :o_amount_refunded AND dispute = :o_dispute \
             RETURNING {ORDER_COLUMNS};\n\
             INSERT INTO order_transitions (order_id, from_status, to_status, cause) VALUES (:o_id, :o_status, 'paid', {ev});\n\
             INSERT INTO ledger (account_id, order_id, kind, delta, refund_total, cause) \
             VALUES (:o_account_id, :o_id, 'grant', :o_credits, 0, {ev});\n\
             UPDATE webhook_events SET outcome = 'applied', order_id = :o_id WHERE event_id = {ev};\n\
             COMMIT;\n"
        ),
        Shape::Pipelined => format!(
            "{head}\\set a :n % :accounts\n\
             BEGIN;\n\
             \\startpipeline\n\
             {insert_event}\
             {lock};\n\
             \\endpipeline\n\
             \\startpipeline\n\
             UPDATE orders SET status = 'paid', amount_refunded = 0, dispute = 'none', refunds_as_of = NULL, reason = COALESCE(NULL, reason), revoked = 0, paid_at = COALESCE(paid_at, now()), \
             updated_at = now() WHERE id = {order} AND status = 'pending' AND amount_refunded = 0 AND dispute = 'none' \
             RETURNING {ORDER_COLUMNS};\n\
             INSERT INTO order_transitions (order_id, from_status, to_status, cause) VALUES ({order}, 'pending', 'paid', {ev});\n\
             INSERT INTO ledger (account_id, order_id, kind, delta, refund_total, cause) \
             VALUES (md5(:account_prefix::text || :a::text)::uuid, {order}, 'grant', :credits, 0, {ev});\n\
             UPDATE webhook_events SET outcome = 'applied', order_id = {order} WHERE event_id = {ev};\n\
             \\endpipeline\n\
             COMMIT;\n"
        ),
    }
}

/// GET /api/orders/{id}'s query (`orders::find`) on a random order of the set.
pub fn select_script(tag: &str, set: &str) -> String {
    format!(
        "\\set n random(0, :pool - 1)\n\
         SELECT {ORDER_COLUMNS} FROM orders WHERE id = md5('pgb_{tag}_{set}_' || :n::text)::uuid LIMIT 1;\n"
    )
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub clients: usize,
    pub tps: f64,
    pub processed: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Per-transaction latencies (from pgbench's -l log), µs, sorted.
    pub latencies_us: Vec<u64>,
    /// (ms after the start of the kept window the transaction was due, latency µs).
    pub timeline: Vec<(u64, u64)>,
    pub ok: bool,
    pub note: String,
    /// Where the CPU went meanwhile (filled in by the caller).
    pub cpu: Option<crate::cpu::Usage>,
}

impl Outcome {
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let n = self.latencies_us.len();
        let idx = (((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[idx] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }

    /// How many transactions slower than `threshold_ms` were due in each second.
    pub fn slow_by_second(&self, threshold_ms: f64) -> Vec<usize> {
        let secs = self.timeline.iter().map(|t| t.0 / 1000).max().unwrap_or(0) as usize + 1;
        let mut buckets = vec![0; secs];
        for (at, lat) in &self.timeline {
            if *lat as f64 / 1000.0 > threshold_ms {
                buckets[(*at / 1000) as usize] += 1;
            }
        }
        buckets
    }
}

pub enum Length {
    /// Transactions per client (-t).
    PerClient(usize),
    /// Seconds (-T).
    Secs(u64),
    /// Open loop: `per_sec` transactions a second on pgbench's own (Poisson) schedule for
    /// `secs` (-R, -T); latency counts from the scheduled start, as the harness's own open
    /// loop does. Transactions that finish in the first `warmup` are left out.
    Rate {
        per_sec: f64,
        secs: u64,
        warmup: Duration,
    },
}

/// One pgbench run: a script at a client count.
pub struct Job<'a> {
    pub name: &'a str,
    pub script: &'a str,
    pub clients: usize,
    pub length: Length,
    pub defines: &'a [(&'a str, String)],
}

/// pgbench: LOAD_PGBENCH, else on PATH, else /usr/bin/pgbench.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LOAD_PGBENCH") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pgbench"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/pgbench");
        p.is_file().then_some(p)
    })
}

/// Runs `script` at `clients` clients, prepared statements, over the Unix socket or
/// whatever `url` says (libpq takes the URL as the database name).
pub async fn run(
    pgbench: &Path,
    work_dir: &Path,
    url: &str,
    job: Job<'_>,
) -> anyhow::Result<Outcome> {
    let Job {
        name,
        script,
        clients,
        length,
        defines,
    } = job;
    let dir = work_dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script_path = dir.join("script.sql");
    std::fs::write(&script_path, script)?;
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.arg("-n")
        .args(["-M", "prepared"])
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .arg("-l")
        .arg(format!("--log-prefix={}", dir.join("log").display()))
        .arg("-f")
        .arg(&script_path)
        .current_dir(&dir)
        .kill_on_drop(true);
    let mut warmup = Duration::ZERO;
    match length {
        Length::PerClient(t) => cmd.args(["-t", &t.to_string()]),
        Length::Secs(s) => cmd.args(["-T", &s.to_string()]),
        Length::Rate {
            per_sec,
            secs,
            warmup: w,
        } => {
            warmup = w;
            cmd.args(["-R", &format!("{per_sec:.0}"), "-T", &secs.to_string()])
        }
    };
    for (k, v) in defines {
        cmd.arg("-D").arg(format!("{k}={v}"));
    }
    cmd.arg(url);
    let started = std::time::Instant::now();
    let out = cmd.output().await.context("running pgbench")?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |prefix: &str| -> Option<String> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
    };
    let tps = field("tps =")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0.0);
    let processed = field("number of transactions actually processed:")
        .and_then(|v| v.split('/').next().and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0);
    let failed = field("number of failed transactions:")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    // (finished at, µs since the epoch; latency µs)
    let mut samples: Vec<(u64, u64)> = Vec::with_capacity(processed as usize);
    for entry in std::fs::read_dir(&dir)?.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("log.") {
            continue;
        }
        let log = std::fs::read_to_string(entry.path())?;
        // client_id transaction_no time_us script_no time_epoch time_us [schedule_lag_us]
        samples.extend(log.lines().filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .take(6)
                .map(|t| t.parse::<u64>().ok())
                .collect::<Option<_>>()?;
            (f.len() == 6).then(|| (f[4] * 1_000_000 + f[5], f[2]))
        }));
    }
    let first = samples.iter().map(|s| s.0).min().unwrap_or(0);
    let from = first + warmup.as_micros() as u64;
    let kept: Vec<(u64, u64)> = samples.into_iter().filter(|s| s.0 >= from).collect();
    // When each kept transaction was due, ms into the window, for slow_by_second.
    let timeline: Vec<(u64, u64)> = kept
        .iter()
        .map(|&(done, lat)| (done.saturating_sub(lat).saturating_sub(from) / 1000, lat))
        .collect();
    let mut latencies_us: Vec<u64> = kept.iter().map(|s| s.1).collect();
    latencies_us.sort_unstable();
    let _ = std::fs::remove_dir_all(&dir);
    let ok = out.status.success() && tps > 0.0;
    let note = if ok {
        String::new()
    } else {
        let err = stderr
            .lines()
            .filter(|l| l.contains("error") || l.contains("abort"))
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        format!("pgbench failed ({}): {err}", out.status)
    };
    if processed == 0 && !ok {
        bail!("{note}");
    }
    Ok(Outcome {
        clients,
        tps,
        processed,
        failed,
        elapsed,
        latencies_us,
        timeline,
        ok,
        note,
        cpu: None,
    })
}
