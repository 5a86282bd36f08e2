//! The notification scenario (issue 21): webhook throughput with notifications on
//! against the same without, in one run. Instance C is started with
//! MERCHANT_WEBHOOK_URL pointing at a receiver in the harness that answers 200 at once;
//! A has none. Unique signed successes (LOAD_NOTIFY_EVENTS [4000] per round) go to A,
//! then C, alternating for LOAD_NOTIFY_ROUNDS [6] rounds, at LOAD_NOTIFY_CONCURRENCY
//! [32], so drift on this box falls on both alike. C's figure includes its dispatcher
//! sending notifications while the events arrive; after each of C's rounds the harness
//! waits until every notification of the round is delivered (and says how long that
//! took), so a backlog is never left for the next round of A to pay for.
//!
//! LOAD_NOTIFY_DELIVER=0 points C at a port that refuses connections instead: the outbox
//! is written in every webhook's transaction as before, but after each account's first
//! refused try its notifications wait out the backoff, so the figure is the cost of the
//! writes alone, without the sends.

use std::time::{Duration, Instant};

use crate::driver;
use crate::events;
use crate::output::report_row;
use crate::receiver::Receiver;
use crate::scenarios::Bench;
use crate::stack::{self, Instance};

impl Bench {
    pub async fn notify(&mut self) -> anyhow::Result<()> {
        let n: usize = crate::env_or("LOAD_NOTIFY_EVENTS", 4000);
        let rounds: usize = crate::env_or("LOAD_NOTIFY_ROUNDS", 6usize).max(2);
        let deliver = crate::env_or("LOAD_NOTIFY_DELIVER", 1) != 0;
        let c: usize = crate::env_or("LOAD_NOTIFY_CONCURRENCY", 32);
        println!(
            "\n== notify: {n} unique events per round at c={c}, A (no notifications) and C (notifications on), alternating"
        );
        let receiver = Receiver::start().await?;
        let url = if deliver {
            receiver.url.clone()
        } else {
            println!(
                "  LOAD_NOTIFY_DELIVER=0: C's merchant URL refuses connections (outbox writes only)"
            );
            "http://127.0.0.1:9/merchant".to_owned()
        };
        let c_instance = Instance::spawn_with(
            "C",
            &self.db_url,
            "http://127.0.0.1:9",
            self.s.pool_size,
            &[
                ("MERCHANT_WEBHOOK_URL", url.as_str()),
                ("MERCHANT_WEBHOOK_SECRET", "whsec_load_merchant"),
            ],
        )
        .await?;
        // C's CPU is its own column (it used to fall under "other").
        self.meter.c = c_instance.pid;
        let mut rps = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            let notifying = round % 2 == 1;
            let (base, label) = if notifying {
                (c_instance.base.clone(), "notifications on (C)")
            } else {
                (self.a.base.clone(), "notifications off (A)")
            };
            let set = format!("ntf{round}");
            let orders = stack::seed_orders(&mut self.conn, &self.tag, &set, n).await?;
            let make = events::post(
                &self.client,
                events::unique(&base, &self.tag, &set, &orders, &self.pack),
            );
            let mark = self.mark().await?;
            let mut r = driver::closed_loop(
                &format!("unique c={c}, {label}"),
                c,
                orders.len(),
                self.s.scenario_limit,
                true,
                make,
            )
            .await;
            self.finish(&mark, &mut r).await?;
            if r.server_errors() > 0 || r.count_status(|s| s == 200) != orders.len() as u64 {
                self.all_ok = false;
                println!("  PROBLEM: {}", r.statuses_text());
            }
            rps[usize::from(notifying)].push(r.rps());
            let mut note = format!("round {}", round + 1);
            if notifying && deliver {
                // Every change announced: two per paid order (order.updated, credits.granted).
                let expected = 2 * n * (round / 2 + 1);
                let (delivered, lag) = self
                    .delivered_within(expected, Duration::from_secs(120))
                    .await?;
                note.push_str(&format!(
                    "; {delivered} of {expected} notifications delivered so far, the last {lag:.1} s after the round's last event"
                ));
                if delivered != expected {
                    self.all_ok = false;
                    println!("  PROBLEM: {delivered} of {expected} notifications delivered");
                }
            }
            self.table.push(report_row(&r, &note));
        }
        if deliver {
            let expected = 2 * n * (rounds / 2);
            let received = receiver.received();
            println!(
                "  check: the receiver took {received} POSTs for {expected} notifications (more only if a send was retried)"
            );
            if received < expected as u64 {
                self.all_ok = false;
            }
        }
        self.meter.c = 0;
        c_instance.stop().await;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (off, on) = (mean(&rps[0]), mean(&rps[1]));
        let x = on / off;
        self.targets.push(format!(
            "[{}] webhooks with notifications on ≥ 0.9 × without{}: {on:.0} vs {off:.0} req/s (mean of {} rounds each) → {x:.2}",
            if x >= 0.9 { "HELD" } else { "MISSED" },
            if deliver { "" } else { " (outbox writes only, nothing sent)" },
            rps[1].len()
        ));
        Ok(())
    }

    /// Waits (up to `limit`) until `expected` notifications are delivered; how many
    /// were, and how long after the call the last one was.
    pub(crate) async fn delivered_within(
        &mut self,
        expected: usize,
        limit: Duration,
    ) -> anyhow::Result<(usize, f64)> {
        let started = Instant::now();
        loop {
            let delivered = self.count_delivered().await?;
            if delivered >= expected || started.elapsed() > limit {
                return Ok((delivered, started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn count_delivered(&mut self) -> anyhow::Result<usize> {
        Ok(stack::text(
            &mut self.conn,
            "SELECT count(*)::text AS v FROM notifications WHERE state = 'delivered'",
        )
        .await?
        .parse()?)
    }
}
