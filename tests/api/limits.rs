//! Abuse guards on the public endpoints (SPEC §2, §4): JSON only where JSON is meant,
//! new orders per client address, failed payments per e-mail.

use serde_json::{Value, json};

use crate::helpers::*;

fn order_body() -> Value {
    json!({"email": unique_email(), "pack_id": "starter"})
}

#[tokio::test]
async fn orders_sent_as_text_or_a_form_are_415_and_nothing_is_made() {
    let app = spawn_app().await;
    for (content_type, body) in [
        ("text/plain", order_body().to_string()),
        (
            "application/x-www-form-urlencoded",
            "email=a%40b.c&pack_id=starter".to_owned(),
        ),
        ("multipart/form-data; boundary=x", "--x--".to_owned()),
    ] {
        let res = app
            .client
            .post(format!("{}/api/orders", app.address))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "{content_type}");
        assert!(res.headers().get("access-control-allow-origin").is_none());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type");
    }
    // With parameters it is still JSON.
    let res = app
        .client
        .post(format!("{}/api/orders", app.address))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(order_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    let orders = diesel::sql_query("SELECT 1 FROM orders")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(orders, 1, "only the JSON request made an order");
}

#[tokio::test]
async fn the_order_past_the_limit_is_429_unless_a_trusted_proxy_names_another_client() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_ORDERS", "3/min"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let post = |forwarded: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/api/orders", app.address))
            .json(&order_body());
        if let Some(f) = forwarded {
            req = req.header("X-Forwarded-For", f);
        }
        req.send()
    };
    for _ in 0..3 {
        assert_eq!(post(Some("198.51.100.7")).await.unwrap().status(), 201);
    }
    let over = post(Some("198.51.100.7")).await.unwrap();
    assert_eq!(over.status(), 429);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another client behind the same proxy is someone else.
    assert_eq!(post(Some("198.51.100.8")).await.unwrap().status(), 201);
    // Webhooks are never limited: 20 deliveries from the limited address all answer.
    for _ in 0..20 {
        let res = app
            .post_webhook_raw(b"{}".to_vec(), Some("t=1,v1=00"))
            .await;
        assert_eq!(res.status(), 400, "refused for its signature, never 429");
    }
}

#[tokio::test]
async fn an_untrusted_peers_forwarded_for_is_ignored() {
    let app = spawn_app_with(&[("RATE_LIMIT_ORDERS", "2/min")]).await;
    for forwarded in ["203.0.113.1", "203.0.113.2"] {
        let res = app
            .client
            .post(format!("{}/api/orders", app.address))
            .header("X-Forwarded-For", forwarded)
            .json(&order_body())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let res = app
        .client
        .post(format!("{}/api/orders", app.address))
        .header("X-Forwarded-For", "203.0.113.3")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        429,
        "the peer is the client: the header is not believed"
    );
}

#[tokio::test]
async fn six_failed_payments_for_one_email_stop_its_new_orders_on_every_instance() {
    let db = std::sync::Arc::new(TestDb::new().await);
    let a = spawn_app_on(db.clone(), &[]).await;
    let b = spawn_app_on(db.clone(), &[]).await;
    let email = unique_email();
    let body = json!({"email": email, "pack_id": "starter"});
    // 5/hour allows five; the sixth failure is over it.
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        let order: Value = app.post_order(&body).await.json().await.unwrap();
        assert_eq!(
            app.deliver(&failed(&new_event_id(), &order)).await.1,
            "applied"
        );
    }
    for app in [&a, &b] {
        let res = app.post_order(&body).await;
        assert_eq!(res.status(), 429);
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "too_many_failed_payments");
    }
    // Another e-mail is not affected.
    assert_eq!(a.post_order(&order_body()).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_during_an_order_flood_all_apply() {
    let app = spawn_app_with(&[("RATE_LIMIT_ORDERS", "10/min")]).await;
    let email = unique_email();
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(app.create_order(&email, "starter").await);
    }
    let bodies: Vec<Value> = (0..200).map(|_| order_body()).collect();
    let events: Vec<Value> = orders
        .iter()
        .map(|o| succeeded(&new_event_id(), o))
        .collect();
    let flood = futures_util::future::join_all(bodies.iter().map(|b| app.post_order(b)));
    let deliveries = futures_util::future::join_all(events.iter().map(|e| app.deliver(e)));
    let (flood, deliveries) = tokio::join!(flood, deliveries);
    let created = flood.iter().filter(|r| r.status() == 201).count();
    let limited = flood.iter().filter(|r| r.status() == 429).count();
    assert_eq!(
        (created, limited),
        (5, 195),
        "the rest of the 10 in the bucket"
    );
    assert!(
        deliveries.iter().all(|d| *d == (200, "applied".to_owned())),
        "{deliveries:?}"
    );
    assert_eq!(app.balance(&email).await, 500);
}
