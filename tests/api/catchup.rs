//! Event catch-up (SPEC §6): events that were never delivered are listed from the
//! provider and applied once, through the webhook's own transaction.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use paidonce::reconcile::reconcile_once;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs};

/// Records the success, a refund and a dispute of a new order as made by Stripe but
/// never delivered; returns (order, the three events).
async fn lost_lifecycle(app: &TestApp, stripe: &StripeDouble) -> (Value, Vec<Value>) {
    let order = app.create_order(&unique_email(), "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap().to_owned();
    stripe.set_status(&pi, "succeeded");
    let intent = stripe.intents.lock().unwrap().objects[&pi].clone();
    let charge = intent["latest_charge"].as_str().unwrap().to_owned();
    let success = stripe_event("payment_intent.succeeded", intent);
    stripe.set_amount_refunded(&charge, 250);
    let refund = stripe_event("charge.refunded", stripe.charge_of(&pi));
    let dispute = stripe_event(
        "charge.dispute.created",
        dispute_object(&charge, None, 250, "needs_response"),
    );
    let events = vec![success, refund, dispute];
    for e in &events {
        stripe.record_event(e);
    }
    (order, events)
}

#[tokio::test]
async fn lost_success_refund_and_dispute_are_applied_by_one_pass_and_never_twice() {
    // Arrange
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let (order, events) = lost_lifecycle(&app, &stripe).await;
    let id = order["id"].as_str().unwrap();

    // Act
    let report = reconcile_once(&app.state, "test").await.unwrap();

    // Assert: all three applied once (the order sweep waits RECONCILE_AFTER_SECS, so the
    // catch-up alone paid it), and the order line is printed.
    let lines = report.lines();
    assert_eq!(
        lines,
        [
            format!("order {id}: pending -> partially_refunded"),
            "events: listed 3, applied 3, duplicate 0, errors 0".into(),
            "reconciled: checked 0, changed 1, errors 0".into(),
        ]
    );
    assert_eq!(app.order_status(id).await, "partially_refunded");
    // A second pass and late deliveries change nothing.
    let again = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(
        again.events.line(),
        "events: listed 3, applied 0, duplicate 3, errors 0"
    );
    for e in &events {
        assert_eq!(app.deliver(e).await.1, "duplicate");
    }
    let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
    let deltas: Vec<i64> = view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["delta"].as_i64().unwrap())
        .collect();
    assert_eq!(deltas, [100, -50], "one grant, one revocation");
    let dashboard = app.admin_text("/admin").await;
    assert!(
        dashboard.contains("listed 3, applied 0, duplicate 3, errors 0"),
        "the dashboard shows the last catch-up"
    );
    // The catch-up asked for the listed types only, 100 a page.
    let listed = stripe.requests("GET", "/v1/events").await;
    let query: Vec<(String, String)> = listed[0].url.query_pairs().into_owned().collect();
    assert!(query.contains(&("types[]".into(), "charge.dispute.closed".into())));
    assert!(query.contains(&("limit".into(), "100".into())));
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn the_catch_up_pages_through_every_event_and_its_cursor_survives_a_restart() {
    // Arrange: 230 events (three pages) for 115 orders: success and a full refund each.
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let mut ids = Vec::new();
    for _ in 0..115 {
        let order = app.create_order(&unique_email(), "starter").await;
        let pi = order["payment_intent_id"].as_str().unwrap().to_owned();
        stripe.set_status(&pi, "succeeded");
        let intent = stripe.intents.lock().unwrap().objects[&pi].clone();
        let charge = intent["latest_charge"].as_str().unwrap().to_owned();
        stripe.record_event(&stripe_event("payment_intent.succeeded", intent));
        stripe.set_amount_refunded(&charge, 500);
        stripe.record_event(&stripe_event("charge.refunded", stripe.charge_of(&pi)));
        ids.push(order["id"].as_str().unwrap().to_owned());
    }

    // Act
    let report = reconcile_once(&app.state, "test").await.unwrap();

    // Assert
    assert_eq!(
        report.events.line(),
        "events: listed 230, applied 230, duplicate 0, errors 0"
    );
    assert_eq!(stripe.requests("GET", "/v1/events").await.len(), 3);
    for id in &ids {
        assert_eq!(app.order_status(id).await, "refunded");
    }
    // Another instance (a restart) lists from the stored cursor, less the overlap, not
    // from three days back.
    let newest = stripe.intents.lock().unwrap().events.last().unwrap()["created"]
        .as_i64()
        .unwrap();
    let other = spawn_app_on(app.db.clone(), &as_pairs(&stripe.env())).await;
    reconcile_once(&other.state, "test").await.unwrap();
    let last = stripe.requests("GET", "/v1/events").await.pop().unwrap();
    let gte: i64 = last
        .url
        .query_pairs()
        .find(|(k, _)| k == "created[gte]")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(gte, newest - paidonce::catchup::OVERLAP_SECS);
    app.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_catching_up_at_once_apply_each_event_once() {
    // A slow event list, so both passes overlap.
    let stripe = StripeDouble::start_with_delay(Duration::from_millis(300)).await;
    let db = Arc::new(TestDb::new().await);
    let a = spawn_app_on(db.clone(), &as_pairs(&stripe.env())).await;
    let b = spawn_app_on(db.clone(), &as_pairs(&stripe.env())).await;
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(lost_lifecycle(&a, &stripe).await.0);
    }
    let reports = join_all([
        reconcile_once(&a.state, "test"),
        reconcile_once(&b.state, "test"),
        reconcile_once(&a.state, "test"),
    ])
    .await;
    let applied: i32 = reports
        .iter()
        .map(|r| r.as_ref().unwrap().events.counts.applied)
        .sum();
    assert_eq!(applied, 15, "each of the 15 events applied once");
    for o in &orders {
        assert_eq!(
            a.order_status(o["id"].as_str().unwrap()).await,
            "partially_refunded"
        );
    }
    a.assert_money_invariant().await;
}

#[tokio::test]
async fn an_event_list_that_fails_keeps_the_cursor_and_the_last_line_clean() {
    let stripe = StripeDouble::start().await;
    // An answer that is not an event list at all.
    wiremock::Mock::given(wiremock::matchers::path("/v1/events"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"nope": 1})))
        .with_priority(1)
        .mount(&stripe.server)
        .await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(
        report.lines(),
        [
            "events: listed 0, applied 0, duplicate 0, errors 1",
            "reconciled: checked 0, changed 0, errors 0"
        ]
    );
    let mut conn = app.state.db.get().await.unwrap();
    let last = paidonce::db::catchup::last(&mut conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        last.cursor_created, None,
        "nothing listed: the cursor stays"
    );
    assert!(last.last_error.unwrap().contains("listing events"));
}

#[tokio::test]
async fn the_sandbox_lists_its_own_events_including_undelivered_ones() {
    use paidonce::sandbox::{Action, Chaos, act};
    let app = spawn_app_with(&[("RECONCILE_INTERVAL_SECS", "0")]).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    // Delayed delivery: the catch-up finds the event before the sandbox posts it.
    act(&app.state, pi, Action::Succeed, Chaos::Delay)
        .await
        .unwrap();
    let report = reconcile_once(&app.state, "test").await.unwrap();
    assert_eq!(
        report.events.line(),
        "events: listed 1, applied 1, duplicate 0, errors 0"
    );
    assert_eq!(app.order_status(id).await, "paid");
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn an_event_that_cannot_be_parsed_is_skipped_recorded_and_the_pass_goes_on() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let (order, _) = lost_lifecycle(&app, &stripe).await;
    // A handled type whose object has the wrong shape, listed after the three good ones.
    let mut broken = stripe_event(
        "charge.refunded",
        json!({"id": "ch_broken", "object": "charge"}),
    );
    broken["created"] = json!(chrono::Utc::now().timestamp() + 1);
    stripe.record_event(&broken);

    let report = reconcile_once(&app.state, "test").await.unwrap();

    assert_eq!(
        report.events.line(),
        "events: listed 4, applied 3, duplicate 0, errors 1"
    );
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "partially_refunded"
    );
    let mut conn = app.state.db.get().await.unwrap();
    let last = paidonce::db::catchup::last(&mut conn)
        .await
        .unwrap()
        .unwrap();
    let error = last.last_error.unwrap();
    assert!(error.contains(broken["id"].as_str().unwrap()), "{error}");
    // Skipped for good: the cursor moved past it rather than stopping before it.
    assert_eq!(last.cursor_created, broken["created"].as_i64());
}
