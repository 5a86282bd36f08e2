use serde_json::{Value, json};

use crate::helpers::{spawn_app, unique_email};

#[tokio::test]
async fn packs_are_listed_with_their_price() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/api/packs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let packs: Vec<Value> = res.json().await.unwrap();
    assert!(packs.len() >= 3);
    for p in &packs {
        for field in ["id", "name", "credits", "amount", "currency"] {
            assert!(!p[field].is_null(), "{field} missing in {p}");
        }
    }
    assert_eq!(
        packs[0],
        json!({"id": "starter", "name": "Starter", "credits": 100, "amount": 500, "currency": "usd"})
    );
}

#[tokio::test]
async fn creating_an_order_returns_201_with_a_sandbox_payment_intent() {
    let app = spawn_app().await;
    let res = app
        .post_order(&json!({"email": "  Ada@Example.COM ", "pack_id": "standard"}))
        .await;
    assert_eq!(res.status(), 201);
    let o: Value = res.json().await.unwrap();
    assert_eq!(o["status"], "pending");
    assert_eq!(o["email"], "ada@example.com");
    assert_eq!(
        (
            o["credits"].as_i64(),
            o["amount"].as_i64(),
            o["currency"].as_str()
        ),
        (Some(550), Some(2500), Some("usd"))
    );
    let pi = o["payment_intent_id"].as_str().unwrap();
    assert!(pi.starts_with("pi_sandbox_"), "{pi}");
    assert!(
        o["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{pi}_secret_"))
    );
    let id = o["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(o["pay_url"], format!("{}/orders/{id}/pay", app.address));
    assert_eq!(
        o["status_url"],
        format!("{}/orders/{id}/status", app.address)
    );
}

#[tokio::test]
async fn an_order_can_be_read_back_without_email_or_client_secret() {
    let app = spawn_app().await;
    let created = app.create_order(&unique_email(), "starter").await;
    let res = app.get_order(created["id"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let o: Value = res.json().await.unwrap();
    let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "amount",
            "created_at",
            "credits",
            "currency",
            "id",
            "paid_at",
            "status"
        ]
    );
    assert_eq!(o["status"], "pending");
    assert!(o["paid_at"].is_null());
}

#[tokio::test]
async fn unknown_or_malformed_order_ids_are_404() {
    let app = spawn_app().await;
    for id in [
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
        "1".into(),
    ] {
        let res = app.get_order(&id).await;
        assert_eq!(res.status(), 404, "{id}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn invalid_order_requests_are_refused_with_an_error_body_and_nothing_stored() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"email\":".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "not JSON at all",
            b"email=a@b.co".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "missing pack",
            br#"{"email":"a@b.co"}"#.to_vec(),
            422,
            "invalid_body",
        ),
        (
            "wrong type",
            br#"{"email":5,"pack_id":"starter"}"#.to_vec(),
            422,
            "invalid_body",
        ),
        (
            "invalid email",
            br#"{"email":"nope","pack_id":"starter"}"#.to_vec(),
            422,
            "invalid_email",
        ),
        (
            "unknown pack",
            br#"{"email":"a@b.co","pack_id":"diamond"}"#.to_vec(),
            422,
            "unknown_pack",
        ),
        (
            "empty pack",
            br#"{"email":"a@b.co","pack_id":""}"#.to_vec(),
            422,
            "unknown_pack",
        ),
        (
            // Postgres keeps no NUL in text: this was a 500.
            "NUL in pack",
            br#"{"email":"a@b.co","pack_id":"starter\u0000"}"#.to_vec(),
            422,
            "unknown_pack",
        ),
    ];
    for (why, body, status, code) in cases {
        let res = app
            .client
            .post(format!("{}/api/orders", app.address))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{why}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{why}"
        );
    }
    let counts: Value = app.admin_json("/admin/api/events").await;
    assert_eq!(counts, json!([]));
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    let orders = diesel::sql_query("SELECT 1 FROM orders")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(orders, 0, "no order stored for refused requests");
}

#[tokio::test]
async fn oversized_order_body_is_413() {
    let app = spawn_app().await;
    let body = json!({"email": "a@b.co", "pack_id": "starter", "pad": "x".repeat(20_000)});
    let res = app.post_order(&body).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/no/such/thing", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let res = app
        .client
        .delete(format!("{}/api/packs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
}

#[tokio::test]
async fn health_and_readiness_answer_200_with_a_database() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn readiness_is_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    let mut conn = crate::helpers::admin_conn().await;
    use diesel_async::SimpleAsyncConnection;
    // Refuse new connections to this test database, then terminate every backend it has.
    // Two statements, two transactions: in one batch the ALTER would only take effect at
    // its commit, after the terminations, and a background task (the sandbox's delivery
    // worker polls) could connect in between and lend its live connection to the order.
    // The timeout makes each termination wait until that backend is gone.
    conn.batch_execute(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        app.db.name
    ))
    .await
    .unwrap();
    conn.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{}'",
        app.db.name
    ))
    .await
    .unwrap();
    drop(conn);
    let res = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let res = app
        .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "database_unavailable"
    );
}
