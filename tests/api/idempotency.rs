//! Idempotency-Key on POST /api/orders (SPEC §4), against the Stripe double.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs, stripe_error};

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_answer() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let body = json!({"email": unique_email(), "pack_id": "starter"});
    let first = app.post_order_with_key(&body, "key-1").await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    // The quoted RFC 8941 form names the same key.
    for key in ["key-1", "\"key-1\""] {
        let again = app.post_order_with_key(&body, key).await;
        assert_eq!(again.status(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().await.unwrap(), first);
    }
    assert_eq!(
        stripe.requests("POST", "/v1/payment_intents").await.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_with_one_key_make_one_order() {
    let stripe = StripeDouble::start_with_delay(Duration::from_millis(1200)).await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let body = json!({"email": unique_email(), "pack_id": "starter"});
    let responses = join_all((0..20).map(|_| app.post_order_with_key(&body, "race-key"))).await;
    let mut created = 0;
    let mut in_use = 0;
    let mut ids = std::collections::HashSet::new();
    for res in responses {
        match res.status().as_u16() {
            201 => {
                created += 1;
                ids.insert(
                    res.json::<Value>().await.unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            409 => {
                in_use += 1;
                assert_eq!(
                    res.json::<Value>().await.unwrap()["error"]["code"],
                    "idempotency_key_in_use"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created + in_use, 20);
    assert!(
        created >= 1 && in_use >= 1,
        "created {created}, in use {in_use}"
    );
    assert_eq!(ids.len(), 1, "every 201 names the same order");
    assert_eq!(
        stripe.requests("POST", "/v1/payment_intents").await.len(),
        1,
        "one PaymentIntent"
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let res = app
        .post_order_with_key(&json!({"email": "a@b.co", "pack_id": "starter"}), "k")
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .post_order_with_key(&json!({"email": "a@b.co", "pack_id": "pro"}), "k")
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "idempotency_key_mismatch"
    );
}

#[tokio::test]
async fn invalid_keys_are_400_and_no_key_means_a_new_order_each_time() {
    let app = spawn_app().await;
    let body = json!({"email": "a@b.co", "pack_id": "starter"});
    for key in ["k".repeat(256), "\"\"".into(), "caf\u{e9}".into()] {
        let res = app
            .client
            .post(format!("{}/api/orders", app.address))
            .header(
                "Idempotency-Key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{key}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_idempotency_key"
        );
    }
    let a: Value = app.post_order(&body).await.json().await.unwrap();
    let b: Value = app.post_order(&body).await.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
}

#[tokio::test]
async fn a_5xx_releases_the_key_and_the_retry_resumes_the_same_order_with_the_same_stripe_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(stripe_error(500))
        .up_to_n_times(4)
        .mount(&server)
        .await;
    let stripe = StripeDouble::on(server, Duration::ZERO).await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let body = json!({"email": unique_email(), "pack_id": "starter"});
    let res = app.post_order_with_key(&body, "retry-me").await;
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "provider_unavailable"
    );
    let res = app.post_order_with_key(&body, "retry-me").await;
    assert_eq!(res.status(), 201);
    assert!(
        res.headers().get("idempotent-replayed").is_none(),
        "a released key runs again"
    );
    let order: Value = res.json().await.unwrap();
    let creates = stripe.requests("POST", "/v1/payment_intents").await;
    assert_eq!(creates.len(), 5, "4 failed attempts then one success");
    let keys: std::collections::HashSet<_> = creates
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt carried the same Stripe Idempotency-Key"
    );
    assert!(
        keys.iter()
            .next()
            .unwrap()
            .contains(order["id"].as_str().unwrap())
    );
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    assert_eq!(
        diesel::sql_query("SELECT 1 FROM orders")
            .execute(&mut conn)
            .await
            .unwrap(),
        1,
        "no second order"
    );
}

#[tokio::test]
async fn keys_expire_after_the_ttl() {
    let app = spawn_app_with(&[("IDEMPOTENCY_TTL_SECS", "1")]).await;
    let body = json!({"email": unique_email(), "pack_id": "starter"});
    let first: Value = app
        .post_order_with_key(&body, "short-lived")
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = app.post_order_with_key(&body, "short-lived").await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_ne!(res.json::<Value>().await.unwrap()["id"], first["id"]);
}

#[tokio::test]
async fn an_abandoned_claim_is_taken_over_after_the_bound_and_resumes_its_order() {
    let app = spawn_app().await;
    let body = json!({"email": "crash@example.com", "pack_id": "starter"});
    let fingerprint = paidonce::idempotency::fingerprint(
        "POST",
        "/api/orders",
        &serde_json::to_vec(&body).unwrap(),
    );
    let mut conn = app.db.conn().await;
    use diesel_async::SimpleAsyncConnection;
    // A request that stored its order and died before asking the provider.
    let order_id = uuid::Uuid::new_v4();
    conn.batch_execute(&format!(
        "INSERT INTO accounts (id, email) VALUES ('{acc}', 'crash@example.com'); \
         INSERT INTO orders (id, account_id, pack_id, credits, amount, currency, provider_key) \
           VALUES ('{order_id}', '{acc}', 'starter', 100, 500, 'usd', 'paidonce-order-{order_id}'); \
         INSERT INTO idempotency_keys (key, fingerprint, state, order_id, heartbeat_at, expires_at) \
           VALUES ('crashed', '{fingerprint}', 'in_progress', '{order_id}', now() - interval '10 seconds', now() + interval '1 day')",
        acc = uuid::Uuid::new_v4()
    ))
    .await
    .unwrap();
    let res = app.post_order_with_key(&body, "crashed").await;
    assert_eq!(res.status(), 409, "still within the bound");
    conn.batch_execute("UPDATE idempotency_keys SET heartbeat_at = now() - interval '2 minutes'")
        .await
        .unwrap();
    let res = app.post_order_with_key(&body, "crashed").await;
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.unwrap();
    assert_eq!(
        order["id"],
        order_id.to_string(),
        "the takeover resumed the crashed request's order"
    );
    assert!(order["payment_intent_id"].as_str().is_some());
}
