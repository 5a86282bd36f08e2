//! The notification scenario (issue 21): webhook throughput with notifications on
//! against the same without, in one run. Instance C is started with
//! MERCHANT_WEBHOOK_URL pointing at a receiver in the harness that answers 200 at once;
//! A has none. Unique signed successes (LOAD_NOTIFY_EVENTS [2000] per round) go to A,
//! then C, then A, then C, at LOAD_NOTIFY_CONCURRENCY [32], so drift on this box falls
//! on both alike; C's figure includes its dispatcher sending every notification while
//! the events arrive. Then every notification must be delivered.
//!
//! LOAD_NOTIFY_DELIVER=0 points C at a port that refuses connections instead: the outbox
//! is written in every webhook's transaction as before, but after each account's first
//! refused try its notifications wait out the backoff, so the figure is the cost of the
//! writes alone, without the sends.

use std::time::{Duration, Instant};

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::driver;
use crate::events;
use crate::output::report_row;
use crate::scenarios::Bench;
use crate::stack::{self, Instance};

impl Bench {
    pub async fn notify(&mut self) -> anyhow::Result<()> {
        let n: usize = crate::env_or("LOAD_NOTIFY_EVENTS", 2000);
        let deliver = crate::env_or("LOAD_NOTIFY_DELIVER", 1) != 0;
        let c: usize = crate::env_or("LOAD_NOTIFY_CONCURRENCY", 32);
        println!(
            "\n== notify: {n} unique events per round at c={c}, A (no notifications) and C (notifications on), alternating"
        );
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
        let url = if deliver {
            format!("{}/merchant", receiver.uri())
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
        let mut rps = [Vec::new(), Vec::new()];
        for round in 0..4 {
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
            self.table
                .push(report_row(&r, &format!("round {}", round + 1)));
        }
        // Every change announced: two per paid order (order.updated, credits.granted).
        let expected = if deliver { 2 * 2 * n } else { 0 };
        let started = Instant::now();
        let delivered = loop {
            let delivered: usize = stack::text(
                &mut self.conn,
                "SELECT count(*)::text AS v FROM notifications WHERE state = 'delivered'",
            )
            .await?
            .parse()?;
            if delivered >= expected || started.elapsed() > Duration::from_secs(120) {
                break delivered;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let received = receiver.received_requests().await.map_or(0, |r| r.len());
        println!(
            "  check: {delivered} of {expected} notifications delivered ({received} POSTs received), all within {:.1} s of the last event",
            started.elapsed().as_secs_f64()
        );
        if delivered != expected {
            self.all_ok = false;
        }
        c_instance.stop().await;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (off, on) = (mean(&rps[0]), mean(&rps[1]));
        let x = on / off;
        self.targets.push(format!(
            "[{}] webhooks with notifications on ≥ 0.9 × without{}: {on:.0} vs {off:.0} req/s (mean of two rounds each) → {x:.2}",
            if x >= 0.9 { "HELD" } else { "MISSED" },
            if deliver { "" } else { " (outbox writes only, nothing sent)" }
        ));
        Ok(())
    }
}
