//! The credits API (SPEC §8): keys, balances, the ledger, spends that never overdraw,
//! reversals that give back once.

use std::sync::Arc;

use futures_util::future::join_all;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::*;

pub async fn key(app: &TestApp) -> String {
    let (_, key) = paidonce::credits::create_key(&app.state, "test shop")
        .await
        .unwrap();
    key.expose_secret().to_owned()
}

/// An account with `spent` of a starter pack's 100 credits already spent.
async fn account_with(app: &TestApp, key: &str, balance: i64) -> String {
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    if balance < 100 {
        let res = spend(
            app,
            key,
            &email,
            json!({"credits": 100 - balance, "reference": "setup"}),
            "setup",
        )
        .await;
        assert_eq!(res.status(), 201);
    }
    email
}

pub async fn spend(
    app: &TestApp,
    key: &str,
    email: &str,
    body: Value,
    idem: &str,
) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/accounts/{email}/spends", app.address))
        .bearer_auth(key)
        .header(
            "Idempotency-Key",
            format!("{}-{email}", idem.replace(' ', "-")),
        )
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn account(app: &TestApp, key: &str, email: &str) -> Value {
    app.client
        .get(format!("{}/api/v1/accounts/{email}", app.address))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The key's last-use stamp is for the operator's key list: when it cannot be written
/// (here every UPDATE of a key fails), the request it came with goes on.
#[tokio::test]
async fn a_key_whose_last_use_cannot_be_stamped_still_spends() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let key = key(&app).await;
    let email = account_with(&app, &key, 100).await;
    app.db
        .conn()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_stamps() RETURNS trigger LANGUAGE plpgsql AS \
             $$BEGIN RAISE EXCEPTION 'no stamps today'; END$$; \
             CREATE TRIGGER refuse_stamps BEFORE UPDATE ON api_keys \
             FOR EACH ROW EXECUTE FUNCTION refuse_stamps();",
        )
        .await
        .unwrap();
    let res = spend(
        &app,
        &key,
        &email,
        json!({"credits": 30, "reference": "r1"}),
        "r1",
    )
    .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["balance_after"], 70, "{body}");
    let key_id = key.split('_').nth(1).unwrap();
    let key_id = uuid::Uuid::try_parse(key_id).unwrap();
    assert!(
        crate::log_capture::contains(&format!(
            "could not record the key's last use error=no stamps today key_id={key_id}"
        )),
        "the stamp was tried and failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_spends_on_fifty_credits_over_two_instances_spend_exactly_fifty() {
    // Arrange
    let db = Arc::new(TestDb::new().await);
    let a = spawn_app_on(db.clone(), &[("DATABASE_POOL_SIZE", "20")]).await;
    let b = spawn_app_on(db.clone(), &[("DATABASE_POOL_SIZE", "20")]).await;
    let k = key(&a).await;
    let email = account_with(&a, &k, 50).await;

    // Act
    let results = join_all((0..100).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let (k, email) = (k.clone(), email.clone());
        async move {
            let res = spend(
                app,
                &k,
                &email,
                json!({"credits": 1, "reference": format!("r{i}")}),
                &format!("s{i}"),
            )
            .await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }
    }))
    .await;

    // Assert
    let ok = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 409 && b["error"]["code"] == "insufficient_credits")
        .count();
    assert_eq!((ok, refused), (50, 50), "{results:?}");
    let after = account(&a, &k, &email).await;
    assert_eq!(after["balance"], 0);
    assert_eq!(
        (after["granted"].as_i64(), after["spent"].as_i64()),
        (Some(100), Some(100))
    );
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s == 201)
            .all(|(_, b)| b["balance_after"].as_i64().unwrap() >= 0),
        "no spend saw a balance below zero"
    );
    assert_money_invariant(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_twenty_times_at_once_spends_once() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "20")]).await;
    let k = key(&app).await;
    let email = account_with(&app, &k, 100).await;
    let results = join_all((0..20).map(|_| async {
        let res = spend(
            &app,
            &k,
            &email,
            json!({"credits": 7, "reference": "one"}),
            "same",
        )
        .await;
        res.status().as_u16()
    }))
    .await;
    assert!(
        results.iter().all(|s| [201, 409].contains(s)),
        "{results:?}"
    );
    assert!(results.contains(&201));
    let replay = spend(
        &app,
        &k,
        &email,
        json!({"credits": 7, "reference": "one"}),
        "same",
    )
    .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let other_body = spend(
        &app,
        &k,
        &email,
        json!({"credits": 8, "reference": "one"}),
        "same",
    )
    .await;
    assert_eq!(other_body.status(), 422);
    assert_eq!(account(&app, &k, &email).await["balance"], 93);
}

#[tokio::test]
async fn a_spend_reversed_twice_gives_its_credits_back_once() {
    let app = spawn_app().await;
    let k = key(&app).await;
    let email = account_with(&app, &k, 100).await;
    let spent: Value = spend(
        &app,
        &k,
        &email,
        json!({"credits": 30, "reference": "game"}),
        "rev",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(spent["balance_after"], 70);
    let reverse = || {
        app.client
            .post(format!(
                "{}/api/v1/spends/{}/reverse",
                app.address,
                spent["id"].as_str().unwrap()
            ))
            .bearer_auth(&k)
            .send()
    };
    let first: Value = reverse().await.unwrap().json().await.unwrap();
    let second: Value = reverse().await.unwrap().json().await.unwrap();
    assert_eq!(first, second, "the second call answers the same reversal");
    assert_eq!(first["credits"], 30);
    assert_eq!(account(&app, &k, &email).await["balance"], 100);
    // The ledger, newest first, paged.
    let page: Value = app
        .client
        .get(format!(
            "{}/api/v1/accounts/{email}/ledger?limit=2",
            app.address
        ))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["spend_reversal", "spend"]);
    assert_eq!(page["has_more"], true);
    let last = page["data"][1]["id"].as_str().unwrap();
    let rest: Value = app
        .client
        .get(format!(
            "{}/api/v1/accounts/{email}/ledger?starting_after={last}",
            app.address
        ))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["data"][0]["kind"], "grant");
    assert_eq!(rest["has_more"], false);
    assert!(rest["data"][0]["order_id"].is_string());
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_on_another_instance() {
    let db = Arc::new(TestDb::new().await);
    let a = spawn_app_on(db.clone(), &[]).await;
    let b = spawn_app_on(db.clone(), &[]).await;
    let (id, k) = paidonce::credits::create_key(&a.state, "shop")
        .await
        .unwrap();
    let k = k.expose_secret().to_owned();
    let email = account_with(&a, &k, 100).await;
    assert_eq!(account(&b, &k, &email).await["balance"], 100);
    let mut conn = a.state.db.get().await.unwrap();
    assert!(paidonce::db::api_keys::revoke(&mut conn, id).await.unwrap());
    drop(conn);
    let res = b
        .client
        .get(format!("{}/api/v1/accounts/{email}", b.address))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_refund_after_spending_leaves_a_deficit_and_spends_are_refused_until_covered() {
    let app = spawn_app().await;
    let k = key(&app).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        spend(
            &app,
            &k,
            &email,
            json!({"credits": 80, "reference": "used"}),
            "use"
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 500)).await.1,
        "applied"
    );
    let after = account(&app, &k, &email).await;
    assert_eq!(after["balance"], -80, "the ledger tells the truth");
    let res = spend(
        &app,
        &k,
        &email,
        json!({"credits": 1, "reference": "more"}),
        "more",
    )
    .await;
    assert_eq!(res.status(), 409);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn bad_spends_and_bad_keys_are_clear_4xx_and_spend_nothing() {
    let app = spawn_app().await;
    let k = key(&app).await;
    let email = account_with(&app, &k, 100).await;
    for (body, why) in [
        (json!({"credits": 0}), "zero"),
        (json!({"credits": -1}), "negative"),
        (json!({"credits": 1.5}), "fractional"),
        (json!({"credits": "5"}), "a string"),
        (json!({"credits": 2_147_483_648_i64}), "above 2^31"),
        (
            json!({"credits": 1, "reference": "x".repeat(256)}),
            "long reference",
        ),
        (
            json!({"credits": 1, "reference": "a\u{7}b"}),
            "control character",
        ),
    ] {
        let res = spend(&app, &k, &email, body, why).await;
        assert_eq!(res.status(), 422, "{why}");
    }
    let unknown = spend(&app, &k, &unique_email(), json!({"credits": 1}), "unknown").await;
    assert_eq!(unknown.status(), 404);
    for header in [
        None,
        Some("Bearer po_nonsense"),
        Some("Bearer sk_test_x"),
        Some("Basic YWRtaW46eA=="),
    ] {
        let mut req = app
            .client
            .get(format!("{}/api/v1/accounts/{email}", app.address));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{header:?}");
    }
    let no_key = app
        .client
        .post(format!("{}/api/v1/accounts/{email}/spends", app.address))
        .bearer_auth(&k)
        .json(&json!({"credits": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 400);
    assert_eq!(
        account(&app, &k, &email).await["balance"],
        100,
        "nothing spent"
    );
}

#[tokio::test]
async fn each_key_has_its_own_rate_and_the_operator_sees_keys_and_deficits() {
    let app = spawn_app_with(&[("RATE_LIMIT_CREDITS_API", "3/min")]).await;
    let first = key(&app).await;
    let second = key(&app).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    let get = |k: &str| {
        app.client
            .get(format!("{}/api/v1/accounts/{email}", app.address))
            .bearer_auth(k)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get(&first).await.unwrap().status(), 200);
    }
    let over = get(&first).await.unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    assert_eq!(
        get(&second).await.unwrap().status(),
        200,
        "another key has its own rate"
    );

    // A spend, then a full refund: the account is in deficit on the operator's page,
    // which lists the keys by name and never the key itself.
    let res = spend(&app, &second, &email, json!({"credits": 40}), "deficit").await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 500)).await.1,
        "applied"
    );
    let page = app.admin_text("/admin").await;
    let deficits = page
        .split("Accounts in deficit")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .expect("the deficit section");
    assert!(
        deficits.contains(&format!(r#"<td>{email}</td><td class="num">-40</td>"#)),
        "deficit listed: {deficits}"
    );
    assert!(page.contains("test shop"));
    let secret = second.rsplit('_').next().unwrap();
    assert!(!page.contains(secret), "never the key");
}

#[tokio::test]
async fn a_refused_spend_keeps_its_answer_under_its_key() {
    // A 4xx is the request's answer (only a 5xx gives the key back): the same request
    // again is told the same, even once the balance would cover it.
    let app = spawn_app().await;
    let key = key(&app).await;
    let email = account_with(&app, &key, 5).await;
    let body = json!({"credits": 10, "reference": "too much"});
    let first = spend(&app, &key, &email, body.clone(), "refused once").await;
    assert_eq!(first.status(), 409);
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    let again = spend(&app, &key, &email, body, "refused once").await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "insufficient_credits");
    assert_eq!(app.balance(&email).await, 105);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn the_ledger_refuses_edits_so_the_running_balance_stays_its_sum() {
    let app = spawn_app().await;
    let key = key(&app).await;
    let email = account_with(&app, &key, 60).await;
    let mut conn = app.db.conn().await;
    for edit in [
        "UPDATE ledger SET delta = delta + 1",
        "DELETE FROM ledger WHERE kind = 'spend'",
    ] {
        let refused = diesel_async::RunQueryDsl::execute(diesel::sql_query(edit), &mut conn)
            .await
            .expect_err(edit);
        assert!(
            refused.to_string().contains("append-only"),
            "{edit}: {refused}"
        );
    }
    assert_eq!(app.balance(&email).await, 60);
    assert_money_invariant(&app.db).await;
}
