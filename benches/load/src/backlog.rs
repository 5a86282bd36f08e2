//! The backlog scenario: a merchant's receiver that was down comes back. Instance D
//! takes LOAD_BACKLOG_EVENTS [10000] unique successes while its MERCHANT_WEBHOOK_URL
//! refuses connections, so two notifications per event wait in the outbox (spread over
//! the run's accounts). D stops; the harness makes every waiting notification due now
//! (as the retries would be once their backoff ran out), and E starts with the receiver
//! up. Measured: how long E takes to deliver the whole backlog, and at what rate.
//!
//! In production the outbox is mostly delivered rows, and a backlog smaller than a tenth
//! of the table does not trigger autoanalyze: the planner goes on believing that almost
//! nothing waits. The harness reproduces that: it analyzes the table before the outage
//! and keeps autovacuum off it until the backlog is delivered.

use std::time::Instant;

use crate::driver;
use crate::events;
use crate::receiver::Receiver;
use crate::scenarios::Bench;
use crate::stack::{self, Instance};

impl Bench {
    pub async fn backlog(&mut self) -> anyhow::Result<()> {
        let n: usize = crate::env_or("LOAD_BACKLOG_EVENTS", 10_000);
        println!(
            "\n== backlog: {n} events while the merchant's receiver is down, then delivery of their {} notifications once it is up",
            2 * n
        );
        let secret = ("MERCHANT_WEBHOOK_SECRET", "whsec_load_merchant");
        stack::exec(
            &mut self.conn,
            "ANALYZE notifications; ALTER TABLE notifications SET (autovacuum_enabled = false)",
        )
        .await?;
        let down = Instance::spawn_with(
            "D",
            &self.db_url,
            "http://127.0.0.1:9",
            self.s.pool_size,
            &[
                ("MERCHANT_WEBHOOK_URL", "http://127.0.0.1:9/merchant"),
                secret,
            ],
        )
        .await?;
        let orders = stack::seed_orders(&mut self.conn, &self.tag, "backlog", n).await?;
        let make = events::post(
            &self.client,
            events::unique(&down.base, &self.tag, "backlog", &orders, &self.pack),
        );
        let r = driver::closed_loop(
            "unique c=32, receiver down (D)",
            32,
            orders.len(),
            self.s
                .scenario_limit
                .max(std::time::Duration::from_secs(120)),
            true,
            make,
        )
        .await;
        down.stop().await;
        if r.server_errors() > 0 || r.count_status(|s| s == 200) != orders.len() as u64 {
            self.all_ok = false;
            println!("  PROBLEM: {}", r.statuses_text());
        }
        let delivered_before: usize = self.count_delivered().await?;
        let waiting: usize = stack::text(
            &mut self.conn,
            "WITH due AS (UPDATE notifications SET next_attempt_at = now() \
             WHERE state = 'pending' RETURNING 1) SELECT count(*)::text AS v FROM due",
        )
        .await?
        .parse()?;
        let receiver = Receiver::start().await?;
        let before = self.meter.snapshot();
        let started = Instant::now();
        let up = Instance::spawn_with(
            "E",
            &self.db_url,
            "http://127.0.0.1:9",
            self.s.pool_size,
            &[("MERCHANT_WEBHOOK_URL", receiver.url.as_str()), secret],
        )
        .await?;
        self.meter.c = up.pid;
        let expected = delivered_before + waiting;
        let (delivered, _) = self
            .delivered_within(expected, std::time::Duration::from_secs(600))
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let usage = crate::cpu::Usage::between(&before, &self.meter.snapshot());
        self.meter.c = 0;
        up.stop().await;
        stack::exec(
            &mut self.conn,
            "ALTER TABLE notifications RESET (autovacuum_enabled)",
        )
        .await?;
        let drained = delivered.saturating_sub(delivered_before);
        println!(
            "  {waiting} notifications waiting over {} accounts; {drained} delivered in {secs:.1} s after E started = {:.0}/s; receiver took {} POSTs",
            stack::accounts(),
            drained as f64 / secs.max(1e-3),
            receiver.received()
        );
        println!("    cpu (cores): {}", usage.text());
        if drained < waiting {
            self.all_ok = false;
            println!("  PROBLEM: only {drained} of {waiting} delivered within 600 s");
        }
        self.targets.push(format!(
            "[measured] a backlog of {waiting} notifications (receiver back after an outage) delivered in {secs:.1} s = {:.0}/s (E's start included)",
            drained as f64 / secs.max(1e-3)
        ));
        Ok(())
    }
}
