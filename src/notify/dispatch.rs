//! The dispatcher: a background task of `serve` that POSTs due notifications to
//! MERCHANT_WEBHOOK_URL, signed as Stripe signs its webhooks.
//!
//! Claiming is one statement that leases up to a batch of queue heads (the first
//! undelivered notification of each account) and commits at once: no connection or
//! transaction is held while the merchant answers. A lease is taken by an UPDATE whose
//! WHERE re-checks the lease under the row lock, so when two instances race for one
//! head, the second sees the first's lease and skips it: never two sends of one
//! notification at once. Only heads are claimed, so per account a later notification
//! waits while an earlier one is failing; other accounts go on.

use std::time::Duration;

use diesel::sql_types::{BigInt, Int4, Nullable, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::config::MerchantWebhook;
use crate::state::AppState;

/// The merchant's answer is awaited this long (SPEC §9), connect included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than a send can take, so a lease never runs out under a live send.
const LEASE: Duration = Duration::from_secs(30);
/// Notifications sent at once per instance.
const BATCH: i64 = 16;
/// How often an idle dispatcher looks for work.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// At most this much of an answer is read, and this much of it kept for the operator.
const ANSWER_READ_LIMIT: usize = 8 * 1024;
const ANSWER_KEPT: usize = 300;

#[derive(Debug, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
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
        let claimed = match claim(&state, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "notifications: could not claim due notifications");
                Vec::new()
            }
        };
        let full = claimed.len() as i64 == BATCH;
        if !claimed.is_empty() {
            let sends = claimed.into_iter().map(|n| {
                let (state, client, target, stop) = (&state, &client, &target, stop.clone());
                async move { send_and_record(state, client, target, n, stop).await }
            });
            futures_util::future::join_all(sends).await;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One notification: sent, then its outcome recorded. On the way out a send still
/// waiting is given up and its lease released, so another instance sends it at once.
async fn send_and_record(
    state: &AppState,
    client: &reqwest::Client,
    target: &MerchantWebhook,
    n: Claimed,
    mut stop: watch::Receiver<bool>,
) {
    let attempt = tokio::select! {
        a = send(client, target, &n.body) => a,
        () = stopping(&mut stop) => {
            if let Err(e) = release(state, &n).await {
                tracing::warn!(error = %e, notification = %n.id, "notifications: could not release a lease on the way out");
            }
            return;
        }
    };
    metrics::counter!("notifications_sent_total", "result" => attempt.result()).increment(1);
    if let Err(e) = finish(state, &n, &attempt).await {
        // The lease runs out and the notification is sent again: at least once.
        tracing::warn!(error = %e, notification = %n.id, "notifications: could not record a delivery");
    }
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

/// Leases up to `limit` due queue heads (see the module's comment) and commits.
pub async fn claim(state: &AppState, limit: i64) -> anyhow::Result<Vec<Claimed>> {
    let mut conn = state.db.get().await?;
    let claimed = diesel::sql_query(CLAIM_SQL)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(LEASE.as_secs() as i64)
        .load::<Claimed>(&mut *conn)
        .await?;
    Ok(claimed)
}

const CLAIM_SQL: &str = "\
UPDATE notifications n
SET leased_until = now() + make_interval(secs => $2), attempts = n.attempts + 1,
    last_attempt_at = now()
WHERE n.id IN (
    SELECT h.id FROM (
        SELECT DISTINCT ON (account_id) id, state, next_attempt_at, leased_until
        FROM notifications WHERE state <> 'delivered'
        ORDER BY account_id, account_seq
    ) h
    WHERE h.state = 'pending' AND h.next_attempt_at <= now()
      AND (h.leased_until IS NULL OR h.leased_until < now())
    LIMIT $1
)
  AND n.state = 'pending'
  AND (n.leased_until IS NULL OR n.leased_until < now())
RETURNING n.id, n.body, n.attempts";

/// Records a try's outcome, if the lease is still ours (`attempts` names the try).
async fn finish(state: &AppState, n: &Claimed, attempt: &Attempt) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct After {
        #[diesel(sql_type = Text)]
        state: String,
    }
    let mut conn = state.db.get().await?;
    let after: Option<After> = match attempt {
        Attempt::Delivered { status, answer } => diesel::sql_query(
            "UPDATE notifications SET state = 'delivered', delivered_at = now(), \
             leased_until = NULL, last_status = $3, last_answer = $4 \
             WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING state",
        )
        .bind::<Text, _>(&n.id)
        .bind::<Int4, _>(n.attempts)
        .bind::<Nullable<Int4>, _>(Some(i32::from(*status)))
        .bind::<Text, _>(answer)
        .get_result(&mut *conn)
        .await
        .optional()?,
        Attempt::Refused { .. } | Attempt::NoAnswer { .. } => {
            let (status, answer) = match attempt {
                Attempt::Refused { status, answer } => (Some(i32::from(*status)), answer.clone()),
                Attempt::NoAnswer { why } => (None, why.clone()),
                Attempt::Delivered { .. } => unreachable!("matched above"),
            };
            diesel::sql_query(
                "UPDATE notifications SET leased_until = NULL, last_status = $3, last_answer = $4, \
                 next_attempt_at = now() + make_interval(secs => $5), \
                 state = CASE WHEN retry_since + interval '3 days' < now() \
                              THEN 'failed' ELSE 'pending' END \
                 WHERE id = $1 AND attempts = $2 AND state = 'pending' RETURNING state",
            )
            .bind::<Text, _>(&n.id)
            .bind::<Int4, _>(n.attempts)
            .bind::<Nullable<Int4>, _>(status)
            .bind::<Text, _>(answer)
            .bind::<diesel::sql_types::Double, _>(backoff(n.attempts).as_secs_f64())
            .get_result(&mut *conn)
            .await
            .optional()?
        }
    };
    if after.is_some_and(|a| a.state == "failed") {
        metrics::counter!("notifications_failed_total").increment(1);
        tracing::warn!(notification = %n.id, attempts = n.attempts, "notifications: gave up after 3 days of retries; redeliver from /admin/notifications");
    }
    Ok(())
}

/// Gives a claimed notification back untried (shutdown): due again at once.
async fn release(state: &AppState, n: &Claimed) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    diesel::sql_query(
        "UPDATE notifications SET leased_until = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND attempts = $2 AND state = 'pending'",
    )
    .bind::<Text, _>(&n.id)
    .bind::<Int4, _>(n.attempts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

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
