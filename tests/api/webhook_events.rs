//! Each outcome and the out-of-order sequences of SPEC §5, over real HTTP.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn success_pays_the_order_once_and_a_redelivery_is_a_duplicate() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let event = succeeded(&new_event_id(), &order);
    assert_eq!(app.deliver(&event).await, (200, "applied".into()));
    assert_eq!(app.deliver(&event).await, (200, "duplicate".into()));
    // The same fact under a new event id (Stripe resending) changes nothing either.
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await,
        (200, "noop".into())
    );
    let o: Value = app
        .get_order(order["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(o["status"], "paid");
    assert!(o["paid_at"].is_string());
    assert_eq!(app.balance(&email).await, 100);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn the_receipt_has_the_spec_shape() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = new_event_id();
    let body: Value = app
        .post_webhook(&succeeded(&id, &order))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"received": true, "event_id": id, "outcome": "applied"})
    );
}

#[tokio::test]
async fn unknown_types_thin_events_connect_events_and_unknown_orders_answer_200() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut connect = succeeded(&new_event_id(), &order);
    connect["account"] = json!("acct_123");
    let stranger = json!({"id": "pi_not_ours", "payment_intent_id": "pi_not_ours", "amount": 500, "currency": "usd"});
    let mut unknown = succeeded(&new_event_id(), &stranger);
    unknown["data"]["object"]["metadata"] = json!({});
    let cases = [
        (
            json!({"id": new_event_id(), "type": "brand_new.thing_happened", "data": {"object": {"x": 1}}}),
            "ignored",
        ),
        (
            json!({"id": new_event_id(), "object": "event", "type": "payment_intent.succeeded", "data": {}}),
            "ignored",
        ),
        (
            json!({"id": new_event_id(), "type": "payment_intent.succeeded", "related_object": {"id": "pi_1"}}),
            "ignored",
        ),
        (
            // A thin event as Stripe's v2 event destinations send it.
            json!({
                "id": new_event_id(),
                "object": "v2.core.event",
                "type": "v1.billing.meter.error_report_triggered",
                "created": "2026-11-23T10:00:00.000Z",
                "livemode": false,
                "related_object": {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_1"},
                "reason": null
            }),
            "ignored",
        ),
        (connect, "ignored"),
        (unknown, "unknown_order"),
    ];
    for (event, outcome) in cases {
        assert_eq!(
            app.deliver(&event).await,
            (200, outcome.to_owned()),
            "{event}"
        );
    }
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
    // Every verified event is stored once, with its outcome.
    let events: Vec<Value> = app.admin_json("/admin/api/events").await;
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(|e| e["outcome"].is_string()));
}

#[tokio::test]
async fn a_newer_api_version_with_extra_fields_still_applies() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["api_version"] = json!("2099-01-01.future");
    event["brand_new_envelope_field"] = json!({"nested": [1, 2]});
    event["data"]["object"]["brand_new_object_field"] = json!("x");
    event["data"]["object"]["status"] = json!("some_future_status");
    assert_eq!(app.deliver(&event).await, (200, "applied".into()));
}

#[tokio::test]
async fn malformed_events_are_400_and_not_stored() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut wrong_shape = succeeded(&new_event_id(), &order);
    wrong_shape["data"]["object"]["amount_received"] = json!("500");
    let mut not_object = succeeded(&new_event_id(), &order);
    not_object["data"]["object"] = json!("pi_123");
    let mut bad_refund = refunded(&new_event_id(), &order, 100);
    bad_refund["data"]["object"]["amount_refunded"] = json!(null);
    // Valid JSON that Postgres cannot store (no NUL in text or jsonb): refused up front,
    // not a 500 from the insert.
    let mut nul_value = succeeded(&new_event_id(), &order);
    nul_value["data"]["object"]["description"] = json!("a\u{0}b");
    let mut nul_key = succeeded(&new_event_id(), &order);
    nul_key["data"]["object"]["metadata"]["k\u{0}"] = json!("v");
    for (body, why) in [
        (b"not json".to_vec(), "not JSON"),
        (b"[1,2]".to_vec(), "not an object"),
        (br#"{"type":"payment_intent.succeeded"}"#.to_vec(), "no id"),
        (br#"{"id":"evt_1"}"#.to_vec(), "no type"),
        (
            serde_json::to_vec(&wrong_shape).unwrap(),
            "amount_received is a string",
        ),
        (
            serde_json::to_vec(&not_object).unwrap(),
            "object is a string",
        ),
        (
            serde_json::to_vec(&bad_refund).unwrap(),
            "refund without amount_refunded",
        ),
        (serde_json::to_vec(&nul_value).unwrap(), "NUL in a string"),
        (serde_json::to_vec(&nul_key).unwrap(), "NUL in a key"),
    ] {
        let header = paidonce::webhook::signature::header(
            WEBHOOK_SECRET,
            chrono::Utc::now().timestamp(),
            &body,
        );
        let res = app.post_webhook_raw(body, Some(&header)).await;
        assert_eq!(res.status(), 400, "{why}");
        assert!(
            res.json::<Value>().await.unwrap()["error"]["code"].is_string(),
            "{why}"
        );
    }
    let events: Vec<Value> = app.admin_json("/admin/api/events").await;
    assert!(events.is_empty());
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn amount_or_currency_contradictions_send_the_order_to_review_without_credits() {
    let app = spawn_app().await;
    let email = unique_email();
    for tweak in ["amount", "currency", "other_intent"] {
        let order = app.create_order(&email, "starter").await;
        let mut event = succeeded(&new_event_id(), &order);
        match tweak {
            "amount" => event["data"]["object"]["amount_received"] = json!(499),
            "currency" => event["data"]["object"]["currency"] = json!("eur"),
            _ => event["data"]["object"]["id"] = json!("pi_someone_else"),
        }
        assert_eq!(
            app.deliver(&event).await,
            (200, "mismatch".into()),
            "{tweak}"
        );
        assert_eq!(
            app.order_status(order["id"].as_str().unwrap()).await,
            "needs_review",
            "{tweak}"
        );
    }
    assert_eq!(app.balance(&email).await, 0);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn currency_compares_case_insensitively() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["data"]["object"]["currency"] = json!("USD");
    assert_eq!(app.deliver(&event).await, (200, "applied".into()));
}

#[tokio::test]
async fn amount_is_used_when_amount_received_is_absent() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["data"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("amount_received");
    assert_eq!(app.deliver(&event).await, (200, "applied".into()));
}

#[tokio::test]
async fn a_failure_then_a_success_pays() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.deliver(&failed(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "failed");
    assert_eq!(
        app.deliver(&pi_event(
            &new_event_id(),
            "payment_intent.processing",
            &order,
            "processing",
            0
        ))
        .await
        .1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "processing");
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "paid");
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn stale_failures_and_cancellations_after_a_success_change_nothing() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        app.deliver(&failed(&new_event_id(), &order)).await.1,
        "noop"
    );
    let cancel = pi_event(
        &new_event_id(),
        "payment_intent.canceled",
        &order,
        "canceled",
        0,
    );
    assert_eq!(app.deliver(&cancel).await.1, "noop");
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "paid"
    );
    assert_eq!(app.balance(&email).await, 100);
}

#[tokio::test]
async fn a_success_after_a_local_cancel_goes_to_review() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let cancel = pi_event(
        &new_event_id(),
        "payment_intent.canceled",
        &order,
        "canceled",
        0,
    );
    assert_eq!(app.deliver(&cancel).await.1, "applied");
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "mismatch"
    );
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "needs_review"
    );
    assert_eq!(app.balance(&email).await, 0);
}

#[tokio::test]
async fn partial_then_full_refunds_each_delivered_twice_revoke_exactly_once() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "standard").await; // 550 credits for 2500
    let id = order["id"].as_str().unwrap();
    app.deliver(&succeeded(&new_event_id(), &order)).await;
    let partial = refunded(&new_event_id(), &order, 1000);
    assert_eq!(app.deliver(&partial).await.1, "applied");
    assert_eq!(app.deliver(&partial).await.1, "duplicate");
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 1000))
            .await
            .1,
        "noop",
        "same total, new event id"
    );
    assert_eq!(app.order_status(id).await, "partially_refunded");
    assert_eq!(app.balance(&email).await, 550 - 220);
    let full = refunded(&new_event_id(), &order, 2500);
    assert_eq!(app.deliver(&full).await.1, "applied");
    assert_eq!(app.deliver(&full).await.1, "duplicate");
    assert_eq!(
        app.deliver(&partial).await.1,
        "duplicate",
        "a late partial changes nothing"
    );
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 1000))
            .await
            .1,
        "noop",
        "a stale lower total changes nothing"
    );
    assert_eq!(app.order_status(id).await, "refunded");
    assert_eq!(app.balance(&email).await, 0);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_refund_seen_before_the_success_takes_effect_when_it_arrives() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 250)).await.1,
        "applied"
    );
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "partially_refunded"
    );
    assert_eq!(app.balance(&email).await, 50);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn disputes_keep_credits_and_a_later_refund_moves_on() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let id = order["id"].as_str().unwrap();
    app.deliver(&succeeded(&new_event_id(), &order)).await;
    assert_eq!(
        app.deliver(&disputed(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "disputed");
    assert_eq!(app.balance(&email).await, 100);
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 500)).await.1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "refunded");
    assert_eq!(app.balance(&email).await, 0);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_dispute_seen_before_the_success_lands_the_order_disputed() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    assert_eq!(
        app.deliver(&disputed(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "disputed"
    );
    assert_eq!(app.balance(&email).await, 100);
}

#[tokio::test]
async fn an_event_matched_by_payment_intent_alone_applies() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["data"]["object"]["metadata"] = json!({});
    assert_eq!(app.deliver(&event).await.1, "applied");
}

#[tokio::test]
async fn the_admin_order_view_shows_transitions_events_and_ledger() {
    let app = spawn_app().await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let event_id = new_event_id();
    app.deliver(&succeeded(&event_id, &order)).await;
    let view: Value = app
        .admin_get(&format!(
            "/admin/api/orders/{}",
            order["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["email"], email.as_str());
    let last = view["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["from"].as_str(),
            last["to"].as_str(),
            last["cause"].as_str()
        ),
        (Some("pending"), Some("paid"), Some(event_id.as_str()))
    );
    assert_eq!(view["events"][0]["event_id"], event_id.as_str());
    assert_eq!(view["events"][0]["outcome"], "applied");
    assert_eq!(view["ledger"][0]["delta"], 100);
    let account: Value = app
        .admin_get(&format!("/admin/api/accounts/{}", email.to_uppercase()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["balance"], 100);
    assert_eq!(account["ledger"].as_array().unwrap().len(), 1);
    let applied: Vec<Value> = app
        .admin_json("/admin/api/events?outcome=applied&type=payment_intent.succeeded")
        .await;
    assert_eq!(applied.len(), 1);
    let none: Vec<Value> = app.admin_json("/admin/api/events?outcome=mismatch").await;
    assert!(none.is_empty());
    let nul = app.admin_get("/admin/api/events?outcome=applied%00").await;
    assert_eq!(nul.status().as_u16(), 400);
    let body: Value = nul.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_filter");
}

#[tokio::test]
async fn admin_api_needs_the_password() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/admin/api/events", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("www-authenticate").is_some());
    let res = app
        .client
        .get(format!("{}/admin/api/events", app.address))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// The money checker itself: a grant written while the order is in review is caught,
/// even with the provider's record saying paid, and even though the grant comes after
/// the review by any clock (the check reads the grant's own transaction).
#[tokio::test]
async fn the_checker_catches_a_grant_made_while_in_review() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["data"]["object"]["amount_received"] = json!(499);
    assert_eq!(app.deliver(&event).await, (200, "mismatch".into()));
    app.assert_money_invariant().await;

    // What a bug granting in review would leave: the provider paid, a grant, no paid move.
    let (id, pi) = (
        order["id"].as_str().unwrap().to_owned(),
        order["payment_intent_id"].as_str().unwrap().to_owned(),
    );
    let mut conn = app.db.conn().await;
    for sql in [
        format!("UPDATE sandbox_payment_intents SET status = 'succeeded' WHERE id = '{pi}'"),
        format!("UPDATE orders SET paid_at = now() WHERE id = '{id}'"),
        format!(
            "INSERT INTO ledger (account_id, order_id, kind, delta, refund_total, cause) \
             SELECT account_id, id, 'grant', credits, 0, 'planted' FROM orders WHERE id = '{id}'"
        ),
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap();
    }
    let db = app.db.clone();
    let checked = tokio::spawn(async move { assert_money_invariant(&db).await }).await;
    let panic = checked.expect_err("the checker must refuse a grant made in review");
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("credits granted while in review"),
        "{message}"
    );
}
