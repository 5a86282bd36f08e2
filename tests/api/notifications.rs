//! Notifications to the merchant (SPEC §9): an outbox row in the same transaction as
//! every ledger and status change, delivered at least once, signed, per account in
//! commit order, by any number of instances without sending one twice at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_util::future::join_all;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const MERCHANT_SECRET: &str = "whsec_merchant_test";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.conn().await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn receiver(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

/// A receiver that answers as `refusal` says while it matches, and 200 otherwise.
async fn receiver_refusing_first(refusal: Mock) -> MockServer {
    let server = MockServer::start().await;
    refusal.with_priority(1).mount(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

fn settings(server: &MockServer) -> Vec<(&'static str, String)> {
    vec![
        ("MERCHANT_WEBHOOK_URL", format!("{}/paidonce", server.uri())),
        ("MERCHANT_WEBHOOK_SECRET", MERCHANT_SECRET.to_owned()),
        ("DATABASE_POOL_SIZE", "12".to_owned()),
    ]
}

async fn spawn_notifying(db: Option<Arc<TestDb>>, server: &MockServer) -> TestApp {
    let owned = settings(server);
    let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match db {
        Some(db) => spawn_app_on(db, &pairs).await,
        None => spawn_app_with(&pairs).await,
    }
}

/// A delivery as the receiver got it: its body, checked against its signature.
fn verified(req: &wiremock::Request) -> Value {
    let header = req.headers["paidonce-signature"].to_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let secrets = [SecretString::from(MERCHANT_SECRET)];
    paidonce::webhook::signature::verify(header, &req.body, &secrets, now, 300)
        .expect("the signature verifies with the merchant's secret");
    serde_json::from_slice(&req.body).unwrap()
}

/// The successful deliveries the receiver got, in arrival order, once `n` are in.
async fn wait_for(server: &MockServer, n: usize, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= n {
            return got.iter().map(verified).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} notifications arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A full refund of `order`'s charge, on a charge of its own.
fn refund_event(order: &Value) -> Value {
    stripe_event(
        "charge.refunded",
        json!({
            "id": format!("ch_{}", uuid::Uuid::new_v4().simple()), "object": "charge",
            "amount": order["amount"], "amount_refunded": order["amount"],
            "currency": order["currency"], "payment_intent": order["payment_intent_id"],
            "refunded": true,
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_racing_storm_on_two_instances_announces_every_change_once_signed_and_in_order() {
    let server = receiver(ResponseTemplate::new(200).set_body_string("ok")).await;
    let a = spawn_notifying(None, &server).await;
    let b = spawn_notifying(Some(a.db.clone()), &server).await;
    let emails: Vec<String> = (0..3).map(|_| unique_email()).collect();
    let orders: Vec<Value> =
        join_all((0..24).map(|i| a.create_order(&emails[i % 3], "starter"))).await;

    // Successes: each three times under one id and once under another, on both instances.
    let mut deliveries = Vec::new();
    for order in &orders {
        let first = succeeded(&new_event_id(), order);
        for copy in 0..4 {
            let event = if copy == 3 {
                succeeded(&new_event_id(), order)
            } else {
                first.clone()
            };
            deliveries.push((copy % 2 == 0, event));
        }
    }
    let results = join_all(
        deliveries
            .iter()
            .map(|(to_a, e)| if *to_a { a.deliver(e) } else { b.deliver(e) }),
    )
    .await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");

    // Spends on the first account, racing across instances, one reversed; refunds on
    // the third account's first four orders.
    let key = crate::credits::key(&a).await;
    let spends = join_all((0..6).map(|i| {
        let (app, key, email) = (if i % 2 == 0 { &a } else { &b }, &key, &emails[0]);
        async move {
            let body = json!({"credits": 10, "reference": format!("s{i}")});
            crate::credits::spend(app, key, email, body, &format!("k{i}")).await
        }
    }))
    .await;
    let mut spend_ids = Vec::new();
    for res in spends {
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        spend_ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let reversed = b
        .client
        .post(format!(
            "{}/api/v1/spends/{}/reverse",
            b.address, spend_ids[0]
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(reversed.status(), 200);
    let third: Vec<&Value> = orders.iter().skip(2).step_by(3).take(4).collect();
    let refund_events: Vec<Value> = third.iter().map(|o| refund_event(o)).collect();
    let refunds = join_all(refund_events.iter().map(|e| b.deliver(e))).await;
    assert!(
        refunds.iter().all(|r| *r == (200, "applied".to_owned())),
        "{refunds:?}"
    );

    // Nothing committed goes unannounced: a notification per ledger row and per status
    // change, no more.
    let ledger_rows = count(&a.db, "SELECT count(*) AS n FROM ledger").await;
    let status_changes = count(
        &a.db,
        "SELECT count(*) AS n FROM order_transitions WHERE from_status IS NOT NULL",
    )
    .await;
    assert_eq!(ledger_rows, 24 + 6 + 1 + 4);
    assert_eq!(status_changes, 24 + 4);
    let expected = (ledger_rows + status_changes) as usize;
    assert_eq!(
        count(&a.db, "SELECT count(*) AS n FROM notifications").await,
        expected as i64
    );

    let got = wait_for(&server, expected, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_all = server.received_requests().await.unwrap();
    assert_eq!(got_all.len(), expected, "nothing sent twice");
    let ids: HashSet<&str> = got.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), expected, "one id per change");
    let mut by_type: HashMap<&str, usize> = HashMap::new();
    for n in &got {
        *by_type.entry(n["type"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(by_type["credits.granted"], 24);
    assert_eq!(by_type["order.updated"], 28);
    assert_eq!(by_type["credits.spent"], 6);
    assert_eq!(by_type["credits.restored"], 1);
    assert_eq!(by_type["credits.revoked"], 4);

    // Per account, in commit order: sequence 1, 2, 3… in arrival order, and the last
    // one's balance is the account's balance.
    for email in &emails {
        let mine: Vec<&Value> = got
            .iter()
            .filter(|n| n["data"]["email"] == email.as_str())
            .collect();
        let seqs: Vec<i64> = mine
            .iter()
            .map(|n| n["data"]["sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=mine.len() as i64).collect::<Vec<_>>(), "{email}");
        // Each credit notification's balance is the one before plus its delta.
        let mut balance = 0;
        for n in mine.iter().filter(|n| n["type"] != "order.updated") {
            balance += n["data"]["delta"].as_i64().unwrap();
            assert_eq!(
                n["data"]["balance"].as_i64().unwrap(),
                balance,
                "{email}: {n}"
            );
        }
        let last = mine.last().unwrap();
        assert_eq!(
            last["data"]["balance"].as_i64().unwrap(),
            a.balance(email).await,
            "{email}"
        );
    }
    assert_eq!(
        count(
            &a.db,
            "SELECT count(*) AS n FROM notifications WHERE state <> 'delivered'"
        )
        .await,
        0
    );
    a.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_fails_for_a_while_gets_everything_after_in_order() {
    // Down for the first four tries, then up.
    let server = receiver_refusing_first(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
            .up_to_n_times(4),
    )
    .await;
    let app = spawn_notifying(None, &server).await;
    let email = unique_email();
    let orders: Vec<Value> = join_all((0..3).map(|_| app.create_order(&email, "starter"))).await;
    for order in &orders {
        assert_eq!(app.deliver(&succeeded(&new_event_id(), order)).await.0, 200);
    }
    // 4 failed tries then the 6 notifications, the first retried with backoff.
    let all = wait_for(&server, 4 + 6, Duration::from_secs(30)).await;
    let delivered = &all[4..];
    let seqs: Vec<i64> = delivered
        .iter()
        .map(|n| n["data"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4, 5, 6],
        "a later one waited for the earlier"
    );
    // The first four tries were all the first notification: nothing overtook it.
    for failed in &all[..4] {
        assert_eq!(failed["data"]["sequence"], 1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = app.db.conn().await;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Int4)]
        attempts: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT attempts, state FROM notifications ORDER BY account_seq")
            .load(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows[0].attempts, 5);
    assert!(rows.iter().all(|r| r.state == "delivered"));
    assert!(rows[1..].iter().all(|r| r.attempts == 1));
}

/// One account's notifications are claimed together and sent one after the other; when
/// one in the middle is refused, the ones behind it go back untried and wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_in_the_middle_of_a_run_holds_back_the_rest_of_it() {
    let server = receiver_refusing_first(
        Mock::given(method("POST"))
            .and(wiremock::matchers::body_partial_json(
                json!({"data": {"sequence": 2}}),
            ))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1),
    )
    .await;
    let app = spawn_notifying(None, &server).await;
    let email = unique_email();
    let orders: Vec<Value> = join_all((0..3).map(|_| app.create_order(&email, "starter"))).await;
    let events: Vec<Value> = orders
        .iter()
        .map(|order| succeeded(&new_event_id(), order))
        .collect();
    join_all(events.iter().map(|event| app.deliver(event)))
        .await
        .into_iter()
        .for_each(|(status, _)| assert_eq!(status, 200));
    // Six notifications and the one refused try.
    let all = wait_for(&server, 7, Duration::from_secs(30)).await;
    let seqs: Vec<i64> = all
        .iter()
        .map(|n| n["data"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 2, 3, 4, 5, 6],
        "nothing behind the refused one was sent before it was delivered"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts = count(
        &app.db,
        "SELECT count(*) AS n FROM notifications \
         WHERE state = 'delivered' AND attempts = CASE account_seq WHEN 2 THEN 2 ELSE 1 END",
    )
    .await;
    assert_eq!(
        attempts, 6,
        "an untried notification handed back keeps its count of tries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_hangs_never_slows_webhooks_or_checkout() {
    let server = receiver(ResponseTemplate::new(200).set_delay(Duration::from_secs(60))).await;
    let app = spawn_notifying(None, &server).await;
    let email = unique_email();
    let first = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &first)).await.0,
        200
    );
    // A send is now waiting on the receiver.
    wait_for(&server, 1, Duration::from_secs(10)).await;
    let shoppers: Vec<String> = (0..10).map(|_| unique_email()).collect();
    let orders: Vec<Value> =
        join_all(shoppers.iter().map(|e| app.create_order(e, "starter"))).await;
    let events: Vec<Value> = orders
        .iter()
        .map(|o| succeeded(&new_event_id(), o))
        .collect();
    let results = join_all(events.iter().map(|e| app.deliver(e))).await;
    assert!(
        results.iter().all(|r| *r == (200, "applied".to_owned())),
        "{results:?}"
    );
    assert!(app.get_order(first["id"].as_str().unwrap()).await.status() == 200);
    // Still only the first account's head went out: each account waits for its own.
    let pending = count(
        &app.db,
        "SELECT count(*) AS n FROM notifications WHERE state = 'pending'",
    )
    .await;
    assert_eq!(
        pending,
        2 + 20,
        "nothing delivered while the receiver hangs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_killed_after_its_change_announces_nothing_and_its_redelivery_announces_once()
{
    let server = receiver(ResponseTemplate::new(200)).await;
    let app = spawn_notifying(None, &server).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    // Hold the account row as the change needs it (not as the ledger's key check does):
    // the delivery changes the order and inserts its ledger row, whose running-balance
    // trigger (and then the notification write) waits for this row.
    let mut holder = app.db.conn().await;
    holder.begin_test_transaction().await.unwrap();
    diesel::sql_query(format!(
        "SELECT 1 FROM accounts WHERE email = '{email}' FOR NO KEY UPDATE"
    ))
    .execute(&mut holder)
    .await
    .unwrap();
    let event = succeeded(&new_event_id(), &order);
    let delivery = tokio::spawn({
        let (client, address, event) = (app.client.clone(), app.address.clone(), event.clone());
        async move {
            post_signed_event(&client, &address, &event)
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    // Kill the delivery's backend while it waits inside its transaction.
    let mut killer = app.db.conn().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let killed = diesel::sql_query(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' \
                   AND query LIKE '%INSERT INTO \"ledger\"%'",
            )
            .get_result::<Count>(&mut killer)
            .await
            .unwrap();
            if killed.n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the delivery reached its notification write");
    assert_eq!(delivery.await.unwrap(), 503, "Stripe is told to retry");
    drop(holder);
    assert_eq!(
        count(&app.db, "SELECT count(*) AS n FROM notifications").await,
        0
    );
    assert_eq!(count(&app.db, "SELECT count(*) AS n FROM ledger").await, 0);
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );

    assert_eq!(app.deliver(&event).await, (200, "applied".into()));
    let got = wait_for(&server, 2, Duration::from_secs(10)).await;
    let types: Vec<&str> = got.iter().map(|n| n["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["order.updated", "credits.granted"]);
    assert_eq!(got[1]["data"]["balance"], 100);
    assert_eq!(got[1]["data"]["order_id"], order["id"]);
}

#[tokio::test]
async fn without_a_merchant_url_nothing_is_written() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.0,
        200
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) AS n FROM notifications").await,
        0
    );
}

async fn admin_post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_sees_the_outbox_and_redelivers_with_a_note() {
    let server = receiver(ResponseTemplate::new(202).set_body_string("thanks")).await;
    let app = spawn_notifying(None, &server).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.0,
        200
    );
    let first = wait_for(&server, 2, Duration::from_secs(10)).await;
    let granted = first
        .iter()
        .find(|n| n["type"] == "credits.granted")
        .unwrap();
    let id = granted["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let page = app.admin_text("/admin/notifications").await;
    assert!(page.contains(&id), "the page lists the notification");
    assert!(page.contains("0 pending"), "{page}");
    assert!(page.contains("2 delivered"), "{page}");
    assert!(page.contains("202: thanks"), "the last answer is shown");
    let token = crate::pages::csrf_token(&page);

    // A form without its token changes nothing; one without a note is refused.
    let path = format!("/admin/notifications/{id}/redeliver");
    assert_eq!(
        admin_post(&app, &path, &[("note", "again")]).await.status(),
        403
    );
    let res = admin_post(&app, &path, &[("csrf_token", &token), ("note", " ")]).await;
    assert_eq!(res.status(), 422);
    let res = admin_post(
        &app,
        &path,
        &[
            ("csrf_token", &token),
            ("note", "merchant lost it in a restore"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    // Sent again: the same id and the very same bytes, so the receiver can deduplicate.
    let all = wait_for(&server, 3, Duration::from_secs(10)).await;
    assert_eq!(all[2], *granted);
    let sent = server.received_requests().await.unwrap();
    let bodies: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["id"] == id.as_str())
        .map(|r| &r.body)
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM notification_actions \
             WHERE note = 'merchant lost it in a restore' AND result = 'queued again (was delivered)'"
        )
        .await,
        1,
        "the redelivery is audited"
    );

    // The JSON twin: JSON only, a note required, 404 for an unknown id.
    let json_path = format!("{}/admin/api/notifications/{id}/redeliver", app.address);
    let res = app
        .client
        .post(&json_path)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(&[("note", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = app
        .client
        .post(&json_path)
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"note": "second try"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["action"], "redeliver");
    let res = app
        .client
        .post(format!(
            "{}/admin/api/notifications/ntf_nope/redeliver",
            app.address
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"note": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    wait_for(&server, 4, Duration::from_secs(10)).await;
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("notifications_sent_total{result=\"delivered\"}"),
        "deliveries are counted by result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_or_failed_outbox_shows_on_the_dashboard() {
    let server = receiver(ResponseTemplate::new(500).set_body_string("boom")).await;
    let app = spawn_notifying(None, &server).await;
    let order = app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.0,
        200
    );
    wait_for(&server, 1, Duration::from_secs(10)).await;
    let dashboard = app.admin_text("/admin").await;
    assert!(
        !dashboard.contains("Notifications to the merchant are stuck"),
        "a notification a few seconds old is not stuck"
    );
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE notifications SET created_at = now() - interval '10 minutes'")
        .execute(&mut conn)
        .await
        .unwrap();
    let dashboard = app.admin_text("/admin").await;
    assert!(
        dashboard.contains("Notifications to the merchant are stuck: 2 pending, the oldest for"),
        "{dashboard}"
    );
    // Past its 3 days: failed, and the next one waits behind it.
    diesel::sql_query(
        "UPDATE notifications SET retry_since = now() - interval '4 days', next_attempt_at = now()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while count(
        &app.db,
        "SELECT count(*) AS n FROM notifications WHERE state = 'failed'",
    )
    .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = app.admin_text("/admin/notifications").await;
    assert!(page.contains("failed after 3 days of retries"), "{page}");
    assert!(page.contains("500: boom"), "{page}");
    let dashboard = app.admin_text("/admin").await;
    assert!(dashboard.contains("1 failed"), "{dashboard}");
    // Only the head was ever tried: the second waits behind the failed first.
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) AS n FROM notifications WHERE attempts = 0 AND state = 'pending'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_send_waiting_on_the_receiver_releases_it_and_exits_promptly() {
    let server = receiver(ResponseTemplate::new(200).set_delay(Duration::from_secs(60))).await;
    let db = TestDb::new().await;
    let url = format!("{}/paidonce", server.uri());
    let (mut child, addr) = crate::shutdown::serve_with(
        &db,
        &[
            ("MERCHANT_WEBHOOK_URL", url.as_str()),
            ("MERCHANT_WEBHOOK_SECRET", MERCHANT_SECRET),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let order = create_order_at(&client, &addr, &unique_email()).await;
    let res = post_signed_event(&client, &addr, &succeeded(&new_event_id(), &order))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    wait_for(&server, 1, Duration::from_secs(10)).await;
    crate::shutdown::sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits without waiting for the receiver")
        .unwrap();
    assert!(status.success(), "{status}");
    // Released: no lease left, the try not counted; another instance sends it at once.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM notifications \
             WHERE state = 'pending' AND leased_until IS NULL AND attempts = 0"
        )
        .await,
        2
    );
}

/// The single notification row's state, tries and last answer, once it has been tried.
async fn tried(db: &TestDb) -> (String, i32, Option<i32>, String) {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        state: String,
        #[diesel(sql_type = diesel::sql_types::Int4)]
        attempts: i32,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int4>)]
        last_status: Option<i32>,
        #[diesel(sql_type = diesel::sql_types::Text)]
        last_answer: String,
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut conn = db.conn().await;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT state, attempts, last_status, COALESCE(last_answer, '') AS last_answer \
             FROM notifications WHERE last_attempt_at IS NOT NULL AND leased_until IS NULL \
             AND (state = 'delivered' OR last_answer IS NOT NULL)",
        )
        .load(&mut conn)
        .await
        .unwrap();
        if let Some(r) = rows.into_iter().next() {
            return (r.state, r.attempts, r.last_status, r.last_answer);
        }
        assert!(tokio::time::Instant::now() < deadline, "never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One paid order on an app whose merchant URL is `url`: the first notification's fate.
async fn first_try_against(url: &str) -> (String, i32, Option<i32>, String) {
    let app = spawn_app_with(&[
        ("MERCHANT_WEBHOOK_URL", url),
        ("MERCHANT_WEBHOOK_SECRET", MERCHANT_SECRET),
    ])
    .await;
    let order = app.create_order(&unique_email(), "starter").await;
    let started = std::time::Instant::now();
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.0,
        200
    );
    let outcome = tried(&app.db).await;
    assert!(started.elapsed() < Duration::from_secs(12), "{outcome:?}");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_refusals_closed_ports_and_huge_answers_are_handled_as_answers() {
    // A redirect is not followed: retried like any non-2xx.
    let moved = receiver(
        ResponseTemplate::new(302).insert_header("Location", "http://127.0.0.1:9/elsewhere"),
    )
    .await;
    let (state, tries, status, _) = first_try_against(&format!("{}/hook", moved.uri())).await;
    assert_eq!((state.as_str(), tries, status), ("pending", 1, Some(302)));

    let refused = receiver(ResponseTemplate::new(400).set_body_string("bad signature?")).await;
    let (state, _, status, answer) = first_try_against(&format!("{}/hook", refused.uri())).await;
    assert_eq!((state.as_str(), status), ("pending", Some(400)));
    assert_eq!(answer, "bad signature?");

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (state, _, status, answer) =
        first_try_against(&format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!((state.as_str(), status), ("pending", None));
    assert_eq!(answer, "could not connect");

    // 64 MiB of answer: only the first few KiB are read, and 2xx is delivered.
    let huge = receiver(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 64 << 20])).await;
    let (state, _, status, answer) = first_try_against(&format!("{}/hook", huge.uri())).await;
    assert_eq!((state.as_str(), status), ("delivered", Some(200)));
    assert_eq!(answer.len(), 300, "a short excerpt is kept");
}

#[derive(QueryableByName)]
struct PlanJson {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// For every UPDATE in an `EXPLAIN (FORMAT JSON)` plan, how it reaches the rows it
/// updates: the index of each scan of its target under it (InitPlans and SubPlans
/// left out: they compute ids, they do not fetch the rows), or "Seq Scan".
fn update_access_paths(plan: &str) -> Vec<Vec<String>> {
    fn plans(node: &Value) -> impl Iterator<Item = &Value> {
        node["Plans"].as_array().into_iter().flatten()
    }
    fn feeding(node: &Value) -> bool {
        !matches!(
            node["Parent Relationship"].as_str(),
            Some("InitPlan" | "SubPlan")
        )
    }
    fn index_under(node: &Value, out: &mut Vec<String>) {
        if let Some(index) = node["Index Name"].as_str() {
            out.push(index.to_owned());
        }
        plans(node).for_each(|p| index_under(p, out));
    }
    fn scans_of(node: &Value, alias: &str, out: &mut Vec<String>) {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        if node["Alias"] == alias && kind.ends_with("Scan") {
            match kind {
                "Seq Scan" => out.push(kind.to_owned()),
                _ => index_under(node, out),
            }
        }
        plans(node)
            .filter(|p| feeding(p))
            .for_each(|p| scans_of(p, alias, out));
    }
    fn updates(node: &Value, out: &mut Vec<Vec<String>>) {
        if node["Node Type"] == "ModifyTable" && node["Operation"] == "Update" {
            let alias = node["Alias"].as_str().unwrap_or_default().to_owned();
            let mut paths = Vec::new();
            plans(node)
                .filter(|p| feeding(p))
                .for_each(|p| scans_of(p, &alias, &mut paths));
            out.push(paths);
        }
        plans(node).for_each(|p| updates(p, out));
    }
    let v: Value = serde_json::from_str(plan).unwrap();
    let mut out = Vec::new();
    updates(&v[0]["Plan"], &mut out);
    out
}

/// The dispatcher's claim and finish find the rows they update by primary key even
/// while the planner believes nothing waits: statistics taken when every row was
/// delivered, as a big outbox keeps them (a backlog under a tenth of the table never
/// triggers autoanalyze). With a plain `state = 'pending'` test the planner walked the
/// queue index's waiting rows once per claimed row instead; in the load lab a receiver
/// back after an outage then took 316 s to get a backlog of 20000 (2 s now).
#[tokio::test]
async fn claim_and_finish_find_their_rows_by_key_while_statistics_say_nothing_waits() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let rows = "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM accounts) a, \
                generate_series(1, 40) s";
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        &format!(
            "INSERT INTO accounts (id, email) \
               SELECT gen_random_uuid(), 'plan' || g || '@example.com' FROM generate_series(1, 50) g; \
             INSERT INTO notifications (id, account_id, account_seq, kind, state, delta, balance) \
               SELECT 'ntf_d' || a.n || '_' || s, a.id, s, 'order.updated', 'delivered', 0, 0 {rows}; \
             ANALYZE notifications; \
             ALTER TABLE notifications SET (autovacuum_enabled = false); \
             INSERT INTO notifications (id, account_id, account_seq, kind, delta, balance) \
               SELECT 'ntf_p' || a.n || '_' || s, a.id, 40 + s, 'order.updated', 0, 0 {rows};"
        ),
    )
    .await
    .unwrap();

    let claim: PlanJson = diesel::sql_query(format!(
        "EXPLAIN (FORMAT JSON) {}",
        paidonce::notify::dispatch::claim_sql()
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    let paths = update_access_paths(&claim.plan);
    assert_eq!(paths.len(), 2, "the claim's two UPDATEs: {}", claim.plan);
    for path in &paths {
        assert_eq!(path, &["notifications_pkey"], "claim: {}", claim.plan);
    }

    diesel::sql_query(format!(
        "PREPARE finish_plan(text[], int4[], text[], int4[], text[], float8[]) AS {}",
        paidonce::notify::dispatch::FINISH_SQL
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // A batch as a finish sends it: 400 waiting ids (8 of each of the 50 accounts).
    let batch = "(SELECT array_agg(id) FROM (SELECT id FROM notifications \
                 WHERE state = 'pending' ORDER BY id LIMIT 400) b)";
    let ids: PlanJson = diesel::sql_query(format!("SELECT {batch}::text AS \"QUERY PLAN\""))
        .get_result(&mut conn)
        .await
        .unwrap();
    let ids = &ids.plan;
    // Postgres plans the first executions with the values and may settle on a generic
    // plan later: both must use the key.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        diesel::sql_query(format!("SET plan_cache_mode = {mode}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let finish: PlanJson = diesel::sql_query(format!(
            "EXPLAIN (FORMAT JSON) EXECUTE finish_plan('{ids}', array_fill(1, ARRAY[400]), \
             array_fill('delivered'::text, ARRAY[400]), array_fill(200, ARRAY[400]), \
             array_fill(''::text, ARRAY[400]), array_fill(1.0::float8, ARRAY[400]))"
        ))
        .get_result(&mut conn)
        .await
        .unwrap();
        // By key, or (on a table this small) one sequential pass into a hash join; never
        // through the queue index, which is the trap.
        let paths = update_access_paths(&finish.plan);
        assert_eq!(paths.len(), 1, "finish ({mode}): {}", finish.plan);
        assert!(
            matches!(paths[0].as_slice(), [p] if p == "notifications_pkey" || p == "Seq Scan"),
            "finish ({mode}) reads {:?}: {}",
            paths[0],
            finish.plan
        );
    }
}

#[derive(QueryableByName)]
struct Rendered {
    #[diesel(sql_type = diesel::sql_types::Text)]
    body: String,
}

/// The dispatcher renders a body to the very text Postgres made of the same fields with
/// `jsonb_build_object(…)::text`, which is what the outbox stored before migration 14:
/// a notification written before the upgrade and retried after it goes out with the
/// bytes it was first sent with. Escapes, nulls, big and negative numbers, and the
/// rounding of `created` (half a second and just under) included.
#[tokio::test]
async fn a_rendered_body_is_the_text_postgres_built_before_migration_14() {
    use chrono::TimeZone;
    use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
    use paidonce::notify::{Payload, created_seconds};

    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    let at = |micros: i64| {
        chrono::Utc
            .timestamp_micros(1_764_720_000_000_000 + micros)
            .unwrap()
    };
    let order = uuid::Uuid::new_v4();
    let spend = uuid::Uuid::new_v4();
    let cases = [
        Payload {
            id: "ntf_0190e0c4a1b27c3d8e9f00112233aabb",
            kind: "credits.granted",
            created: 0,
            order_id: Some(order),
            spend_id: None,
            email: "shopper@example.com",
            status: Some("paid"),
            delta: 100,
            balance: 6100,
            sequence: 1,
        },
        Payload {
            id: "ntf_2",
            kind: "credits.spent",
            created: 0,
            order_id: None,
            spend_id: Some(spend),
            email: "o\"brien\\é\tx\u{1}@example.com",
            status: None,
            delta: -5,
            balance: -5,
            sequence: 12,
        },
        Payload {
            id: "ntf_3",
            kind: "order.updated",
            created: 0,
            order_id: Some(order),
            spend_id: None,
            email: "a@b.c",
            status: Some("needs_review"),
            delta: 0,
            balance: 9_007_199_254_740_993,
            sequence: 3,
        },
    ];
    // The transaction times: half a second, just under it, whole.
    let micros = [500_000, 499_999, 0];
    for (case, micros) in cases.iter().zip(micros) {
        let p = &Payload {
            created: created_seconds(at(micros)),
            ..case.clone()
        };
        let postgres: Rendered = diesel::sql_query(
            "SELECT jsonb_build_object(
                 'id', $1::text, 'type', $2::text,
                 'created', extract(epoch FROM $3::timestamptz)::bigint,
                 'data', jsonb_build_object(
                     'order_id', $4::uuid, 'spend_id', $5::uuid, 'email', $6::text,
                     'status', $7::text, 'delta', $8::bigint, 'balance', $9::bigint,
                     'sequence', $10::bigint))::text AS body",
        )
        .bind::<Text, _>(p.id)
        .bind::<Text, _>(p.kind)
        .bind::<Timestamptz, _>(at(micros))
        .bind::<Nullable<SqlUuid>, _>(p.order_id)
        .bind::<Nullable<SqlUuid>, _>(p.spend_id)
        .bind::<Text, _>(p.email)
        .bind::<Nullable<Text>, _>(p.status)
        .bind::<BigInt, _>(p.delta)
        .bind::<BigInt, _>(p.balance)
        .bind::<BigInt, _>(p.sequence)
        .get_result(&mut conn)
        .await
        .unwrap();
        assert_eq!(p.render(), postgres.body);
    }
}
