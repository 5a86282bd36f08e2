//! The reconciler heals lost webhooks through the same exactly-once path.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use paidonce::reconcile::reconcile_once;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs, stripe_error};

fn env_with(stripe: &StripeDouble) -> Vec<(&'static str, String)> {
    let mut env = stripe.env();
    env.push(("RECONCILE_AFTER_SECS", "0".into()));
    env
}

#[tokio::test]
async fn a_success_with_no_webhook_is_paid_after_one_pass_and_granted_once() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&env_with(&stripe))).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_status(pi, "succeeded");
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(
        (report.checked, report.changed.len(), report.errors),
        (1, 1, 0)
    );
    let id = order["id"].as_str().unwrap();
    assert_eq!(report.lines()[0], format!("order {id}: pending -> paid"));
    assert_eq!(
        report.lines()[1..],
        [
            "events: listed 0, applied 0, duplicate 0, errors 0",
            "reconciled: checked 1, changed 1, errors 0"
        ]
    );
    // A second pass and the late webhook change nothing.
    let again = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(again.changed.len(), 0);
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "noop"
    );
    assert_eq!(app.balance(&email).await, 100);
    let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
    assert_eq!(
        view["transitions"].as_array().unwrap().last().unwrap()["cause"],
        "reconciler"
    );
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn other_statuses_map_as_the_spec_says() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&env_with(&stripe))).await;
    let mut expected = Vec::new();
    for (status, want) in [
        ("processing", "processing"),
        ("canceled", "canceled"),
        ("requires_payment_method", "failed"),
        ("requires_action", "pending"),
    ] {
        let order = app.create_order(&unique_email(), "starter").await;
        stripe.set_status(order["payment_intent_id"].as_str().unwrap(), status);
        expected.push((order["id"].as_str().unwrap().to_owned(), want));
    }
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!((report.checked, report.changed.len()), (4, 3));
    for (id, want) in expected {
        assert_eq!(app.order_status(&id).await, want);
    }
}

#[tokio::test]
async fn young_orders_are_left_alone() {
    let stripe = StripeDouble::start().await;
    let mut env = stripe.env();
    env.push(("RECONCILE_AFTER_SECS", "600".into()));
    let app = spawn_app_with(&as_pairs(&env)).await;
    let order = app.create_order(&unique_email(), "starter").await;
    stripe.set_status(order["payment_intent_id"].as_str().unwrap(), "succeeded");
    assert_eq!(reconcile_once(&app.state, "test").await.unwrap().checked, 0);
    assert!(
        stripe
            .requests("GET", "/v1/payment_intents")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reconcilers_on_two_instances_ask_once_per_order_and_grant_once() {
    let stripe = StripeDouble::start().await;
    let env = env_with(&stripe);
    let a = spawn_app_with(&as_pairs(&env)).await;
    let b = spawn_app_on(Arc::clone(&a.db), &as_pairs(&env)).await;
    let email = unique_email();
    let orders = join_all((0..12).map(|_| a.create_order(&email, "starter"))).await;
    for o in &orders {
        stripe.set_status(o["payment_intent_id"].as_str().unwrap(), "succeeded");
    }
    let (ra, rb) = tokio::join!(
        reconcile_once(&a.state, "test"),
        reconcile_once(&b.state, "test")
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.checked + rb.checked,
        12,
        "each order checked by exactly one pass"
    );
    assert_eq!(ra.changed.len() + rb.changed.len(), 12);
    assert_eq!(
        stripe.requests("GET", "/v1/payment_intents").await.len(),
        12,
        "one retrieve per order"
    );
    assert_eq!(a.balance(&email).await, 1200);
    a.assert_money_invariant().await;
}

#[tokio::test]
async fn an_interrupted_creation_is_resumed_with_the_same_stripe_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(stripe_error(503))
        .up_to_n_times(4)
        .mount(&server)
        .await;
    let stripe = StripeDouble::on(server, Duration::ZERO).await;
    let app = spawn_app_with(&as_pairs(&env_with(&stripe))).await;
    let res = app
        .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
        .await;
    assert_eq!(res.status(), 502);
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!((report.checked, report.resumed, report.errors), (1, 1, 0));
    let creates = stripe.requests("POST", "/v1/payment_intents").await;
    let keys: std::collections::HashSet<_> = creates
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!((creates.len(), keys.len()), (5, 1));
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    assert_eq!(
        diesel::sql_query("SELECT 1 FROM orders WHERE payment_intent_id IS NOT NULL")
            .execute(&mut conn)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn provider_errors_are_counted_and_the_pass_goes_on() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&env_with(&stripe))).await;
    let good = app.create_order(&unique_email(), "starter").await;
    let lost = app.create_order(&unique_email(), "starter").await;
    stripe.set_status(good["payment_intent_id"].as_str().unwrap(), "succeeded");
    // The double forgets one intent: retrieving it answers 404.
    stripe
        .intents
        .lock()
        .unwrap()
        .objects
        .remove(lost["payment_intent_id"].as_str().unwrap());
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(
        (report.checked, report.changed.len(), report.errors),
        (2, 1, 1)
    );
    assert_eq!(app.order_status(good["id"].as_str().unwrap()).await, "paid");
}
