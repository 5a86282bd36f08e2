//! The scenarios, each measured the same way: a CHECKPOINT before, CPU per process
//! (cpu.rs) and server counters (WAL, checkpoints, autovacuum) around the load, then a
//! correctness check straight from the tables. Results land in `Bench::table` and
//! `Bench::targets`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use serde_json::json;

use crate::Settings;
use crate::cpu::{Meter, Snapshot, Usage};
use crate::driver::{self, Arrivals, MakeRequest, Report};
use crate::events;
use crate::output::{ms, pgbench_row, print_pgbench, print_report, report_row, verdict};
use crate::pgbench::{self, Shape};
use crate::stack::{self, DbStats, Instance, Pack};

pub struct Bench {
    pub s: Settings,
    pub conn: AsyncPgConnection,
    pub client: reqwest::Client,
    pub a: Instance,
    pub b: Instance,
    pub meter: Meter,
    pub pgbench: Option<PathBuf>,
    pub work: PathBuf,
    pub db_url: String,
    /// Names everything this run seeds, so a shared DATABASE_URL can be reused.
    pub tag: String,
    pub pack: Pack,
    /// The event body pgbench stores as payload: the same shape and size as the app's.
    pub payload: String,
    pub table: Vec<String>,
    pub targets: Vec<String>,
    pub all_ok: bool,
    /// Every order the webhook scenarios seeded: what the poll reads.
    pub poll_ids: Vec<String>,
    /// DATABASE_URL's role may not CHECKPOINT; said once.
    pub checkpoint_refused: bool,
}

/// Before a measurement.
pub struct Mark {
    db: DbStats,
    cpu: Snapshot,
}

/// One client count of the unique scenario: paidonce (absent at the pool-size extra
/// count) and pgbench's two shapes of the transaction.
struct Level {
    clients: usize,
    report: Option<Report>,
    sequential: Option<pgbench::Outcome>,
    pipelined: Option<pgbench::Outcome>,
}

/// One measured half-peak window.
struct Window {
    report: Report,
    p50: f64,
    p99: f64,
}

impl Window {
    fn spread(&self) -> f64 {
        if self.p50 > 0.0 {
            self.p99 / self.p50
        } else {
            0.0
        }
    }
}

/// What the unique scenario found, for the ones after it.
pub struct Peak {
    pub concurrency: usize,
    pub rps: f64,
    /// Throughput at the storm's concurrency (or the last level).
    pub at_storm: Option<(usize, f64)>,
}

impl Bench {
    /// A fresh cluster has no recycled WAL segments, so the first scenarios would pay
    /// for zero-filling new ones and later ones would not. Switching segments a few
    /// times and checkpointing leaves recycled segments, and the CHECKPOINT before each
    /// measurement recycles what the one before wrote. Best effort: needs superuser.
    /// (min_wal_size=1GB, to keep more, gave a worse half-peak tail: 3.0-4.3 × in four
    /// runs against 2.1-2.4 × in two with the default.)
    pub async fn warm_wal(&mut self) {
        const SEGMENTS: usize = 8;
        let started = std::time::Instant::now();
        for _ in 0..SEGMENTS {
            // pg_switch_wal() only moves on after some WAL: an xid's commit record is that.
            if let Err(e) = stack::exec(
                &mut self.conn,
                "SELECT txid_current(); SELECT pg_switch_wal()",
            )
            .await
            {
                println!("  (WAL warm-up refused, measuring without: {e})");
                return;
            }
        }
        let _ = stack::exec(&mut self.conn, "CHECKPOINT").await;
        let spare = DbStats::read(&mut self.conn)
            .await
            .map(|d| d.spare_segments)
            .unwrap_or(-1);
        println!(
            "  WAL warm-up: {SEGMENTS} segment switches and a checkpoint in {:.1} s, {spare} spare segments",
            started.elapsed().as_secs_f64()
        );
    }

    /// Starts a measurement. A CHECKPOINT first, for paidonce and pgbench alike: the
    /// scenario then pays for no checkpoint the one before it made due, and the WAL
    /// segments written since the last one are recycled. A fresh cluster has no recycled
    /// segments, and each new 16 MiB segment is zero-filled and flushed while commits
    /// wait (≈ every 5 000 events here): the half-peak tail showed a burst of slow
    /// requests per segment. A server that has run a while recycles its segments.
    pub async fn mark(&mut self) -> anyhow::Result<Mark> {
        if let Err(e) = stack::exec(&mut self.conn, "CHECKPOINT").await
            && !self.checkpoint_refused
        {
            println!("  (CHECKPOINT before measurements refused, measuring without: {e})");
            self.checkpoint_refused = true;
        }
        self.snapshot().await
    }

    /// The counters a measurement is taken against, without a checkpoint.
    async fn snapshot(&mut self) -> anyhow::Result<Mark> {
        Ok(Mark {
            db: DbStats::read(&mut self.conn).await?,
            cpu: self.meter.snapshot(),
        })
    }

    /// Attaches the CPU used since `mark` to `r` and prints it, with the server counters.
    pub async fn finish(&mut self, mark: &Mark, r: &mut Report) -> anyhow::Result<()> {
        r.cpu = Some(Usage::between(&mark.cpu, &self.meter.snapshot()));
        print_report(r);
        let db = DbStats::read(&mut self.conn).await?.since(&mark.db);
        println!("    db: {db}");
        Ok(())
    }

    pub async fn pgbench(
        &mut self,
        title: &str,
        job: pgbench::Job<'_>,
    ) -> Option<pgbench::Outcome> {
        let pgb = self.pgbench.clone()?;
        let mark = self.mark().await.ok()?;
        let result = pgbench::run(&pgb, &self.work, &self.db_url, job).await;
        let usage = Usage::between(&mark.cpu, &self.meter.snapshot());
        match result {
            Ok(mut o) => {
                o.cpu = Some(usage);
                print_pgbench(title, &o);
                let db = DbStats::read(&mut self.conn)
                    .await
                    .map(|d| d.since(&mark.db))
                    .unwrap_or_default();
                println!("    db: {db}");
                Some(o)
            }
            Err(e) => {
                println!("  pgbench {title}: {e:#}");
                None
            }
        }
    }

    /// The -D values webhook_script reads: client c's transactions pay orders
    /// c × per_client onwards of the set.
    fn webhook_defines(&self, per_client: usize) -> [(&'static str, String); 6] {
        [
            ("stride", per_client.to_string()),
            ("i", "0".to_owned()),
            ("payload", self.payload.clone()),
            ("accounts", stack::accounts().to_string()),
            ("credits", self.pack.credits.to_string()),
            ("account_prefix", format!("{}:acct:", self.tag)),
        ]
    }

    /// pgbench's webhook transaction on `per_client × c` fresh orders of `set`.
    async fn pgbench_webhook(
        &mut self,
        title: &str,
        set: &str,
        c: usize,
        shape: pgbench::Shape,
    ) -> anyhow::Result<Option<pgbench::Outcome>> {
        if self.pgbench.is_none() {
            return Ok(None);
        }
        let per_client = self.s.pgbench_txns.div_ceil(c);
        stack::seed_pgbench_orders(&mut self.conn, &self.tag, set, per_client * c).await?;
        let script = pgbench::webhook_script(&self.tag, set, shape);
        let defines = self.webhook_defines(per_client);
        let name = format!("webhook-{set}");
        let job = pgbench::Job {
            name: &name,
            script: &script,
            clients: c,
            length: pgbench::Length::PerClient(per_client),
            defines: &defines,
        };
        let out = self.pgbench(title, job).await;
        if out.is_some() {
            let check =
                stack::check_set(&mut self.conn, &format!("pgb-{}-{set}-", self.tag)).await?;
            println!("  pgbench check: {}", check.text());
        }
        Ok(out)
    }

    /// One signed success per pending order at each concurrency, with pgbench's
    /// transaction at the same client counts (and at the pool's own connection count),
    /// sent statement by statement and pipelined as the app sends it.
    pub async fn unique(&mut self) -> anyhow::Result<Option<Peak>> {
        println!("\n== unique: one signed payment_intent.succeeded per pending order, instance A");
        let mut levels: Vec<Level> = Vec::new();
        let mut counts = self.s.levels.clone();
        // The fairest limit for 10 pooled connections is pgbench at 10 clients.
        if !counts.contains(&self.s.pool_size) {
            counts.push(self.s.pool_size);
        }
        for c in counts {
            let set = format!("u{c}");
            let report = if self.s.levels.contains(&c) {
                Some(self.unique_level(c, &set).await?)
            } else {
                None
            };
            let sequential = self
                .pgbench_webhook("webhook transaction", &set, c, Shape::Sequential)
                .await?;
            let pipelined = self
                .pgbench_webhook(
                    "webhook transaction, pipelined as the app sends it",
                    &format!("{set}p"),
                    c,
                    Shape::Pipelined,
                )
                .await?;
            levels.push(Level {
                clients: c,
                report,
                sequential: sequential.filter(|o| o.ok),
                pipelined: pipelined.filter(|o| o.ok),
            });
        }

        for l in &levels {
            let ratio = |o: &Option<pgbench::Outcome>| {
                l.report
                    .as_ref()
                    .zip(o.as_ref())
                    .map(|(r, o)| r.rps() / o.tps)
            };
            if let Some(r) = &l.report {
                let note = match (ratio(&l.sequential), ratio(&l.pipelined)) {
                    (Some(x), Some(y)) => format!("{x:.2} × pgbench, {y:.2} × pipelined; "),
                    (Some(x), None) => format!("{x:.2} × pgbench; "),
                    _ => String::new(),
                };
                self.table
                    .push(report_row(r, &format!("{note}{}", r.outcomes_text())));
            }
            let pool_note = if l.report.is_none() {
                "pool-size clients: the app's own connection count"
            } else {
                ""
            };
            if let Some(o) = &l.sequential {
                self.table
                    .push(pgbench_row("pgbench webhook tx", o, pool_note));
            }
            if let Some(o) = &l.pipelined {
                self.table
                    .push(pgbench_row("pgbench webhook tx, pipelined", o, pool_note));
            }
        }

        let measured: Vec<(usize, &Report)> = levels
            .iter()
            .filter_map(|l| l.report.as_ref().map(|r| (l.clients, r)))
            .filter(|(_, r)| r.requests > 0)
            .collect();
        let Some(&(best_c, best)) = measured
            .iter()
            .max_by(|x, y| x.1.rps().total_cmp(&y.1.rps()))
        else {
            return Ok(None);
        };
        let peak = Peak {
            concurrency: best_c,
            rps: best.rps(),
            at_storm: measured
                .iter()
                .find(|(c, _)| *c == self.s.storm_concurrency)
                .or(measured.last())
                .map(|(c, r)| (*c, r.rps())),
        };
        // The target: paidonce's best against pgbench's best client count.
        let best_of = |pick: fn(&Level) -> &Option<pgbench::Outcome>| {
            levels
                .iter()
                .filter_map(|l| pick(l).as_ref())
                .max_by(|x, y| x.tps.total_cmp(&y.tps))
                .cloned()
        };
        if let Some(o) = best_of(|l| &l.sequential) {
            let x = peak.rps / o.tps;
            self.targets.push(format!(
                "[{}] unique ≥ 0.6 × pgbench at its best client count: {:.0} req/s (c={}) vs {:.0} tps (c={}) → {x:.2}",
                verdict(x >= 0.6),
                peak.rps,
                peak.concurrency,
                o.tps,
                o.clients
            ));
        }
        if let Some(o) = best_of(|l| &l.pipelined) {
            let x = peak.rps / o.tps;
            self.targets.push(format!(
                "[{}] the same against the transaction pipelined as the app sends it (4 round trips, not 8): {:.0} tps (c={}) → {x:.2}",
                verdict(x >= 0.6),
                o.tps,
                o.clients
            ));
        }
        Ok(Some(peak))
    }

    /// One concurrency level of the unique scenario, checked.
    async fn unique_level(&mut self, c: usize, set: &str) -> anyhow::Result<Report> {
        let orders = stack::seed_orders(&mut self.conn, &self.tag, set, self.s.orders).await?;
        self.poll_ids
            .extend(orders.iter().map(|o| o.id.to_string()));
        let make = events::post(
            &self.client,
            events::unique(&self.a.base, &self.tag, set, &orders, &self.pack),
        );
        let mark = self.mark().await?;
        let mut r = driver::closed_loop(
            &format!("unique c={c}"),
            c,
            orders.len(),
            self.s.scenario_limit,
            true,
            make,
        )
        .await;
        self.finish(&mark, &mut r).await?;
        let check = stack::check_set(&mut self.conn, &format!("bench-{}-{set}-", self.tag)).await?;
        let ok = check.paid as u64 == r.count_status(|st| st == 200)
            && check.multi_grant == 0
            && check.one_grant == check.paid
            && r.server_errors() == 0;
        self.all_ok &= ok;
        println!(
            "  check: {}{} → {}",
            check.text(),
            if r.requests == orders.len() {
                ""
            } else {
                " (stopped at the time limit)"
            },
            if ok { "ok" } else { "WRONG" }
        );
        Ok(r)
    }

    /// Unique events at half the peak rate, open loop: is the tail tight when not saturated?
    /// The target's figure comes from evenly spaced events. Then, like with like, the same
    /// rate with independent (Poisson) arrivals, for the app and for pgbench's transaction
    /// on as many connections as the app's pool: how much of the tail the database and
    /// this box give without the app.
    pub async fn half_peak(&mut self, peak: &Peak) -> anyhow::Result<()> {
        let rate = (peak.rps / 2.0).max(1.0);
        println!(
            "\n== unique at half of peak: {rate:.0}/s open loop (peak {:.0} req/s at c={}), instance A",
            peak.rps, peak.concurrency
        );
        let even = self.half_window(rate, Arrivals::Even, "half").await?;
        let spread = even.spread();
        self.table
            .push(report_row(&even.report, &format!("p99/p50 = {spread:.1}")));
        let poisson = self.half_window(rate, Arrivals::Poisson, "halfr").await?;
        self.table.push(report_row(
            &poisson.report,
            &format!(
                "p99/p50 = {:.1}: the reference's arrivals",
                poisson.spread()
            ),
        ));
        let reference = self.pgbench_half(rate).await?;
        let reference_text = reference.as_ref().map_or(String::new(), |o| {
            format!(
                " (Poisson arrivals at that rate: paidonce {:.1} ×, pgbench's transaction alone {:.1} ×)",
                poisson.spread(),
                o.pct_ms(99.0) / o.pct_ms(50.0).max(0.001)
            )
        });
        self.targets.push(format!(
            "[{}] webhook p99 ≤ 3 × p50 at half of peak: p50 {} ms, p99 {} ms → {spread:.1} ×{reference_text}",
            verdict(spread <= 3.0),
            ms(even.p50),
            ms(even.p99),
        ));
        Ok(())
    }

    /// One half-peak window on fresh orders of `set`: a CHECKPOINT, a warm-up at the
    /// same rate reported apart (after the checkpoint the first write of every page
    /// carries a full-page image, and the client's connections went idle meanwhile; its
    /// statuses count in the check), then the measured window.
    async fn half_window(
        &mut self,
        rate: f64,
        arrivals: Arrivals,
        set: &str,
    ) -> anyhow::Result<Window> {
        let total = ((rate * self.s.half_secs) as usize).max(1);
        let warmup = (rate * self.s.half_warmup_secs) as usize;
        let (label, name) = match arrivals {
            Arrivals::Even => ("evenly spaced", "unique half-peak"),
            Arrivals::Poisson => ("Poisson arrivals", "unique half-peak, Poisson"),
        };
        println!("  {label}: {warmup} events of warm-up then {total} measured");
        let orders = stack::seed_orders(&mut self.conn, &self.tag, set, warmup + total).await?;
        self.poll_ids
            .extend(orders.iter().map(|o| o.id.to_string()));
        let make = events::post(
            &self.client,
            events::unique(&self.a.base, &self.tag, set, &orders, &self.pack),
        );
        let mark = self.mark().await?;
        let (warm, mark) = if warmup > 0 {
            let w = driver::open_loop(
                &format!("{name} warm-up"),
                rate,
                warmup,
                arrivals,
                true,
                make.clone(),
            )
            .await;
            println!(
                "  warm-up (not in the figures): {} requests, p50 {} ms, p99 {} ms, max {} ms; status {}",
                w.requests,
                ms(w.pct_ms(50.0)),
                ms(w.pct_ms(99.0)),
                ms(w.max_ms()),
                w.statuses_text()
            );
            // Counters from here: the measured window only, and no second checkpoint.
            (Some(w), self.snapshot().await?)
        } else {
            (None, mark)
        };
        let measured: MakeRequest = Arc::new(move |i| make(warmup + i));
        // Wall clock, to line the per-second slow counts up with the server's log.
        println!(
            "  measured window starts {} UTC",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        let mut r = driver::open_loop(name, rate, total, arrivals, true, measured).await;
        self.finish(&mark, &mut r).await?;
        let window = Window {
            p50: r.pct_ms(50.0),
            p99: r.pct_ms(99.0),
            report: r,
        };
        println!(
            "    requests slower than 3 × p50 ({} ms), per second: {:?}; the client sent at most {:.1} ms late",
            ms(3.0 * window.p50),
            window.report.slow_by_second(3.0 * window.p50),
            window.report.max_send_lag.as_secs_f64() * 1000.0
        );
        let check = stack::check_set(&mut self.conn, &format!("bench-{}-{set}-", self.tag)).await?;
        let ok = check.all_paid_once()
            && window.report.server_errors() == 0
            && warm.as_ref().is_none_or(|w| w.server_errors() == 0);
        self.all_ok &= ok;
        println!(
            "  check: {} → {}",
            check.text(),
            if ok { "ok" } else { "WRONG" }
        );
        Ok(window)
    }

    /// The tail's reference: pgbench's webhook transaction, pipelined as the app sends it,
    /// at the half-peak rate for the same warm-up and window, on as many connections as
    /// the app's pool: what the database and this box give at that rate without the app.
    /// `pgbench -R` schedules Poisson arrivals only, hence the app's Poisson window.
    async fn pgbench_half(&mut self, rate: f64) -> anyhow::Result<Option<pgbench::Outcome>> {
        if self.pgbench.is_none() {
            return Ok(None);
        }
        let clients = self.s.pool_size.max(1);
        let secs = (self.s.half_warmup_secs + self.s.half_secs).ceil().max(1.0) as u64;
        // Poisson arrivals spread unevenly over the clients: room for twice the mean.
        let per_client = (rate * secs as f64 / clients as f64 * 2.0).ceil() as usize + 100;
        let set = "halfp";
        stack::seed_pgbench_orders(&mut self.conn, &self.tag, set, per_client * clients).await?;
        let script = pgbench::webhook_script(&self.tag, set, Shape::Pipelined);
        let defines = self.webhook_defines(per_client);
        let job = pgbench::Job {
            name: "webhook-half",
            script: &script,
            clients,
            length: pgbench::Length::Rate {
                per_sec: rate,
                secs,
                warmup: Duration::from_secs_f64(self.s.half_warmup_secs),
            },
            defines: &defines,
        };
        let title = format!(
            "webhook transaction, pipelined, {rate:.0}/s open loop (Poisson), {clients} clients ({:.0} s warm-up left out)",
            self.s.half_warmup_secs
        );
        let out = self.pgbench(&title, job).await;
        let Some(o) = out.filter(|o| o.ok) else {
            return Ok(None);
        };
        let (p50, p99) = (o.pct_ms(50.0), o.pct_ms(99.0));
        println!(
            "    transactions slower than 3 × p50 ({} ms), per second: {:?}",
            ms(3.0 * p50),
            o.slow_by_second(3.0 * p50)
        );
        let check = stack::check_set(&mut self.conn, &format!("pgb-{}-{set}-", self.tag)).await?;
        println!("  pgbench check: {}", check.text());
        self.table.push(pgbench_row(
            "pgbench webhook tx, pipelined, half-peak rate",
            &o,
            &format!(
                "{rate:.0}/s open loop (Poisson), {clients} clients; p99/p50 = {:.1}",
                p99 / p50.max(0.001)
            ),
        ));
        Ok(Some(o))
    }

    /// Every event delivered `storm_copies` times at once, split over two instances on
    /// one database; instance A's memory watched meanwhile.
    pub async fn storm(&mut self, unique_at: Option<(usize, f64)>) -> anyhow::Result<()> {
        let (events_n, copies) = (self.s.storm_events, self.s.storm_copies);
        println!(
            "\n== storm: {events_n} events × {copies} copies, concurrent, split across instances A and B"
        );
        let orders = stack::seed_orders(&mut self.conn, &self.tag, "storm", events_n).await?;
        self.poll_ids
            .extend(orders.iter().map(|o| o.id.to_string()));
        let mut deliveries = Vec::with_capacity(orders.len() * copies);
        for (k, o) in orders.iter().enumerate() {
            let event =
                events::succeeded(&format!("evt_bench_{}_storm_{k}", self.tag), o, &self.pack);
            // The copies of one event go out back to back, alternating instances, so
            // they are in flight together: the hardest case for the dedup.
            for copy in 0..copies {
                let base = if (k + copy) % 2 == 0 {
                    &self.a.base
                } else {
                    &self.b.base
                };
                deliveries.push(events::delivery(base, &event));
            }
        }
        let total = deliveries.len();
        let make = events::post(&self.client, deliveries);
        let peak_reset = self.a.reset_peak();
        let rss_before = self.a.rss_kib().unwrap_or(0);
        let sampling = Arc::new(AtomicBool::new(true));
        let rss_max = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (sampling, rss_max, pid) = (sampling.clone(), rss_max.clone(), self.a.pid);
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(kib) = stack::proc_kib(pid, "VmRSS:") {
                        rss_max.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mark = self.mark().await?;
        let mut storm = driver::closed_loop(
            "storm",
            self.s.storm_concurrency,
            total,
            self.s.scenario_limit,
            true,
            make,
        )
        .await;
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        let hwm = self.a.hwm_kib().unwrap_or(0);
        self.finish(&mark, &mut storm).await?;
        let check = stack::check_set(&mut self.conn, &format!("bench-{}-storm-", self.tag)).await?;
        let applied = storm.outcomes.get("applied").copied().unwrap_or(0) as usize;
        let ok = check.all_paid_once()
            && check.total as usize == events_n
            && check.events as usize == events_n
            && applied == events_n
            && storm.non_2xx() == 0;
        self.all_ok &= ok;
        println!(
            "  check: {} → {}",
            check.text(),
            if ok { "ok" } else { "WRONG" }
        );
        println!(
            "  instance A memory: VmHWM {:.1} MiB during the storm ({}), sampled VmRSS max {:.1} MiB, before {:.1} MiB",
            hwm as f64 / 1024.0,
            if peak_reset {
                "peak reset before the storm"
            } else {
                "peak since start: clear_refs refused"
            },
            rss_max.load(Ordering::Relaxed) as f64 / 1024.0,
            rss_before as f64 / 1024.0
        );
        println!("  instance A log: {}", self.a.log_summary());
        println!("  instance B log: {}", self.b.log_summary());
        let vs_unique = unique_at.map(|(c, rps)| (c, storm.rps() / rps));
        self.table.push(report_row(
            &storm,
            &format!(
                "{}; {} grants{}",
                storm.outcomes_text(),
                check.grant_rows,
                vs_unique.map_or(String::new(), |(c, x)| format!("; {x:.2} × unique c={c}"))
            ),
        ));
        self.targets.push(format!(
            "[{}] storm: non-2xx {}, grants {} (exactly {events_n} wanted), orders paid once {}/{}",
            verdict(
                storm.non_2xx() == 0
                    && check.grant_rows as usize == events_n
                    && check.all_paid_once()
            ),
            storm.non_2xx(),
            check.grant_rows,
            check.one_grant,
            check.total
        ));
        if let Some((c, x)) = vs_unique {
            self.targets.push(format!(
                "[{}] storm throughput ≥ 0.8 × unique (c={c}): {:.0} vs {:.0} req/s → {x:.2}",
                verdict(x >= 0.8),
                storm.rps(),
                storm.rps() / x
            ));
        }
        self.targets.push(format!(
            "[{}] RSS of one instance under the storm ≤ 64 MiB: VmHWM {:.1} MiB",
            verdict(hwm > 0 && hwm <= 64 * 1024),
            hwm as f64 / 1024.0
        ));
        Ok(())
    }

    /// POST /api/orders against a provider that answers after `stripe_latency`.
    pub async fn create(&mut self) -> anyhow::Result<()> {
        let s = &self.s;
        let ideal = s.create_concurrency as f64 / s.stripe_latency.as_secs_f64().max(0.001);
        println!(
            "\n== create: POST /api/orders, Stripe double answering after {} ms, pool size {}, {} clients, {} s{}",
            s.stripe_latency.as_millis(),
            s.pool_size,
            s.create_concurrency,
            s.create_secs,
            if s.create_idempotency {
                ", an Idempotency-Key each"
            } else {
                ""
            }
        );
        let make: MakeRequest = {
            let client = self.client.clone();
            let url = format!("{}/api/orders", self.a.base);
            let tag = self.tag.clone();
            let with_key = s.create_idempotency;
            Arc::new(move |i: usize| {
                let req = client.post(&url).json(
                    &json!({"email": format!("create-{tag}-{i}@bench.example"), "pack_id": "starter"}),
                );
                if with_key {
                    req.header("Idempotency-Key", format!("load-{tag}-{i}"))
                } else {
                    req
                }
            })
        };
        let (clients, secs) = (s.create_concurrency, s.create_secs);
        let latency = s.stripe_latency.as_secs_f64();
        let mark = self.mark().await?;
        let mut create = driver::closed_loop(
            "create",
            clients,
            usize::MAX,
            Duration::from_secs(secs),
            false,
            make,
        )
        .await;
        self.finish(&mark, &mut create).await?;
        let created = stack::check_created(&mut self.conn, &self.tag).await?;
        let created_201 = create.count_status(|st| st == 201);
        let ok = created.without_intent == 0
            && created.orders as u64 == created_201
            && created.distinct_intents == created.orders
            && create.server_errors() == 0;
        self.all_ok &= ok;
        println!(
            "  check: {} orders stored for {created_201} × 201, {} without a PaymentIntent, {} distinct intents → {}",
            created.orders,
            created.without_intent,
            created.distinct_intents,
            if ok { "ok" } else { "WRONG" }
        );
        self.table.push(report_row(
            &create,
            &format!(
                "{:.2} × ideal {ideal:.0}/s (= clients / provider latency)",
                create.rps() / ideal
            ),
        ));
        self.targets.push(format!(
            "[{}] create ≥ 0.7 × {clients}/{latency:.1}s = {:.0} orders/s: {:.0} orders/s ({:.2} × ideal)",
            verdict(create.rps() >= 0.7 * ideal),
            0.7 * ideal,
            create.rps(),
            create.rps() / ideal
        ));
        Ok(())
    }

    /// GET /api/orders/{id} over every seeded order, and pgbench's lookup.
    pub async fn poll(&mut self) -> anyhow::Result<()> {
        let (clients, secs) = (self.s.poll_concurrency, self.s.poll_secs);
        if self.poll_ids.is_empty() {
            println!("\n== poll: skipped, no orders to poll (run unique or storm first)");
            return Ok(());
        }
        println!(
            "\n== poll: GET /api/orders/{{id}} over {} orders, {clients} clients, {secs} s, instance A",
            self.poll_ids.len()
        );
        // Every order, in a fixed stride through the ids: no cache-friendly order.
        let n = self.poll_ids.len();
        let paths: Arc<Vec<String>> = Arc::new(
            (0..n)
                .map(|i| {
                    format!(
                        "/api/orders/{}",
                        self.poll_ids[i.wrapping_mul(2_654_435_761) % n]
                    )
                })
                .collect(),
        );
        let addr = self.a.addr()?;
        // The webhook scenarios left dead row versions behind; both sides read a settled table.
        stack::exec(&mut self.conn, "VACUUM ANALYZE orders").await?;
        let mark = self.mark().await?;
        let mut poll =
            driver::closed_loop_get("poll", clients, Duration::from_secs(secs), addr, paths).await;
        self.finish(&mark, &mut poll).await?;
        self.all_ok &= poll.server_errors() == 0 && poll.non_2xx() == 0;
        // pgbench over the orders it seeded for the first level (they exist in any case).
        let mut note = String::new();
        let mut pg_row = None;
        if let Some(&c0) = self.s.levels.first() {
            let set = format!("u{c0}");
            let pool = self.s.pgbench_txns.div_ceil(c0) * c0;
            if !self.s.wants("unique") && self.pgbench.is_some() {
                // Unique seeds these; without it the lookups would find no rows.
                stack::seed_pgbench_orders(&mut self.conn, &self.tag, &set, pool).await?;
            }
            let script = pgbench::select_script(&self.tag, &set);
            let defines = [("pool", pool.to_string())];
            let job = pgbench::Job {
                name: "select",
                script: &script,
                clients,
                length: pgbench::Length::Secs(self.s.pgbench_secs),
                defines: &defines,
            };
            if let Some(o) = self.pgbench("select-only (the poll's lookup)", job).await {
                let x = poll.rps() / o.tps;
                note = format!("{x:.2} × pgbench select-only");
                self.targets.push(format!(
                    "[{}] poll ≥ 0.5 × pgbench select-only: {:.0} req/s vs {:.0} tps → {x:.2}",
                    verdict(x >= 0.5),
                    poll.rps(),
                    o.tps
                ));
                pg_row = Some(pgbench_row("pgbench select-only", &o, ""));
            }
        }
        self.table.push(report_row(&poll, &note));
        self.table.extend(pg_row);
        Ok(())
    }

    /// Every account's balance through the admin API = Σ its ledger = its paid orders.
    pub async fn balances(&mut self) -> anyhow::Result<()> {
        println!(
            "\n== correctness: every account's balance through GET /admin/api/accounts/{{email}}"
        );
        let (checked, wrong, total, first) =
            stack::check_balances(&mut self.conn, &self.client, &self.a.base, &self.tag).await?;
        self.all_ok &= wrong == 0;
        println!(
            "  {checked} accounts: balance = Σ ledger = credits of paid orders (+ the spend scenario's seeded grants − its spends) for {} of them; total {total} credits{}",
            checked - wrong,
            first.map_or(String::new(), |f| format!("; first wrong: {f}"))
        );
        println!("  instance A log: {}", self.a.log_summary());
        println!("  instance B log: {}", self.b.log_summary());
        Ok(())
    }
}
