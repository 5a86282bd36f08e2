//! The credits API (SPEC §8): API keys for the merchant's application, balances and
//! ledgers, spends that never overdraw and reversals that give back once.
//! Spends on one account take turns on the account's row lock: the balance is read
//! from that locked row (the running Σ ledger the ledger's trigger keeps there) and the
//! spend's rows written before it is released, so any number of concurrent spends, on
//! any number of instances, see each other's effects and none can take a balance below
//! zero.

use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::db::{self, ledger};
use crate::domain::email::Email;
use crate::domain::ledger::LedgerKind;
use crate::error::AppError;
use crate::notify::{Note, NotificationKind};
use crate::state::AppState;

const KEY_PREFIX: &str = "po_";

/// A new key: stored as its id and the SHA-256 of its secret; the whole key is returned
/// once and never again.
pub async fn create_key(state: &AppState, name: &str) -> anyhow::Result<(Uuid, SecretString)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        anyhow::bail!("the name must be 1 to 100 printable characters");
    }
    let id = Uuid::new_v4();
    let secret = crate::random::token(40);
    let mut conn = state.db.get().await?;
    db::api_keys::insert(&mut conn, id, name, &Sha256::digest(secret.as_bytes())).await?;
    Ok((
        id,
        SecretString::from(format!("{KEY_PREFIX}{}_{secret}", id.simple())),
    ))
}

/// The key a `Bearer` header names, if it is one of ours and not revoked (401 otherwise).
pub async fn authenticate(state: &AppState, authorization: Option<&str>) -> Result<Uuid, AppError> {
    let (id, secret) = authorization
        .and_then(|h| h.trim().strip_prefix("Bearer "))
        .and_then(|key| key.trim().strip_prefix(KEY_PREFIX))
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(id, secret)| Some((Uuid::try_parse(id).ok()?, secret)))
        .ok_or(AppError::Unauthorized)?;
    // A read on the shared connection: pipelined with the worker's other reads, and run
    // again on a fresh connection if the database had ended it.
    let key = state
        .db
        .read(async |c| db::api_keys::find(c, id).await)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let matches: bool = Sha256::digest(secret.as_bytes())
        .as_slice()
        .ct_eq(&key.secret_sha256)
        .into();
    if !matches || key.revoked_at.is_some() {
        return Err(AppError::Unauthorized);
    }
    // Recorded at most once a minute: a write per request would cost every call. A
    // stamp for the operator's key list, so one that cannot be written (its connection
    // found dead after a database restart, say) fails nothing: the next request stamps.
    let stale = key
        .last_used_at
        .is_none_or(|t| chrono::Utc::now() - t > chrono::Duration::minutes(1));
    if stale && let Err(e) = touch(state, id).await {
        tracing::warn!(error = %e, key_id = %id, "credits API: could not record the key's last use");
    }
    Ok(id)
}

/// Fails with what the database said, for the log line (an `AppError` would only say
/// "internal error"); a lost connection is still noted, as `AppError`'s conversion does.
async fn touch(state: &AppState, id: Uuid) -> anyhow::Result<()> {
    let mut conn = state.db.get().await?;
    db::api_keys::touch(&mut conn, id).await.inspect_err(|e| {
        db::pool::note_if_lost(e);
    })?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub email: String,
    pub balance: i64,
    pub granted: i64,
    pub revoked: i64,
    pub spent: i64,
}

fn account_email(raw: &str) -> Result<Email, AppError> {
    Email::parse(raw).map_err(|_| AppError::NotFound("account"))
}

pub async fn summary(state: &AppState, email: &str) -> Result<Summary, AppError> {
    let email = account_email(email)?;
    let mut conn = state.db.get().await?;
    let account = db::accounts::find_id(&mut conn, &email)
        .await?
        .ok_or(AppError::NotFound("account"))?;
    let (granted, revoked, spent, balance) = ledger::totals(&mut conn, account).await?;
    Ok(Summary {
        email: email.as_str().to_owned(),
        balance,
        granted,
        revoked,
        spent,
    })
}

#[derive(Debug, Serialize)]
pub struct LedgerPage {
    pub data: Vec<LedgerItem>,
    pub has_more: bool,
}

#[derive(Debug, Serialize)]
pub struct LedgerItem {
    pub id: String,
    pub kind: LedgerKind,
    pub delta: i64,
    pub order_id: Option<Uuid>,
    pub spend_id: Option<Uuid>,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub async fn ledger_page(
    state: &AppState,
    email: &str,
    limit: i64,
    starting_after: Option<i64>,
) -> Result<LedgerPage, AppError> {
    let email = account_email(email)?;
    let mut conn = state.db.get().await?;
    let account = db::accounts::find_id(&mut conn, &email)
        .await?
        .ok_or(AppError::NotFound("account"))?;
    let mut rows = ledger::page_for_account(&mut conn, account, starting_after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(LedgerPage {
        data: rows
            .into_iter()
            .map(|e| LedgerItem {
                id: e.id.to_string(),
                kind: e.kind,
                delta: e.delta,
                order_id: e.order_id,
                spend_id: e.spend_id,
                at: e.created_at,
            })
            .collect(),
        has_more,
    })
}

#[derive(Debug, Serialize)]
pub struct Spent {
    pub id: Uuid,
    pub credits: i64,
    pub reference: String,
    pub balance_after: i64,
}

/// Checks a spend request: 422 for anything that cannot be a spend.
pub fn validate_spend(
    credits: &serde_json::Value,
    reference: &serde_json::Value,
) -> Result<(i64, String), AppError> {
    let credits = credits
        .as_i64()
        .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
        .ok_or_else(|| {
            AppError::unprocessable(
                "invalid_credits",
                "credits must be a whole number from 1 to 2147483647",
            )
        })?;
    let reference = match reference {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s)
            if s.chars().count() <= 255 && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        _ => {
            return Err(AppError::unprocessable(
                "invalid_reference",
                "reference must be text of at most 255 characters without control characters",
            ));
        }
    };
    Ok((credits, reference))
}

/// Spends `credits` of `email`'s balance, or refuses (409 insufficient_credits, nothing
/// written). `resume` is the spend a previous attempt under the same Idempotency-Key
/// already made (it is answered, not made again).
pub async fn spend(
    state: &AppState,
    key_id: Uuid,
    email: &str,
    credits: i64,
    reference: &str,
    idempotency_key: &str,
    resume: Option<Uuid>,
) -> Result<Spent, AppError> {
    let email = account_email(email)?;
    if let Some(earlier) = resume {
        let mut conn = state.db.get().await?;
        if let Some(spend) = db::spends::find(&mut conn, earlier).await? {
            let balance = db::accounts::balance(&mut conn, spend.account_id).await?;
            return Ok(Spent {
                id: spend.id,
                credits: spend.credits,
                reference: spend.reference,
                balance_after: balance,
            });
        }
    }
    let idem = idempotency_key.to_owned();
    let reference = reference.to_owned();
    let outbox = state.config.outbox();
    let result = state
        .db
        .transaction::<_, AppError, _>(async |c| {
            let (account, balance) = db::spends::lock_with_balance(c, email.as_str())
                .await?
                .ok_or(AppError::NotFound("account"))?;
            if balance < credits {
                return Err(AppError::Client {
                    status: actix_web::http::StatusCode::CONFLICT,
                    code: "insufficient_credits",
                    message: format!("the balance is {balance}; {credits} cannot be spent"),
                });
            }
            let id = Uuid::new_v4();
            let entry = ledger::NewEntry {
                account_id: account,
                order_id: None,
                spend_id: Some(id),
                kind: LedgerKind::Spend,
                delta: -credits,
                refund_total: 0,
                cause: "credits_api",
            };
            // One round trip: the rows need nothing from each other, and any failure
            // aborts the transaction with all of them. The spend is tied to its key in
            // the same transaction, so a retry after a crash resumes it.
            let shared: &diesel_async::AsyncPgConnection = c;
            let (spend, (), ()) = futures_util::try_join!(
                db::spends::insert(shared, id, account, credits, &reference, key_id),
                ledger::insert(shared, &entry),
                db::idempotency::set_order(shared, &idem, id),
            )?;
            let spent = Note {
                kind: NotificationKind::Spent,
                order_id: None,
                spend_id: Some(id),
                status: None,
                delta: -credits,
            };
            crate::notify::record(shared, outbox, account, &[spent]).await?;
            Ok(Spent {
                id: spend.id,
                credits,
                reference: spend.reference,
                balance_after: balance - credits,
            })
        })
        .await;
    let outcome = match &result {
        Ok(_) => "spent",
        Err(AppError::Client {
            code: "insufficient_credits",
            ..
        }) => "insufficient_credits",
        Err(_) => "error",
    };
    metrics::counter!("spends_total", "result" => outcome).increment(1);
    result
}

#[derive(Debug, Serialize)]
pub struct Reversed {
    pub spend_id: Uuid,
    pub credits: i64,
    pub reversed_at: chrono::DateTime<chrono::Utc>,
}

/// Gives a spend's credits back, once; a second call answers the same reversal.
pub async fn reverse(state: &AppState, spend_id: &str) -> Result<Reversed, AppError> {
    let id = Uuid::try_parse(spend_id).map_err(|_| AppError::NotFound("spend"))?;
    let outbox = state.config.outbox();
    let reversed = state
        .db
        .transaction::<_, AppError, _>(async |c| {
            let Some(spend) = db::spends::mark_reversed(c, id).await? else {
                let spend = db::spends::find(c, id)
                    .await?
                    .ok_or(AppError::NotFound("spend"))?;
                return Ok(spend);
            };
            ledger::insert(
                c,
                &ledger::NewEntry {
                    account_id: spend.account_id,
                    order_id: None,
                    spend_id: Some(id),
                    kind: LedgerKind::SpendReversal,
                    delta: spend.credits,
                    refund_total: 0,
                    cause: "credits_api",
                },
            )
            .await?;
            let restored = Note {
                kind: NotificationKind::Restored,
                order_id: None,
                spend_id: Some(id),
                status: None,
                delta: spend.credits,
            };
            crate::notify::record(c, outbox, spend.account_id, &[restored]).await?;
            metrics::counter!("spends_total", "result" => "reversed").increment(1);
            Ok(spend)
        })
        .await?;
    Ok(Reversed {
        spend_id: reversed.id,
        credits: reversed.credits,
        reversed_at: reversed.reversed_at.unwrap_or(reversed.created_at),
    })
}

/// For the CLI's list: never the key itself.
pub fn key_line(key: &db::api_keys::ApiKey) -> String {
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "never".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    };
    format!(
        "{}  {}  created {}  last used {}{}",
        key.id,
        key.name,
        key.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        when(key.last_used_at),
        key.revoked_at
            .map(|t| format!("  revoked {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default()
    )
}
