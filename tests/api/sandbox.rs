//! The sandbox provider: actions enqueue Stripe-shaped events that the delivery worker
//! posts, signed, to our own webhook, with each kind of delivery chaos.

use std::time::{Duration, Instant};

use paidonce::sandbox::{Action, Chaos, act};
use serde_json::Value;

use crate::helpers::*;

async fn wait_for_status(app: &TestApp, id: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = app.order_status(id).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} is {status}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the outbox is empty, so late chaos deliveries have landed too.
async fn wait_for_outbox(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut conn = app.state.db.get().await.unwrap();
        if paidonce::db::sandbox::pending_count(&mut conn)
            .await
            .unwrap()
            == 0
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox deliveries still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_success_is_delivered_and_granted_once_under_every_chaos() {
    let app = spawn_app().await;
    for chaos in [
        Chaos::None,
        Chaos::Duplicate,
        Chaos::Delay,
        Chaos::OutOfOrder,
    ] {
        let email = unique_email();
        let order = app.create_order(&email, "starter").await;
        let id = order["id"].as_str().unwrap();
        let pi = order["payment_intent_id"].as_str().unwrap();
        let acted = act(&app.state, pi, Action::Succeed, chaos).await.unwrap();
        assert!(
            acted
                .return_url
                .contains(&format!("/orders/{id}/status?payment_intent={pi}")),
            "{}",
            acted.return_url
        );
        assert!(acted.return_url.ends_with("redirect_status=succeeded"));
        wait_for_status(&app, id, "paid", Duration::from_secs(15)).await;
        wait_for_outbox(&app, Duration::from_secs(15)).await;
        assert_eq!(
            app.order_status(id).await,
            "paid",
            "{chaos:?}: a stale failure must not undo the payment"
        );
        assert_eq!(app.balance(&email).await, 100, "{chaos:?}");
        let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
        let expected_events = if chaos == Chaos::OutOfOrder { 2 } else { 1 };
        assert_eq!(
            view["events"].as_array().unwrap().len(),
            expected_events,
            "{chaos:?}: {view}"
        );
    }
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn sandbox_failure_and_cancel_settle_their_orders_and_a_settled_intent_refuses_more() {
    let app = spawn_app().await;
    let failed_order = app.create_order(&unique_email(), "starter").await;
    let pi = failed_order["payment_intent_id"].as_str().unwrap();
    act(&app.state, pi, Action::Fail, Chaos::None)
        .await
        .unwrap();
    wait_for_status(
        &app,
        failed_order["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(10),
    )
    .await;
    // A failed intent may still be paid, as with Stripe.
    act(&app.state, pi, Action::Succeed, Chaos::None)
        .await
        .unwrap();
    wait_for_status(
        &app,
        failed_order["id"].as_str().unwrap(),
        "paid",
        Duration::from_secs(10),
    )
    .await;
    let err = act(&app.state, pi, Action::Cancel, Chaos::None)
        .await
        .err()
        .expect("a succeeded intent cannot be canceled");
    assert_eq!(err.code(), "payment_intent_settled");

    // A stale earlier failure after a failure leaves it failed (not stuck in processing).
    let stale = app.create_order(&unique_email(), "starter").await;
    act(
        &app.state,
        stale["payment_intent_id"].as_str().unwrap(),
        Action::Fail,
        Chaos::OutOfOrder,
    )
    .await
    .unwrap();
    wait_for_outbox(&app, Duration::from_secs(10)).await;
    assert_eq!(
        app.order_status(stale["id"].as_str().unwrap()).await,
        "failed"
    );

    let canceled = app.create_order(&unique_email(), "starter").await;
    act(
        &app.state,
        canceled["payment_intent_id"].as_str().unwrap(),
        Action::Cancel,
        Chaos::None,
    )
    .await
    .unwrap();
    wait_for_status(
        &app,
        canceled["id"].as_str().unwrap(),
        "canceled",
        Duration::from_secs(10),
    )
    .await;
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn unknown_sandbox_intents_are_not_found() {
    let app = spawn_app().await;
    for pi in ["pi_sandbox_nope", "../etc/passwd", ""] {
        let err = act(&app.state, pi, Action::Succeed, Chaos::None)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "not_found", "{pi}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn try_again_after_a_decline_pays_the_same_order_with_the_same_payment_intent() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    act(&app.state, pi, Action::Fail, Chaos::None)
        .await
        .unwrap();
    wait_for_status(&app, id, "failed", Duration::from_secs(10)).await;
    // The failed page's "Try again" is this order's pay page, not a new checkout.
    let html = app.get_text(&format!("/orders/{id}/status")).await;
    assert!(
        html.contains(&format!("href=\"/orders/{id}/pay\"")),
        "try again on the same order"
    );
    let pay = app
        .client
        .get(format!("{}/orders/{id}/pay", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(pay.status(), 303);
    assert_eq!(
        pay.headers()["location"],
        format!("/sandbox/pay/{pi}").as_str()
    );
    act(&app.state, pi, Action::Succeed, Chaos::None)
        .await
        .unwrap();
    wait_for_status(&app, id, "paid", Duration::from_secs(10)).await;
    assert_eq!(app.balance(&email).await, 100);
    let mut conn = app.db.conn().await;
    use diesel_async::RunQueryDsl;
    let orders = diesel::sql_query("SELECT 1 FROM orders")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(orders, 1, "one order for one purchase");
    app.assert_money_invariant().await;
}
