//! SPEC promises that had no test of their own (issue 22): secrets never in logs, error
//! bodies or the operator page; metrics that count exactly what one instance did; the
//! background reconcile loop; a webhook racing the reconciler and the return page with
//! their provider calls held in flight; the database lost between the statements of a
//! webhook's transaction; a live key refusing test-mode events; and any arrival order of
//! one order's facts ending in the same state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::join_all;
use paidonce::reconcile::reconcile_once;
use serde_json::{Value, json};
use tokio::process::Child;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::log_capture::secrets_in;
use crate::shutdown::sigterm;
use crate::stripe_double::{StripeDouble, as_pairs};

/// `paidonce serve` as its own process with everything it prints going to a file.
async fn serve_logged(db: &TestDb, env: &[(&str, &str)]) -> (Child, String, PathBuf) {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("serve-{}.log", Uuid::new_v4().simple()));
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = crate::shutdown::serve_command(db, env)
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
                return addr.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("paidonce listening within 60 s");
    (child, addr, log)
}

async fn stop(mut child: Child) {
    sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exited")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Lets the return page's provider check run at once instead of a few seconds in.
async fn age_order(db: &TestDb, id: &str) {
    let mut conn = db.conn().await;
    diesel::sql_query(format!(
        "UPDATE orders SET created_at = now() - interval '1 minute' WHERE id = '{id}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn the_secret_scan_knows_every_shape_of_secret() {
    let key = format!("po_{}_{}", Uuid::new_v4().simple(), "a".repeat(40));
    for leak in [
        WEBHOOK_SECRET.to_owned(),
        ADMIN_PASSWORD.to_owned(),
        "whsec_other".to_owned(),
        "sk_test_123".into(),
        "sk_live_123".into(),
        "pi_1_secret_2".into(),
        key,
    ] {
        let line = format!("INFO something happened: {leak} and more");
        assert!(!secrets_in(&line).is_empty(), "{leak}");
    }
    assert!(secrets_in("INFO webhook event event_id=evt_1 outcome=applied").is_empty());
}

#[tokio::test]
async fn the_log_capture_sees_the_apps_lines() {
    let app = spawn_app().await;
    let marker = new_event_id();
    let stranger = json!({"id": Uuid::new_v4(), "payment_intent_id": "pi_not_ours",
        "amount": 500, "currency": "usd"});
    assert_eq!(
        app.deliver(&succeeded(&marker, &stranger)).await,
        (200, "unknown_order".to_owned())
    );
    // The app logs an event for no order of ours at info; the capture must hold it.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !crate::log_capture::contains(&marker) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the event's log line was captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_log_an_error_body_or_the_operator_page_even_at_debug() {
    let db = TestDb::new().await;
    let stripe = StripeDouble::start().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let stripe_key = format!("sk_test_{}", Uuid::new_v4().simple());
    let merchant_secret = format!("whsec_{}", Uuid::new_v4().simple());
    let (base, receiver_url) = (stripe.server.uri(), receiver.uri());
    let (child, addr, log) = serve_logged(
        &db,
        &[
            ("RUST_LOG", "debug"),
            ("STRIPE_SECRET_KEY", &stripe_key),
            ("STRIPE_API_BASE", &base),
            ("MERCHANT_WEBHOOK_URL", &receiver_url),
            ("MERCHANT_WEBHOOK_SECRET", &merchant_secret),
        ],
    )
    .await;
    let client = client();
    let mut seen = Vec::<String>::new(); // every body and page the outside gets back

    // A shopper's order, its client secret, and the return with Stripe's query values.
    let email = unique_email();
    let order = create_order_at(&client, &addr, &email).await;
    let client_secret = order["client_secret"].as_str().unwrap().to_owned();
    let (id, pi) = (
        order["id"].as_str().unwrap(),
        order["payment_intent_id"].as_str().unwrap(),
    );
    stripe.set_status(pi, "succeeded");
    age_order(&db, id).await;
    let page = client
        .get(format!(
            "{addr}/orders/{id}/status?payment_intent={pi}&payment_intent_client_secret={client_secret}&redirect_status=succeeded"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    seen.push(page.text().await.unwrap());
    seen.push(
        client
            .get(format!("{addr}/api/orders/{id}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    // Webhooks: one signed with another secret, one real (a duplicate of the sync).
    let event = succeeded(&new_event_id(), &order);
    let body = serde_json::to_vec(&event).unwrap();
    let forged =
        paidonce::webhook::signature::header("whsec_forged", chrono::Utc::now().timestamp(), &body);
    let refused = client
        .post(format!("{addr}/webhooks/stripe"))
        .header("Stripe-Signature", forged)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    seen.push(refused.text().await.unwrap());
    let res = post_signed_event(&client, &addr, &event).await.unwrap();
    assert_eq!(res.status(), 200);
    seen.push(res.text().await.unwrap());

    // The operator: a wrong password, then the pages with the right one.
    let wrong_password = format!("wrong-{}", Uuid::new_v4().simple());
    let res = client
        .get(format!("{addr}/admin"))
        .basic_auth("admin", Some(&wrong_password))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    seen.push(res.text().await.unwrap());
    for path in [
        "/admin".to_owned(),
        format!("/admin/orders/{id}"),
        "/admin/events".to_owned(),
        "/admin/notifications".to_owned(),
        format!("/admin/api/orders/{id}"),
    ] {
        let res = client
            .get(format!("{addr}{path}"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        seen.push(res.text().await.unwrap());
    }

    // The merchant's application: a key from the CLI, used right and wrong.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paidonce"))
        .args(["api-key", "create", "--name", "shop"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "debug")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let api_key = printed
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .expect("the key")
        .to_owned();
    let cli_log = String::from_utf8_lossy(&out.stderr).into_owned();
    // The right id with one character of the secret changed.
    let last = if api_key.ends_with('x') { 'y' } else { 'x' };
    let wrong_key = format!("{}{last}", &api_key[..api_key.len() - 1]);
    for (key, status) in [(&api_key, 200), (&wrong_key, 401)] {
        let res = client
            .get(format!("{addr}/api/v1/accounts/{email}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        seen.push(res.text().await.unwrap());
    }

    // The notifications reach the receiver (signed with the merchant secret).
    tokio::time::timeout(Duration::from_secs(20), async {
        while receiver.received_requests().await.unwrap_or_default().len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("notifications delivered");
    stop(child).await;

    let logged = std::fs::read_to_string(&log).unwrap();
    // The log is really there, at debug, with the journey in it.
    assert!(logged.contains("DEBUG"), "debug lines were written");
    assert!(logged.contains(&event["id"].as_str().unwrap().to_owned()));
    assert!(logged.contains("webhook signature rejected"));
    let secrets = [
        ("the Stripe key", stripe_key.as_str()),
        ("the webhook secret", WEBHOOK_SECRET),
        ("the admin password", ADMIN_PASSWORD),
        ("a wrong admin password", wrong_password.as_str()),
        ("the merchant secret", merchant_secret.as_str()),
        ("the client secret", client_secret.as_str()),
        ("the API key", api_key.as_str()),
        ("the API key's secret", api_key.rsplit('_').next().unwrap()),
        ("a wrong API key", wrong_key.as_str()),
    ];
    for (what, secret) in secrets {
        for (place, text) in [("the server log", &logged), ("the CLI log", &cli_log)] {
            assert!(!text.contains(secret), "{what} in {place}");
        }
        for (i, text) in seen.iter().enumerate() {
            assert!(!text.contains(secret), "{what} in answer {i}: {text}");
        }
    }
    assert_eq!(secrets_in(&logged), Vec::<String>::new());
    for text in &seen {
        assert_eq!(secrets_in(text), Vec::<String>::new(), "{text}");
    }
}

/// The sum of the samples of `name` whose labels contain `label`, in a /metrics text.
fn sample(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn an_instance_counts_exactly_what_it_did() {
    // A process of its own: the in-process apps share one recorder, this one does not.
    let db = TestDb::new().await;
    let (child, addr, _log) = serve_logged(&db, &[("RUST_LOG", "warn")]).await;
    let client = client();
    let metrics = || async {
        client
            .get(format!("{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        let res = client
            .post(format!("{addr}/webhooks/stripe"))
            .header("Stripe-Signature", "t=1,v1=00")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
    }
    let orders = [
        create_order_at(&client, &addr, &unique_email()).await,
        create_order_at(&client, &addr, &unique_email()).await,
    ];
    let events: Vec<Value> = orders
        .iter()
        .map(|o| succeeded(&new_event_id(), o))
        .collect();
    for event in events.iter().chain(&events[..1]) {
        let res = post_signed_event(&client, &addr, event).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    for _ in 0..4 {
        let res = client
            .get(format!("{addr}/admin"))
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let text = metrics().await;
    let signature_failures = sample(&text, "webhook_signature_failures_total", "");
    assert_eq!(signature_failures, 3.0, "{text}");
    assert_eq!(
        sample(&text, "webhook_events_total", "outcome=\"applied\""),
        2.0
    );
    assert_eq!(
        sample(&text, "webhook_events_total", "outcome=\"duplicate\""),
        1.0
    );
    assert_eq!(sample(&text, "admin_login_failures_total", ""), 4.0);
    // A status change is counted by its new status; a change that keeps the status (a
    // dispute remembered for a pending order) is not.
    assert_eq!(
        sample(&text, "orders_settled_total", "status=\"paid\""),
        2.0
    );
    let pending = create_order_at(&client, &addr, &unique_email()).await;
    let pi = pending["payment_intent_id"].as_str().unwrap();
    let dispute = stripe_event(
        "charge.dispute.created",
        dispute_object("ch_test", Some(pi), 500, "needs_response"),
    );
    let res = post_signed_event(&client, &addr, &dispute).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "applied");
    let text = metrics().await;
    assert_eq!(sample(&text, "orders_settled_total", ""), 2.0, "{text}");
    stop(child).await;
}

#[tokio::test]
async fn the_background_loop_heals_lost_webhooks_on_its_own() {
    let stripe = StripeDouble::start().await;
    let mut env = stripe.env();
    env.push(("RECONCILE_INTERVAL_SECS", "1".into()));
    env.push(("RECONCILE_AFTER_SECS", "0".into()));
    let app = spawn_app_with(&as_pairs(&env)).await;
    let settled = |id: String, want: &'static str| {
        let app = &app;
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while app.order_status(&id).await != want {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("order {id} {want} by the loop"));
        }
    };
    // Two lost webhooks, the second made after the loop has already run: each is healed
    // by a later pass, with nothing asking for it.
    let email = unique_email();
    let first = app.create_order(&email, "starter").await;
    stripe.set_status(first["payment_intent_id"].as_str().unwrap(), "succeeded");
    settled(first["id"].as_str().unwrap().to_owned(), "paid").await;
    let second = app.create_order(&unique_email(), "starter").await;
    stripe.set_status(second["payment_intent_id"].as_str().unwrap(), "canceled");
    settled(second["id"].as_str().unwrap().to_owned(), "canceled").await;
    assert_eq!(app.balance(&email).await, 100);
    for order in [&first, &second] {
        let view: Value = app
            .admin_json(&format!(
                "/admin/api/orders/{}",
                order["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            view["transitions"].as_array().unwrap().last().unwrap()["cause"],
            "reconciler"
        );
    }
    #[derive(diesel::QueryableByName)]
    struct Runs {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let runs: Runs = diesel::sql_query(
        "SELECT count(*) AS n FROM reconcile_runs WHERE trigger = 'loop' AND finished_at IS NOT NULL",
    )
    .get_result(&mut app.db.conn().await)
    .await
    .unwrap();
    assert!(runs.n >= 2, "passes made by the loop: {}", runs.n);
    app.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_lands_while_the_reconciler_and_the_return_page_wait_on_the_provider() {
    let stripe = StripeDouble::start().await;
    let mut env = stripe.env();
    env.push(("RECONCILE_AFTER_SECS", "0".into()));
    let a = spawn_app_with(&as_pairs(&env)).await;
    let b = spawn_app_on(a.db.clone(), &as_pairs(&env)).await;
    for round in 0..5 {
        let email = unique_email();
        let order = a.create_order(&email, "starter").await;
        let (id, pi) = (
            order["id"].as_str().unwrap().to_owned(),
            order["payment_intent_id"].as_str().unwrap().to_owned(),
        );
        age_order(&a.db, &id).await;
        stripe.set_status(&pi, "succeeded");
        stripe.slow_retrieves(Duration::from_millis(700));
        let asked_before = stripe
            .requests("GET", &format!("/v1/payment_intents/{pi}"))
            .await
            .len();
        assert_eq!(asked_before, 0);
        // Both syncs ask the provider and read "succeeded"; their answers are held.
        let page = tokio::spawn({
            let (client, url) = (
                a.client.clone(),
                format!(
                    "{}/orders/{id}/status?payment_intent={pi}&redirect_status=succeeded",
                    a.address
                ),
            );
            async move { client.get(url).send().await.unwrap().status() }
        });
        let state = b.state.clone();
        let pass = tokio::spawn(async move { reconcile_once(&state, "test").await.unwrap() });
        tokio::time::timeout(Duration::from_secs(10), async {
            while stripe
                .requests("GET", &format!("/v1/payment_intents/{pi}"))
                .await
                .len()
                < 2
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("both syncs asked the provider");
        // While they wait: the webhook, twice to each instance, and a resend with a new id.
        let event = succeeded(&new_event_id(), &order);
        let resend = succeeded(&new_event_id(), &order);
        let answers = join_all([
            a.deliver(&event),
            b.deliver(&event),
            a.deliver(&event),
            b.deliver(&resend),
        ])
        .await;
        let applied = answers.iter().filter(|(_, o)| o == "applied").count();
        assert_eq!(applied, 1, "round {round}: {answers:?}");
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
        assert_eq!(page.await.unwrap(), 200);
        let report = pass.await.unwrap();
        assert_eq!(
            (report.changed.len(), report.errors),
            (0, 0),
            "round {round}: the pass found the order paid when its answer came"
        );
        stripe.slow_retrieves(Duration::ZERO);
        assert_eq!(a.balance(&email).await, 100);
        let view: Value = a.admin_json(&format!("/admin/api/orders/{id}")).await;
        let to_paid: Vec<&Value> = view["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["to"] == "paid")
            .collect();
        assert_eq!(to_paid.len(), 1, "{view}");
        assert!(
            to_paid[0]["cause"].as_str().unwrap().starts_with("evt_"),
            "the webhook paid it: {view}"
        );
        let grants = view["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "grant")
            .count();
        assert_eq!(grants, 1);
    }
    a.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_lost_between_a_webhooks_statements_leaves_nothing_and_the_retry_applies() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let event = succeeded(&new_event_id(), &order);
    let event_id = event["id"].as_str().unwrap().to_owned();
    // Hold the account row: the webhook's transaction gets as far as its ledger insert,
    // whose foreign key check waits on this lock, after its earlier statements ran.
    let mut lock = app.db.conn().await;
    lock.begin_test_transaction().await.unwrap();
    diesel::sql_query(format!(
        "SELECT 1 FROM accounts WHERE lower(email) = lower('{email}') FOR UPDATE"
    ))
    .execute(&mut lock)
    .await
    .unwrap();
    let delivery = tokio::spawn({
        let (client, addr, event) = (app.client.clone(), app.address.clone(), event.clone());
        async move { post_signed_event(&client, &addr, &event).await.unwrap() }
    });
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        query: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        wrote: bool,
    }
    let waiting: Waiting = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found: Vec<Waiting> = diesel::sql_query(
                "SELECT pid, query, backend_xid IS NOT NULL AS wrote FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .load(&mut app.db.conn().await)
            .await
            .unwrap();
            if let Some(w) = found.into_iter().next() {
                return w;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the webhook's transaction reached the lock");
    assert!(
        waiting.wrote,
        "the transaction had already written when it was cut: {}",
        waiting.query
    );
    diesel::sql_query(format!("SELECT pg_terminate_backend({})", waiting.pid))
        .execute(&mut app.db.conn().await)
        .await
        .unwrap();
    let answer = delivery.await.unwrap();
    assert_eq!(answer.status(), 503, "Stripe is told to retry");
    drop(lock);
    // Nothing of it stayed: no event row, no status change, no ledger row.
    #[derive(diesel::QueryableByName)]
    struct Left {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ledger: i64,
    }
    let left: Left = diesel::sql_query(format!(
        "SELECT (SELECT count(*) FROM webhook_events WHERE event_id = '{event_id}') AS events, \
                (SELECT count(*) FROM ledger) AS ledger"
    ))
    .get_result(&mut app.db.conn().await)
    .await
    .unwrap();
    assert_eq!((left.events, left.ledger), (0, 0));
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
    // Stripe's retry of the same event applies it, once.
    assert_eq!(app.deliver(&event).await, (200, "applied".to_owned()));
    assert_eq!(app.deliver(&event).await, (200, "duplicate".to_owned()));
    assert_eq!(app.balance(&email).await, 100);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn the_key_mode_and_the_events_livemode_must_agree() {
    let stripe = StripeDouble::start().await;
    for (key, wrong_mode, right_mode) in [
        ("sk_live_paidonce", false, true),
        ("sk_test_paidonce", true, false),
    ] {
        let base = stripe.server.uri();
        let app = spawn_app_with(&[("STRIPE_SECRET_KEY", key), ("STRIPE_API_BASE", &base)]).await;
        let email = unique_email();
        let contradicted = app.create_order(&email, "starter").await;
        let mut event = succeeded(&new_event_id(), &contradicted);
        event["livemode"] = json!(wrong_mode);
        event["data"]["object"]["livemode"] = json!(wrong_mode);
        assert_eq!(
            app.deliver(&event).await,
            (200, "mismatch".to_owned()),
            "{key}"
        );
        let id = contradicted["id"].as_str().unwrap();
        assert_eq!(app.order_status(id).await, "needs_review");
        let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
        assert!(view["ledger"].as_array().unwrap().is_empty(), "{view}");
        assert!(
            view.to_string().contains("livemode"),
            "the reason names it: {view}"
        );
        // The same shop takes an event of its own mode.
        let order = app.create_order(&email, "starter").await;
        let pi = order["payment_intent_id"].as_str().unwrap();
        stripe.set_status(pi, "succeeded");
        let mut event = succeeded(&new_event_id(), &order);
        event["livemode"] = json!(right_mode);
        event["data"]["object"]["livemode"] = json!(right_mode);
        assert_eq!(
            app.deliver(&event).await,
            (200, "applied".to_owned()),
            "{key}"
        );
        assert_eq!(app.balance(&email).await, 100);
        app.assert_money_invariant().await;
    }
}

/// Every ordering of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

#[tokio::test]
async fn any_arrival_order_of_one_orders_facts_ends_in_the_same_state() {
    let app = spawn_app().await;
    let starter: Value = app
        .client
        .get(format!("{}/api/packs", app.address))
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p["id"] == "starter")
        .unwrap();
    let (credits, amount) = (
        starter["credits"].as_i64().unwrap(),
        starter["amount"].as_i64().unwrap(),
    );
    // A success, a partial refund (a third, so the floor matters), an opened dispute
    // and its close; the close either won or lost.
    let refunded_amount = amount / 3;
    for (close, status, revoked) in [
        (
            "won",
            "partially_refunded",
            credits * refunded_amount / amount,
        ),
        ("lost", "dispute_lost", credits),
    ] {
        let kinds = ["succeeded", "refunded", "dispute_opened", "dispute_closed"];
        for (n, arrival) in permutations(&kinds).into_iter().enumerate() {
            let email = unique_email();
            let order = app.create_order(&email, "starter").await;
            let pi = order["payment_intent_id"].as_str().unwrap();
            let dispute = dispute_object("ch_test", Some(pi), amount, "needs_response");
            let mut closed = dispute.clone();
            closed["status"] = json!(close);
            closed["currency"] = order["currency"].clone();
            let mut opened = dispute;
            opened["currency"] = order["currency"].clone();
            let event = |kind: &str| match kind {
                "succeeded" => succeeded(&new_event_id(), &order),
                "refunded" => refunded(&new_event_id(), &order, refunded_amount),
                "dispute_opened" => stripe_event("charge.dispute.created", opened.clone()),
                _ => stripe_event("charge.dispute.closed", closed.clone()),
            };
            let events: Vec<Value> = arrival.iter().map(|k| event(k)).collect();
            for e in &events {
                assert_eq!(app.deliver(e).await.0, 200, "{arrival:?}");
            }
            // And again, newest first: nothing may move.
            for e in events.iter().rev() {
                assert_eq!(app.deliver(e).await.1, "duplicate", "{arrival:?}");
            }
            let id = order["id"].as_str().unwrap();
            let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
            let ledger: i64 = view["ledger"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["delta"].as_i64().unwrap())
                .sum();
            assert_eq!(
                (app.order_status(id).await.as_str(), ledger),
                (status, credits - revoked),
                "close {close}, arrival #{n} {arrival:?}: {view}"
            );
        }
    }
    app.assert_money_invariant().await;
}
