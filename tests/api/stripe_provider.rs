//! The Stripe adapter against a double behind STRIPE_API_BASE: retries, keys, errors.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs, stripe_error};

async fn double_failing_first(status: u16, times: u64) -> StripeDouble {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(stripe_error(status))
        .up_to_n_times(times)
        .mount(&server)
        .await;
    StripeDouble::on(server, Duration::ZERO).await
}

#[tokio::test]
async fn the_intent_is_created_with_amount_currency_metadata_and_the_order_key() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let email = unique_email();
    let order = app.create_order(&email, "pro").await;
    let creates = stripe.requests("POST", "/v1/payment_intents").await;
    assert_eq!(creates.len(), 1);
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&creates[0].body)
            .into_owned()
            .collect();
    assert_eq!(
        form["receipt_email"], email,
        "Stripe e-mails its own receipt"
    );
    assert_eq!(form["amount"], "5000");
    assert_eq!(form["currency"], "usd");
    assert_eq!(form["metadata[order_id]"], order["id"].as_str().unwrap());
    assert_eq!(form["automatic_payment_methods[enabled]"], "true");
    assert_eq!(
        creates[0].headers["idempotency-key"],
        format!("paidonce-order-{}", order["id"].as_str().unwrap()).as_str()
    );
    assert_eq!(creates[0].headers["authorization"], "Bearer sk_test_double");
    assert!(
        order["payment_intent_id"]
            .as_str()
            .unwrap()
            .starts_with("pi_double_")
    );
}

#[tokio::test]
async fn two_500s_then_success_make_one_intent_with_one_key() {
    let stripe = double_failing_first(500, 2).await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    app.create_order(&unique_email(), "starter").await;
    let creates = stripe.requests("POST", "/v1/payment_intents").await;
    assert_eq!(creates.len(), 3);
    let keys: std::collections::HashSet<_> = creates
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(stripe.intents.lock().unwrap().objects.len(), 1);
}

#[tokio::test]
async fn a_429_is_retried() {
    let stripe = double_failing_first(429, 1).await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        stripe.requests("POST", "/v1/payment_intents").await.len(),
        2
    );
}

#[tokio::test]
async fn a_4xx_is_not_retried_answers_502_provider_refused_and_cancels_the_order() {
    let stripe = double_failing_first(400, 10).await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let res = app
        .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
        .await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{body}"
    );
    assert_eq!(
        stripe.requests("POST", "/v1/payment_intents").await.len(),
        1
    );
    // Stripe keeps the 4xx under the order's key, so the order can never be paid: it is
    // canceled, with the provider's reason on its timeline, and nothing is payable.
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        cause: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        payable: bool,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT o.status, t.cause, (o.payment_intent_id IS NOT NULL OR o.client_secret IS NOT NULL) AS payable \
         FROM orders o JOIN order_transitions t ON t.order_id = o.id AND t.to_status = o.status",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "canceled");
    assert!(!rows[0].payable);
    assert!(
        rows[0]
            .cause
            .starts_with("provider_refused (400): double says 400"),
        "{}",
        rows[0].cause
    );
}

#[tokio::test]
async fn stripe_down_is_502_and_leaves_nothing_payable() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn_app_with(&[
        ("STRIPE_SECRET_KEY", "sk_test_x"),
        ("STRIPE_API_BASE", &format!("http://{closed}")),
    ])
    .await;
    let res = app
        .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
        .await;
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_unavailable");
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    let payable = diesel::sql_query(
        "SELECT 1 FROM orders WHERE payment_intent_id IS NOT NULL OR client_secret IS NOT NULL",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        payable, 0,
        "no order with an intent a shopper could confirm"
    );
}

#[tokio::test]
async fn a_lean_or_newer_payment_intent_shape_is_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_lean", "amount": 500, "currency": "usd", "status": "requires_payment_method",
            "client_secret": "pi_lean_secret_x", "a_field_from_2099": {"x": 1}
        })))
        .mount(&server)
        .await;
    let app = spawn_app_with(&[
        ("STRIPE_SECRET_KEY", "sk_test_x"),
        ("STRIPE_API_BASE", &server.uri()),
    ])
    .await;
    let order = app.create_order(&unique_email(), "starter").await;
    assert_eq!(order["payment_intent_id"], "pi_lean");
}

#[tokio::test]
async fn an_intent_for_the_wrong_amount_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_evil", "amount": 1, "currency": "usd", "status": "requires_payment_method", "client_secret": "s"
        })))
        .mount(&server)
        .await;
    let app = spawn_app_with(&[
        ("STRIPE_SECRET_KEY", "sk_test_x"),
        ("STRIPE_API_BASE", &server.uri()),
    ])
    .await;
    let res = app
        .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
        .await;
    assert_eq!(res.status(), 502);
}

#[tokio::test]
async fn livemode_contradicting_the_key_is_a_mismatch() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["livemode"] = json!(true);
    assert_eq!(app.deliver(&event).await, (200, "mismatch".into()));
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "needs_review"
    );
}

#[tokio::test]
async fn livemode_contradicting_the_key_is_a_mismatch_even_for_an_unknown_order() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["livemode"] = json!(true);
    event["data"]["object"]["metadata"] = json!({});
    event["data"]["object"]["id"] = json!("pi_nobody_knows");
    assert_eq!(app.deliver(&event).await, (200, "mismatch".into()));
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn stripe_receipts_can_be_turned_off() {
    let stripe = StripeDouble::start().await;
    let settings = stripe.env();
    let mut env = as_pairs(&settings);
    env.push(("STRIPE_RECEIPT_EMAIL", "false"));
    let app = spawn_app_with(&env).await;
    app.create_order(&unique_email(), "starter").await;
    let creates = stripe.requests("POST", "/v1/payment_intents").await;
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&creates[0].body)
            .into_owned()
            .collect();
    assert!(!form.contains_key("receipt_email"), "{form:?}");
}
