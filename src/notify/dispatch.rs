//! The dispatcher: a background task of `serve` that POSTs due notifications to
//! MERCHANT_WEBHOOK_URL, signed as Stripe signs its webhooks.
//!
//! Claiming is one statement that leases up to a batch of queue heads (the first
//! undelivered notification of each account), and behind each head the run of its
//! account's next notifications that are due too, and commits at once: no connection or
//! transaction is held while the merchant answers. A head is leased by an UPDATE whose
//! WHERE re-checks the lease under the row lock, so when two instances race for one
//! head, the second sees the first's lease and skips it: never two sends of one
//! notification at once. A run's followers are leased only behind a head this very
//! statement leased, so whoever holds an account's head holds its run, and sends it in
//! order, one after the other, stopping at the first that is not delivered (the rest go
//! back untried). So per account a later notification waits while an earlier one is
//! failing; other accounts go on.
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Double, Int4, Nullable, Text};
use diesel_async::RunQueryDsl;
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::MerchantWebhook;
use crate::db::cached::CachedExt;
use crate::state::AppState;

/// The merchant's answer is awaited this long (SPEC §9), connect included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Accounts served at once per instance (one send in flight for each).
const BATCH: i64 = 64;
/// An account's notifications claimed together, sent one after the other: a change
/// writes one to three (a paid order: its status and its grant), so one claim usually
/// takes all of them instead of one claim and one finish per notification.
const RUN: i64 = 8;
/// Longer than a run can take (no send starts after SEND_TIMEOUT into a run, and each
/// takes at most SEND_TIMEOUT), so a lease never runs out under a live send.
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle dispatcher looks for work.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// At most this much of an answer is read, and this much of it kept for the operator.
const ANSWER_READ_LIMIT: usize = 8 * 1024;
const ANSWER_KEPT: usize = 300;

/// A leased notification, its body rendered.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub account_id: uuid::Uuid,
    pub account_seq: i64,
    pub body: String,
    pub attempts: i32,
}

/// A leased outbox row as CLAIM_SQL returns it.
#[derive(Debug, QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    account_id: uuid::Uuid,
    #[diesel(sql_type = BigInt)]
    account_seq: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    order_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    spend_id: Option<uuid::Uuid>,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = BigInt)]
    delta: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}

impl From<ClaimedRow> for Claimed {
    fn from(r: ClaimedRow) -> Claimed {
        let body = super::Payload {
            id: &r.id,
            kind: &r.kind,
            created: super::created_seconds(r.created_at),
            order_id: r.order_id,
            spend_id: r.spend_id,
            email: &r.email,
            status: r.status.as_deref(),
            delta: r.delta,
            balance: r.balance,
            sequence: r.account_seq,
        }
        .render();
        Claimed {
            id: r.id,
            account_id: r.account_id,
            account_seq: r.account_seq,
            body,
            attempts: r.attempts,
        }
    }
}

/// What one try came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered { status: u16, answer: String },
    Refused { status: u16, answer: String },
    NoAnswer { why: String },
}

impl Attempt {
    fn result(&self) -> &'static str {
        match self {
            Attempt::Delivered { .. } => "delivered",
            Attempt::Refused { .. } => "refused",
            Attempt::NoAnswer { .. } => "no_answer",
        }
    }
}

pub async fn run(state: actix_web::web::Data<AppState>, mut stop: watch::Receiver<bool>) {
    let Some(target) = state.config.merchant_webhook.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .connect_timeout(SEND_TIMEOUT)
        // A redirect is an answer like any other non-2xx: retried, never followed (the
        // body is signed for the configured URL, and a redirect could point anywhere).
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notifications: could not build the HTTP client; none will be sent");
            return;
        }
    };
    tracing::info!(url = %redacted(&target.url), "notifications: dispatcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match claim(&state).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "notifications: could not claim due notifications");
                Vec::new()
            }
        };
        // After a batch the accounts' next notifications are due at once: go on.
        let busy = !claimed.is_empty();
        if !claimed.is_empty() {
            let sends = runs(claimed).into_iter().map(|run| {
                let (client, target, stop) = (&client, &target, stop.clone());
                send_run(client, target, run, stop)
            });
            let tried: Vec<_> = futures_util::future::join_all(sends)
                .await
                .into_iter()
                .flatten()
                .collect();
            if let Err(e) = finish(&state, &tried).await {
                // The leases run out and the notifications are sent again: at least once.
                tracing::warn!(error = %e, "notifications: could not record deliveries");
            }
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The claimed notifications by account, each account's in sequence order.
fn runs(mut claimed: Vec<Claimed>) -> Vec<Vec<Claimed>> {
    claimed.sort_by_key(|n| (n.account_id, n.account_seq));
    let mut runs: Vec<Vec<Claimed>> = Vec::new();
    for n in claimed {
        match runs.last_mut() {
            Some(run) if run[0].account_id == n.account_id => run.push(n),
            _ => runs.push(vec![n]),
        }
    }
    runs
}

/// Sends one account's run in order. After the first that is not delivered, once the
/// stop is given, or once the run has taken SEND_TIMEOUT (a slow receiver must not keep
/// the rest of the batch, other accounts included, from being recorded and claimed
/// again) the rest are left untried, `None`, for `finish` to release: a later
/// notification never overtakes an earlier one.
async fn send_run(
    client: &reqwest::Client,
    target: &MerchantWebhook,
    run: Vec<Claimed>,
    stop: watch::Receiver<bool>,
) -> Vec<(Claimed, Option<Attempt>)> {
    let started = std::time::Instant::now();
    let mut tried = Vec::with_capacity(run.len());
    let mut go_on = true;
    for n in run {
        let attempt = if go_on {
            send_unless_stopping(client, target, &n, stop.clone()).await
        } else {
            None
        };
        go_on =
            matches!(attempt, Some(Attempt::Delivered { .. })) && started.elapsed() < SEND_TIMEOUT;
        tried.push((n, attempt));
    }
    tried
}

/// One notification's try, or `None` when the stop came first: on the way out a send
/// still waiting is given up, and `finish` releases its lease so that another instance
/// sends it at once.
async fn send_unless_stopping(
    client: &reqwest::Client,
    target: &MerchantWebhook,
    n: &Claimed,
    mut stop: watch::Receiver<bool>,
) -> Option<Attempt> {
    let attempt = tokio::select! {
        a = send(client, target, &n.body) => a,
        () = stopping(&mut stop) => return None,
    };
    metrics::counter!("notifications_sent_total", "result" => attempt.result()).increment(1);
    Some(attempt)
}

/// Resolves once the stop signal is given (or its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped || stop.changed().await.is_err() {
            return;
        }
    }
}

/// POSTs `body` with `Paidonce-Signature: t=…,v1=…` (Stripe's scheme, the same code that
/// checks Stripe's signatures). Reads at most a few KiB of the answer.
pub async fn send(client: &reqwest::Client, target: &MerchantWebhook, body: &str) -> Attempt {
    let now = chrono::Utc::now().timestamp();
    let signature =
        crate::webhook::signature::header(target.secret.expose_secret(), now, body.as_bytes());
    let res = client
        .post(target.url.clone())
        .header("Content-Type", "application/json")
        .header("Paidonce-Signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    let mut res = match res {
        Ok(r) => r,
        Err(e) => {
            return Attempt::NoAnswer { why: describe(&e) };
        }
    };
    let status = res.status();
    let mut read = Vec::new();
    while read.len() < ANSWER_READ_LIMIT {
        match res.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) if status.is_success() => {
                // The status line came: the merchant has it. The rest is courtesy.
                tracing::debug!(error = %e, "notifications: answer body cut short");
                break;
            }
            Err(e) => {
                return Attempt::NoAnswer {
                    why: format!("{status}, then {}", describe(&e)),
                };
            }
        }
    }
    let answer: String = String::from_utf8_lossy(&read)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(ANSWER_KEPT)
        .collect();
    if status.is_success() {
        Attempt::Delivered {
            status: status.as_u16(),
            answer,
        }
    } else {
        Attempt::Refused {
            status: status.as_u16(),
            answer,
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", SEND_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

/// The URL without user info or query: it may carry a token.
fn redacted(url: &url::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default(),
        url.path()
    )
}

/// Leases up to BATCH due queue heads and their runs (see the module's comment), and
/// commits.
pub async fn claim(state: &AppState) -> anyhow::Result<Vec<Claimed>> {
    let mut conn = state.db.get().await?;
    let claimed = diesel::sql_query(claim_sql())
        .cached()
        .load::<ClaimedRow>(&mut *conn)
        .await?;
    Ok(claimed.into_iter().map(Claimed::from).collect())
}

/// CLAIM_SQL with its limits written in (public for the test of its plan). Constants
/// in the text rather than bound parameters: a statement without parameters is planned
/// once per connection; with them Postgres chose a custom plan nearly every time, 2.5 ms
/// of planning a claim (a quarter of its cost in the load lab's notification scenario).
pub fn claim_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        CLAIM_SQL
            .replace(":batch", &BATCH.to_string())
            .replace(":lease_secs", &LEASE.as_secs().to_string())
            .replace(":followers", &(RUN - 1).to_string())
    });
    SQL.as_str()
}

/// The queue heads are found by a skip scan of the undelivered index: one probe per
/// account with something undelivered, not a read of every waiting row (a backlog of
/// thousands on a few accounts made `DISTINCT ON` read all of them on every claim).
/// Among due heads the longest due go first, so no account starves the others.
///
/// The UPDATEs find their rows by primary key (`id = ANY (ARRAY(…))`), and their state
/// test is a CASE on purpose: a plain `state = 'pending'` lets the planner prove the
/// queue index's predicate, and with statistics saying few rows wait (true between
/// bursts) it chose to walk every waiting row and compare each with every claimed id,
/// a cost that grew with batch × backlog (28 ms for 150 rows, against 3 ms now).
const CLAIM_SQL: &str = "\
WITH RECURSIVE heads AS (
    (SELECT id, account_id, account_seq, state, next_attempt_at, leased_until
     FROM notifications
     WHERE state <> 'delivered' ORDER BY account_id, account_seq LIMIT 1)
    UNION ALL
    SELECT nx.* FROM heads h
    CROSS JOIN LATERAL (
        SELECT id, account_id, account_seq, state, next_attempt_at, leased_until
        FROM notifications
        WHERE state <> 'delivered' AND account_id > h.account_id
        ORDER BY account_id, account_seq LIMIT 1
    ) nx
), due AS (
    SELECT id FROM heads
    WHERE state = 'pending' AND next_attempt_at <= now()
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY next_attempt_at
    LIMIT :batch
), leased AS (
    UPDATE notifications n
    SET leased_until = now() + make_interval(secs => :lease_secs), attempts = n.attempts + 1,
        last_attempt_at = now()
    WHERE n.id = ANY (ARRAY(SELECT id FROM due))
      AND CASE WHEN n.state = 'pending' THEN true END
      AND (n.leased_until IS NULL OR n.leased_until < now())
    RETURNING n.*
), followers AS (
    SELECT f.id FROM leased l
    CROSS JOIN LATERAL (
        SELECT q.id,
               bool_and(q.state = 'pending' AND q.next_attempt_at <= now()
                        AND (q.leased_until IS NULL OR q.leased_until < now()))
                   OVER (ORDER BY q.account_seq) AS in_run
        FROM notifications q
        WHERE q.account_id = l.account_id AND q.state <> 'delivered'
          AND q.account_seq > l.account_seq
        ORDER BY q.account_seq
        LIMIT :followers
    ) f
    WHERE f.in_run
), leased_followers AS (
    UPDATE notifications n
    SET leased_until = now() + make_interval(secs => :lease_secs), attempts = n.attempts + 1,
        last_attempt_at = now()
    WHERE n.id = ANY (ARRAY(SELECT id FROM followers))
      AND CASE WHEN n.state = 'pending' THEN true END
    RETURNING n.*
)
SELECT n.id, n.account_id, n.account_seq, n.kind, n.created_at, n.order_id, n.spend_id,
       a.email, n.status, n.delta, n.balance, n.attempts
FROM (SELECT * FROM leased UNION ALL SELECT * FROM leased_followers) n
JOIN accounts a ON a.id = n.account_id";

/// Records a batch's outcomes in one statement, each only if its lease is still ours
/// (`attempts` names the try): delivered; or due again after a backoff (failed past
/// its 3 days); or, untried because the instance is stopping, released as it was.
/// Rows are found by primary key; the state test is a CASE for the reason given at
/// CLAIM_SQL (here the planner walked the waiting rows and unnested the batch again
/// for each).
async fn finish(state: &AppState, tried: &[(Claimed, Option<Attempt>)]) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Finished {
        #[diesel(sql_type = Text)]
        id: String,
        #[diesel(sql_type = Int4)]
        attempts: i32,
        #[diesel(sql_type = Text)]
        state: super::NotificationState,
    }
    let mut ids = Vec::new();
    let mut attempts = Vec::new();
    let mut outcomes = Vec::new();
    let mut statuses: Vec<Option<i32>> = Vec::new();
    let mut answers = Vec::new();
    let mut delays = Vec::new();
    for (n, attempt) in tried {
        let (outcome, status, answer) = match attempt {
            Some(Attempt::Delivered { status, answer }) => {
                ("delivered", Some(i32::from(*status)), answer.clone())
            }
            Some(Attempt::Refused { status, answer }) => {
                ("retry", Some(i32::from(*status)), answer.clone())
            }
            Some(Attempt::NoAnswer { why }) => ("retry", None, why.clone()),
            None => ("release", None, String::new()),
        };
        ids.push(n.id.clone());
        attempts.push(n.attempts);
        outcomes.push(outcome);
        statuses.push(status);
        answers.push(answer);
        delays.push(backoff(n.attempts).as_secs_f64());
    }
    let mut conn = state.db.get().await?;
    let finished: Vec<Finished> = diesel::sql_query(FINISH_SQL)
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Int4>, _>(attempts)
        .bind::<Array<Text>, _>(outcomes)
        .bind::<Array<Nullable<Int4>>, _>(statuses)
        .bind::<Array<Text>, _>(answers)
        .bind::<Array<Double>, _>(delays)
        .cached()
        .load(&mut *conn)
        .await?;
    for f in finished
        .iter()
        .filter(|f| f.state == super::NotificationState::Failed)
    {
        metrics::counter!("notifications_failed_total").increment(1);
        tracing::warn!(notification = %f.id, attempts = f.attempts, "notifications: gave up after 3 days of retries; redeliver from /admin/notifications");
    }
    Ok(())
}

pub const FINISH_SQL: &str = "\
UPDATE notifications n SET
    state = CASE
        WHEN t.outcome = 'delivered' THEN 'delivered'
        WHEN t.outcome = 'retry' AND n.retry_since + interval '3 days' < now() THEN 'failed'
        ELSE 'pending' END,
    delivered_at = CASE WHEN t.outcome = 'delivered' THEN now() END,
    attempts = CASE WHEN t.outcome = 'release' THEN n.attempts - 1 ELSE n.attempts END,
    next_attempt_at = CASE WHEN t.outcome = 'retry'
        THEN now() + make_interval(secs => t.delay) ELSE n.next_attempt_at END,
    last_status = CASE WHEN t.outcome = 'release' THEN n.last_status ELSE t.status END,
    last_answer = CASE WHEN t.outcome = 'release' THEN n.last_answer ELSE t.answer END,
    leased_until = NULL
FROM unnest($1::text[], $2::int4[], $3::text[], $4::int4[], $5::text[], $6::float8[])
     AS t(id, attempts, outcome, status, answer, delay)
WHERE n.id = t.id AND n.attempts = t.attempts AND CASE WHEN n.state = 'pending' THEN true END
RETURNING n.id, n.attempts, n.state";

/// The wait before try `attempts + 1`: 1 s doubling per try up to an hour, with up to
/// half of it taken off at random so that a receiver coming back is not met by every
/// instance's retries at the same instant.
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 13) - 1).unwrap_or(0);
    let full = Duration::from_secs(1u64 << exp).min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_has_its_limits_written_in() {
        let sql = claim_sql();
        for gone in [":batch", ":lease_secs", ":followers", "$"] {
            assert!(!sql.contains(gone), "{gone} left in the claim");
        }
        assert!(sql.contains("LIMIT 64\n"), "{sql}");
        assert!(sql.contains("LIMIT 7\n"), "{sql}");
        assert!(sql.contains("make_interval(secs => 30)"), "{sql}");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped_at_an_hour() {
        for (attempts, full) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (8, 128),
            (12, 2048),
            (13, 3600),
            (40, 3600),
        ] {
            for _ in 0..20 {
                let b = backoff(attempts);
                let full = Duration::from_secs(full);
                assert!(b <= full && b >= full / 2, "try {attempts}: {b:?}");
            }
        }
    }
}
