//! SIGTERM is a graceful stop (SPEC §1): every request the server accepted before the
//! signal gets its whole answer and the process then exits 0; requests after the signal
//! are refused at connect. Run against the built binary, many times over, because the
//! race it guards against is a matter of timing.

use std::process::Stdio;
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;
use crate::stripe_double::StripeDouble;

/// `paidonce serve` on `db`, talking to `stripe`; returns the child and its address.
async fn serve(db: &TestDb, stripe: &StripeDouble) -> (Child, String) {
    let base = stripe.server.uri();
    serve_with(
        db,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_shutdown"),
            ("STRIPE_API_BASE", base.as_str()),
        ],
    )
    .await
}

/// `paidonce serve` as a process of its own on `db`, with `env` added (no Stripe key:
/// the sandbox provider); returns the child and its address once it listens.
pub async fn serve_with(db: &TestDb, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = serve_command(db, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_owned();
            }
        }
        panic!("paidonce exited before listening");
    })
    .await
    .expect("paidonce listening within 60 s");
    (child, addr)
}

/// `paidonce serve` on `db` with the test secrets, no background reconciler, a small
/// pool, warnings only (`env` may override any of them), killed if the test drops it.
pub fn serve_command(db: &TestDb, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paidonce"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("PAIDONCE_BIND", "127.0.0.1:0")
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RECONCILE_INTERVAL_SECS", "0")
        .env("DATABASE_POOL_SIZE", "4")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .kill_on_drop(true);
    cmd
}

pub fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// Waits until `stripe` has received `n` requests to create a PaymentIntent.
async fn creates_reached(stripe: &StripeDouble, n: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while stripe.requests("POST", "/v1/payment_intents").await.len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the create reached Stripe");
}

/// One try: an order creation in flight at Stripe when SIGTERM arrives.
async fn order_in_flight_at_sigterm(db: &TestDb) {
    let stripe = StripeDouble::start_with_delay(Duration::from_millis(300)).await;
    let (mut child, addr) = serve(db, &stripe).await;
    let client = reqwest::Client::new();
    let post = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            client
                .post(format!("{addr}/api/orders"))
                .json(&json!({"email": unique_email(), "pack_id": "starter"}))
                .send()
                .await
        }
    });
    creates_reached(&stripe, 1).await;
    sigterm(&child);
    // A request after the signal is refused at connect, or answered in full: a 503
    // while draining (or a 200 if it beat the signal).
    match reqwest::Client::new()
        .get(format!("{addr}/healthz"))
        .send()
        .await
    {
        Ok(late) => {
            let status = late.status().as_u16();
            assert!([200, 503].contains(&status), "{status}");
            late.bytes()
                .await
                .expect("the whole answer to a late request");
        }
        Err(e) => assert!(e.is_connect(), "a request after SIGTERM was cut: {e:?}"),
    }
    let res = post
        .await
        .unwrap()
        .expect("the in-flight order got an answer");
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.expect("the whole body");
    assert!(order["client_secret"].is_string());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited within the shutdown timeout")
        .unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_an_order_creation_in_flight_answers_it_and_exits_0_fifty_times() {
    let db = TestDb::new().await;
    // Five processes at a time, ten rounds.
    for _ in 0..10 {
        join_all((0..5).map(|_| order_in_flight_at_sigterm(&db))).await;
    }
}

/// One try: a webhook delivery held inside its transaction (the test holds the order's
/// row lock) when SIGTERM arrives; the lock is released after the signal. A database of
/// its own, so the lock-wait probe sees only this delivery.
async fn webhook_in_flight_at_sigterm() {
    let db = &TestDb::new().await;
    let stripe = StripeDouble::start().await;
    let (mut child, addr) = serve(db, &stripe).await;
    let client = reqwest::Client::new();
    let order: Value = client
        .post(format!("{addr}/api/orders"))
        .json(&json!({"email": unique_email(), "pack_id": "starter"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    let mut lock = db.conn().await;
    lock.begin_test_transaction().await.unwrap();
    diesel::sql_query(format!("SELECT 1 FROM orders WHERE id = '{id}' FOR UPDATE"))
        .execute(&mut lock)
        .await
        .unwrap();
    let event = succeeded(&new_event_id(), &order);
    let body = serde_json::to_vec(&event).unwrap();
    let header =
        paidonce::webhook::signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    let delivery = tokio::spawn({
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            client
                .post(format!("{addr}/webhooks/stripe"))
                .header("Stripe-Signature", header)
                .body(body)
                .send()
                .await
        }
    });
    // Until the delivery waits on the order's lock inside its transaction.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            #[derive(diesel::QueryableByName)]
            struct Waiting {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut probe = db.conn().await;
            let w: Waiting = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut probe)
            .await
            .unwrap();
            if w.n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the delivery reached the order's lock");
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(lock); // rolls back the test's transaction, releasing the lock
    let res = delivery
        .await
        .unwrap()
        .expect("the in-flight delivery got an answer");
    assert_eq!(res.status(), 200);
    let receipt: Value = res.json().await.unwrap();
    assert_eq!(receipt["outcome"], "applied");
    crate::facts::record(&event);
    assert_money_invariant(db).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited within the shutdown timeout")
        .unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_webhook_held_in_its_transaction_commits_it_and_exits_0() {
    for _ in 0..4 {
        join_all((0..5).map(|_| webhook_in_flight_at_sigterm())).await;
    }
}
