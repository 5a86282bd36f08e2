//! The load driver: closed-loop workers (a fixed number of clients, each sending its next
//! request as soon as the previous answer arrived) and an open-loop schedule (requests sent
//! at a fixed rate whatever the answers do, latency measured from the scheduled time so a
//! slow server cannot hide its queueing). Percentiles come from sorting every sample.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Builds request `i` of a scenario.
pub type MakeRequest = Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>;

/// What one scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub name: String,
    pub concurrency: String,
    pub requests: usize,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// HTTP status → count; 0 = transport error (no answer).
    pub statuses: BTreeMap<u16, u64>,
    /// Webhook `outcome` → count (when asked to parse bodies).
    pub outcomes: BTreeMap<String, u64>,
    /// The first few transport errors, for the log.
    pub errors: Vec<String>,
    /// Where the CPU went meanwhile (filled in by the caller).
    pub cpu: Option<crate::cpu::Usage>,
    /// (ms after the start the request was due, latency µs), in no particular order.
    pub timeline: Vec<(u32, u64)>,
    /// Open loop: the most a request left after its due time (the client falling behind).
    pub max_send_lag: Duration,
}

impl Report {
    pub fn rps(&self) -> f64 {
        if self.elapsed.is_zero() {
            return 0.0;
        }
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Percentile `p` (0–100) in milliseconds, nearest-rank.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let n = self.latencies_us.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let idx = rank.clamp(1, n) - 1;
        self.latencies_us[idx] as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0
    }

    pub fn count_status(&self, pred: impl Fn(u16) -> bool) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| pred(**s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn non_2xx(&self) -> u64 {
        self.count_status(|s| !(200..300).contains(&s))
    }

    pub fn server_errors(&self) -> u64 {
        self.count_status(|s| s >= 500 || s == 0)
    }

    pub fn statuses_text(&self) -> String {
        self.statuses
            .iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("err×{n}")
                } else {
                    format!("{s}×{n}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn outcomes_text(&self) -> String {
        self.outcomes
            .iter()
            .map(|(o, n)| format!("{o}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Requests slower than `threshold_ms`, counted per second of the run.
    pub fn slow_by_second(&self, threshold_ms: f64) -> Vec<usize> {
        let secs = self.elapsed.as_secs() as usize + 1;
        let mut buckets = vec![0; secs];
        for (at, lat) in &self.timeline {
            if *lat as f64 / 1000.0 > threshold_ms {
                let b = (*at as usize / 1000).min(secs - 1);
                buckets[b] += 1;
            }
        }
        buckets
    }

    fn merge(&mut self, part: Part) {
        self.timeline.extend(part.timeline);
        self.latencies_us.extend(part.latencies_us);
        for (s, n) in part.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        for (o, n) in part.outcomes {
            *self.outcomes.entry(o).or_default() += n;
        }
        for e in part.errors {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        self.latencies_us.sort_unstable();
        self.requests = self.latencies_us.len();
    }
}

#[derive(Default)]
struct Part {
    latencies_us: Vec<u64>,
    timeline: Vec<(u32, u64)>,
    statuses: BTreeMap<u16, u64>,
    outcomes: BTreeMap<String, u64>,
    errors: Vec<String>,
}

impl Part {
    /// One answer (status and body) or a transport error, `sent` → now.
    fn record(
        &mut self,
        origin: Instant,
        sent: Instant,
        answer: Result<(u16, bytes::Bytes), String>,
        parse: bool,
    ) {
        let at = sent.saturating_duration_since(origin).as_millis() as u32;
        let lat = sent.elapsed().as_micros() as u64;
        self.latencies_us.push(lat);
        self.timeline.push((at, lat));
        match answer {
            Ok((status, body)) => {
                *self.statuses.entry(status).or_default() += 1;
                if parse {
                    let outcome = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.get("outcome")
                                .or_else(|| v.pointer("/error/code"))
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| "?".into());
                    *self.outcomes.entry(outcome).or_default() += 1;
                }
            }
            Err(e) => {
                *self.statuses.entry(0).or_default() += 1;
                if self.errors.len() < 5 {
                    self.errors.push(e);
                }
            }
        }
    }
}

/// Sends `req` and reads the whole body: the answer is the body, so the clock stops after it.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, bytes::Bytes), String> {
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// `concurrency` clients send requests 0.. until `total` are sent or `limit` has passed.
pub async fn closed_loop(
    name: &str,
    concurrency: usize,
    total: usize,
    limit: Duration,
    parse_outcomes: bool,
    make: MakeRequest,
) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let next = next.clone();
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut part = Part::default();
            loop {
                if started.elapsed() >= limit {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let req = make(i);
                let sent = Instant::now();
                let answer = exchange(req).await;
                part.record(started, sent, answer, parse_outcomes);
            }
            part
        }));
    }
    let report = Report {
        name: name.to_owned(),
        concurrency: concurrency.to_string(),
        ..Report::default()
    };
    gather(report, started, workers).await
}

/// Sends request `i` at `start + i / rate` for `total` requests, whatever the answers do;
/// each latency counts from the request's scheduled time (no coordinated omission).
pub async fn open_loop(
    name: &str,
    rate: f64,
    total: usize,
    arrivals: Arrivals,
    parse_outcomes: bool,
    make: MakeRequest,
) -> Report {
    let rate = rate.max(1.0);
    let schedule = arrivals.schedule(rate, total);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut max_send_lag = Duration::ZERO;
    for (i, offset) in schedule.into_iter().enumerate() {
        let due = started + offset;
        tokio::time::sleep_until(due.into()).await;
        max_send_lag = max_send_lag.max(due.elapsed());
        let req = make(i);
        tasks.push(tokio::spawn(async move {
            let mut part = Part::default();
            let answer = exchange(req).await;
            part.record(started, due, answer, parse_outcomes);
            part
        }));
    }
    let report = Report {
        name: name.to_owned(),
        concurrency: format!("{rate:.0}/s {}", arrivals.label()),
        max_send_lag,
        ..Report::default()
    };
    gather(report, started, tasks).await
}

/// How an open loop spaces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// One every 1/rate: the steadiest load a rate can be.
    Even,
    /// Independent arrivals (exponential gaps, fixed seed), as pgbench -R schedules
    /// them and as independent shoppers' payments arrive.
    Poisson,
}

impl Arrivals {
    /// When each of `total` requests is due, from the start.
    fn schedule(self, rate: f64, total: usize) -> Vec<Duration> {
        match self {
            Arrivals::Even => (0..total)
                .map(|i| Duration::from_secs_f64(i as f64 / rate))
                .collect(),
            Arrivals::Poisson => {
                use rand::{Rng, SeedableRng};
                let mut rng = rand::rngs::StdRng::seed_from_u64(7);
                let mut at = 0.0_f64;
                (0..total)
                    .map(|_| {
                        let due = Duration::from_secs_f64(at);
                        // 1 - U is in (0, 1]: its logarithm is finite.
                        at += -(1.0 - rng.random::<f64>()).ln() / rate;
                        due
                    })
                    .collect()
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Arrivals::Even => "open",
            Arrivals::Poisson => "open, Poisson",
        }
    }
}

/// Merges what the tasks measured into `report`, timed from `started`.
async fn gather(
    mut report: Report,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Part>>,
) -> Report {
    for t in tasks {
        if let Ok(part) = t.await {
            report.merge(part);
        }
    }
    report.finish(started.elapsed());
    report
}

/// Closed-loop GETs of `paths` (request `i` reads path `i % len`) on `concurrency`
/// keep-alive connections to `addr`, for `limit`. A bare hyper HTTP/1.1 connection per
/// client instead of reqwest: reqwest's pool and request building cost this 2-core
/// machine ~57 µs of CPU per request, taken from the server it measures, where pgbench's
/// client spends ~14 µs per lookup. With a lean client on both sides the ratio compares
/// the servers.
pub async fn closed_loop_get(
    name: &str,
    concurrency: usize,
    limit: Duration,
    addr: std::net::SocketAddr,
    paths: Arc<Vec<String>>,
) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, paths) = (next.clone(), paths.clone());
        workers.push(tokio::spawn(async move {
            let mut part = Part::default();
            let mut conn = None;
            while started.elapsed() < limit && !paths.is_empty() {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let path = &paths[i % paths.len()];
                let sent = Instant::now();
                let answer = get(&mut conn, addr, path).await;
                if answer.is_err() {
                    conn = None;
                }
                part.record(started, sent, answer, false);
            }
            part
        }));
    }
    let report = Report {
        name: name.to_owned(),
        concurrency: concurrency.to_string(),
        ..Report::default()
    };
    gather(report, started, workers).await
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// GET `path` on the connection, opening it first if there is none.
async fn get(
    conn: &mut Option<Sender>,
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<(u16, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    if conn.is_none() {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        *conn = Some(sender);
    }
    let sender = conn.as_mut().ok_or("no connection")?;
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}
