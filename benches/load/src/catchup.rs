//! The event catch-up scenario: LOAD_CATCHUP_EVENTS [10000] successes Stripe made but
//! never delivered, listed by a Stripe double's `GET /v1/events` (100 a page, newest
//! first) and applied by one `paidonce reconcile` run of the release binary. Reports the
//! pass's wall time and events/s, and checks every order was paid exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::events;
use crate::scenarios::Bench;
use crate::stack;

/// Serves the recorded events as Stripe's list does.
struct EventList {
    /// Newest first.
    events: Arc<Vec<Value>>,
    position: Arc<HashMap<String, usize>>,
}

impl Respond for EventList {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut start = 0;
        let mut limit = 10;
        for (k, v) in req.url.query_pairs() {
            match k.as_ref() {
                "starting_after" => start = self.position.get(v.as_ref()).map_or(0, |p| p + 1),
                "limit" => limit = v.parse().unwrap_or(10),
                _ => {}
            }
        }
        let end = (start + limit).min(self.events.len());
        let data = &self.events[start.min(end)..end];
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "url": "/v1/events", "has_more": end < self.events.len(), "data": data,
        }))
    }
}

impl Bench {
    pub async fn catchup(&mut self) -> anyhow::Result<()> {
        let n: usize = crate::env_or("LOAD_CATCHUP_EVENTS", 10_000);
        println!(
            "\n== catch-up: {n} undelivered payment_intent.succeeded listed by GET /v1/events, one `paidonce reconcile`"
        );
        let orders = stack::seed_orders(&mut self.conn, &self.tag, "catchup", n).await?;
        let mut listed: Vec<Value> = orders
            .iter()
            .enumerate()
            .map(|(k, o)| {
                events::succeeded(
                    &format!("evt_bench_{}_catchup_{k}", self.tag),
                    o,
                    &self.pack,
                )
            })
            .collect();
        let bytes = serde_json::to_vec(&listed[0])?.len();
        listed.reverse();
        let position = listed
            .iter()
            .enumerate()
            .map(|(i, e)| (e["id"].as_str().unwrap_or_default().to_owned(), i))
            .collect();
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/events"))
            .respond_with(EventList {
                events: Arc::new(listed),
                position: Arc::new(position),
            })
            .mount(&server)
            .await;
        let started = Instant::now();
        let out = stack::command(&self.db_url, &server.uri(), self.s.pool_size)
            .arg("reconcile")
            .output()
            .await?;
        let secs = started.elapsed().as_secs_f64();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "paidonce reconcile failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let line = stdout
            .lines()
            .find(|l| l.starts_with("events:"))
            .unwrap_or("no events line")
            .to_owned();
        let check =
            stack::check_set(&mut self.conn, &format!("bench-{}-catchup-", self.tag)).await?;
        let ok = check.all_paid_once() && line.contains(&format!("listed {n}, applied {n}"));
        self.all_ok &= ok;
        println!(
            "  {line}; {secs:.1} s wall ({:.0} events/s, event {bytes} bytes), including the process start and {} pages",
            n as f64 / secs,
            n.div_ceil(100)
        );
        println!("  check: {}", check.text());
        self.targets.push(format!(
            "catch-up: {n} listed events applied in {secs:.1} s ({:.0} events/s) by one `paidonce reconcile`{}",
            n as f64 / secs,
            if ok { "" } else { " — CHECK FAILED" }
        ));
        Ok(())
    }
}
