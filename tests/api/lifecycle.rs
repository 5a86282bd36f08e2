//! The money lifecycle off the happy path: disputes that end, refunds that fail, events
//! that name only a charge, and contradicting objects (SPEC §3, §5).

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs};

/// A paid order on an app talking to the Stripe double: (app, double, order, charge id).
async fn paid_order() -> (TestApp, StripeDouble, Value, String) {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap().to_owned();
    stripe.set_status(&pi, "succeeded");
    let intent = stripe.intents.lock().unwrap().objects[&pi].clone();
    let charge = intent["latest_charge"].as_str().unwrap().to_owned();
    assert_eq!(
        app.deliver(&stripe_event("payment_intent.succeeded", intent))
            .await,
        (200, "applied".into())
    );
    (app, stripe, order, charge)
}

async fn ledger(app: &TestApp, order_id: &str) -> Vec<(String, i64)> {
    let view: Value = app
        .admin_json(&format!("/admin/api/orders/{order_id}"))
        .await;
    view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["delta"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_lost_dispute_revokes_what_the_refunds_left_once() {
    // Arrange: paid (100 credits for 500), then half refunded.
    let (app, stripe, order, charge) = paid_order().await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_amount_refunded(&charge, 250);
    let refunded = stripe_event("charge.refunded", stripe.charge_of(pi));
    assert_eq!(app.deliver(&refunded).await.1, "applied");
    let created = stripe_event(
        "charge.dispute.created",
        dispute_object(&charge, Some(pi), 250, "needs_response"),
    );
    assert_eq!(app.deliver(&created).await.1, "applied");
    assert_eq!(app.order_status(id).await, "partially_refunded");

    // Act: the dispute closes lost, delivered twice and once more under a new id.
    let mut lost_object = created["data"]["object"].clone();
    lost_object["status"] = json!("lost");
    let lost = stripe_event("charge.dispute.closed", lost_object);
    let outcomes = join_all([app.deliver(&lost), app.deliver(&lost)]).await;
    let mut again = lost.clone();
    again["id"] = json!(new_event_id());
    let resent = app.deliver(&again).await;

    // Assert: one revocation of the 50 credits the refund left, never more than granted.
    let mut got: Vec<String> = outcomes.into_iter().map(|(_, o)| o).collect();
    got.sort();
    assert_eq!(got, ["applied", "duplicate"]);
    assert_eq!(resent.1, "noop");
    assert_eq!(app.order_status(id).await, "dispute_lost");
    assert_eq!(
        ledger(&app, id).await,
        [
            ("grant".into(), 100),
            ("refund".into(), -50),
            ("dispute".into(), -50)
        ]
    );
    // A late full refund takes nothing more.
    stripe.set_amount_refunded(&charge, 500);
    let full = stripe_event("charge.refunded", stripe.charge_of(pi));
    assert_eq!(app.deliver(&full).await.1, "applied");
    assert_eq!(app.order_status(id).await, "dispute_lost");
    assert_eq!(ledger(&app, id).await.len(), 3);
    // The operator and the shopper read what happened in plain words.
    let admin = app.admin_text(&format!("/admin/orders/{id}")).await;
    for words in [
        "lost: every remaining credit taken back",
        "-50 credits, taken back: the dispute was lost (dispute)",
        "dispute closed: charge.dispute.closed (applied)",
    ] {
        assert!(admin.contains(words), "admin order page lacks {words:?}");
    }
    let shopper = app.get_text(&format!("/orders/{id}/status")).await;
    assert!(shopper.contains("The dispute on this payment was lost."));
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_won_dispute_restores_the_status_and_keeps_the_credits() {
    let (app, _stripe, order, charge) = paid_order().await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    let email_balance = || async {
        let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
        view["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["delta"].as_i64().unwrap())
            .sum::<i64>()
    };
    let dispute = dispute_object(&charge, Some(pi), 500, "warning_needs_response");
    assert_eq!(
        app.deliver(&stripe_event("charge.dispute.created", dispute.clone()))
            .await
            .1,
        "applied"
    );
    assert_eq!(app.order_status(id).await, "disputed");
    for (status, outcome) in [("won", "applied"), ("lost", "noop")] {
        let mut closed = dispute.clone();
        closed["status"] = json!(status);
        assert_eq!(
            app.deliver(&stripe_event("charge.dispute.closed", closed))
                .await
                .1,
            outcome,
            "{status}"
        );
        assert_eq!(app.order_status(id).await, "paid");
        assert_eq!(email_balance().await, 100);
    }
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_refund_that_fails_after_a_full_refund_gives_the_credits_back_once() {
    // Arrange: paid, then fully refunded (the event made "earlier").
    let (app, stripe, order, charge) = paid_order().await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_amount_refunded(&charge, 500);
    let mut refunded = stripe_event("charge.refunded", stripe.charge_of(pi));
    refunded["created"] = json!(chrono::Utc::now().timestamp() - 60);
    assert_eq!(app.deliver(&refunded).await.1, "applied");
    assert_eq!(app.order_status(id).await, "refunded");
    assert_eq!(ledger(&app, id).await.iter().map(|e| e.1).sum::<i64>(), 0);

    // Act: the refund fails at the bank; Stripe sends three events about it, made a
    // second apart, so each later one finds the same total at a later time.
    stripe.set_amount_refunded(&charge, 0);
    let failed = refund_object(&charge, pi, 500, "failed");
    let made = chrono::Utc::now().timestamp();
    let event = |event_type, after: i64| {
        let mut e = stripe_event(event_type, failed.clone());
        e["created"] = json!(made + after);
        e
    };
    let outcomes = [
        app.deliver(&event("charge.refund.updated", 0)).await,
        app.deliver(&event("refund.updated", 1)).await,
        app.deliver(&event("refund.failed", 2)).await,
    ];

    // Assert: credits come back once, the later events are noops (they only move the
    // sync's time on, which nobody sees), the status follows, and the stale refund
    // event, redelivered under a new id, takes nothing again.
    assert_eq!(
        outcomes.map(|o| o.1),
        ["applied".to_owned(), "noop".into(), "noop".into()]
    );
    assert_eq!(app.order_status(id).await, "paid");
    let mut stale = refunded.clone();
    stale["id"] = json!(new_event_id());
    assert_eq!(app.deliver(&stale).await.1, "noop");
    assert_eq!(
        ledger(&app, id).await,
        [
            ("grant".into(), 100),
            ("refund".into(), -100),
            ("refund".into(), 100)
        ]
    );
    assert_eq!(
        stripe.requests("GET", "/v1/charges/").await.len(),
        3,
        "each failure asks for the charge's refund total"
    );
    let admin = app.admin_text(&format!("/admin/orders/{id}")).await;
    assert!(admin.contains("+100 credits, given back: a refund failed or was canceled"));
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_dispute_with_no_payment_intent_finds_its_order_through_the_charge() {
    // A charge seen on the success: found without asking Stripe.
    let (app, stripe, order, charge) = paid_order().await;
    let id = order["id"].as_str().unwrap();
    let known = stripe_event(
        "charge.dispute.created",
        dispute_object(&charge, None, 500, "needs_response"),
    );
    assert_eq!(app.deliver(&known).await.1, "applied");
    assert_eq!(app.order_status(id).await, "disputed");
    assert!(stripe.requests("GET", "/v1/charges/").await.is_empty());

    // A charge paidonce never saw (its success came through the reconciler): Stripe is
    // asked for the charge's PaymentIntent.
    let second = app.create_order(&unique_email(), "starter").await;
    let pi2 = second["payment_intent_id"].as_str().unwrap();
    stripe.set_status(pi2, "succeeded");
    let intent = stripe.intents.lock().unwrap().objects[pi2].clone();
    let mut lean = intent.clone();
    lean.as_object_mut().unwrap().remove("latest_charge");
    assert_eq!(
        app.deliver(&stripe_event("payment_intent.succeeded", lean))
            .await
            .1,
        "applied"
    );
    let charge2 = intent["latest_charge"].as_str().unwrap();
    let dispute = stripe_event(
        "charge.dispute.created",
        dispute_object(charge2, None, 500, "needs_response"),
    );
    assert_eq!(app.deliver(&dispute).await.1, "applied");
    assert_eq!(
        app.order_status(second["id"].as_str().unwrap()).await,
        "disputed"
    );
    assert_eq!(stripe.requests("GET", "/v1/charges/").await.len(), 1);

    // A charge Stripe does not know either: not one of ours.
    let stranger = stripe_event(
        "charge.dispute.created",
        dispute_object("ch_nobody", None, 500, "needs_response"),
    );
    assert_eq!(app.deliver(&stranger).await, (200, "unknown_order".into()));
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn contradicting_dispute_and_refund_objects_send_the_order_to_review() {
    /// Builds the event from the order's charge and PaymentIntent.
    type Build = Box<dyn Fn(&str, &str) -> Value>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "a dispute without a charge",
            Box::new(|_c, pi| {
                let mut d = dispute_object("ch_x", Some(pi), 500, "needs_response");
                d.as_object_mut().unwrap().remove("charge");
                stripe_event("charge.dispute.created", d)
            }),
        ),
        (
            "a dispute status nobody knows",
            Box::new(|c, pi| {
                stripe_event(
                    "charge.dispute.closed",
                    dispute_object(c, Some(pi), 500, "teleported"),
                )
            }),
        ),
        (
            "a dispute larger than the payment",
            Box::new(|c, pi| {
                stripe_event(
                    "charge.dispute.created",
                    dispute_object(c, Some(pi), 501, "needs_response"),
                )
            }),
        ),
        (
            "a refund status nobody knows",
            Box::new(|c, pi| stripe_event("refund.updated", refund_object(c, pi, 100, "vanished"))),
        ),
        (
            "a refund larger than the payment",
            Box::new(|c, pi| {
                stripe_event(
                    "charge.refunded",
                    json!({"id": c, "object": "charge", "amount": 500, "amount_refunded": 900,
                           "currency": "usd", "payment_intent": pi}),
                )
            }),
        ),
    ];
    for (why, event) in cases {
        let (app, _stripe, order, charge) = paid_order().await;
        let id = order["id"].as_str().unwrap();
        let pi = order["payment_intent_id"].as_str().unwrap();
        assert_eq!(
            app.deliver(&event(&charge, pi)).await,
            (200, "mismatch".into()),
            "{why}"
        );
        assert_eq!(app.order_status(id).await, "needs_review", "{why}");
        assert_eq!(
            ledger(&app, id).await,
            [("grant".into(), 100)],
            "{why}: no credits move"
        );
    }
}

#[tokio::test]
async fn every_arrival_order_of_success_dispute_and_refund_ends_in_one_state() {
    // success, dispute created, dispute closed (lost), partial refund: 24 orders, each
    // receiving the four facts in another order.
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let permutations: Vec<Vec<usize>> = {
        let mut all = Vec::new();
        for a in 0..4 {
            for b in 0..4 {
                for c in 0..4 {
                    for d in 0..4 {
                        let p = vec![a, b, c, d];
                        let mut sorted = p.clone();
                        sorted.sort();
                        if sorted == [0, 1, 2, 3] {
                            all.push(p);
                        }
                    }
                }
            }
        }
        all
    };
    assert_eq!(permutations.len(), 24);
    let (app, stripe) = (&app, &stripe);
    let runs = permutations.iter().map(|perm| async move {
        let order = app.create_order(&unique_email(), "starter").await;
        let pi = order["payment_intent_id"].as_str().unwrap().to_owned();
        stripe.set_status(&pi, "succeeded");
        let intent = stripe.intents.lock().unwrap().objects[&pi].clone();
        let charge = intent["latest_charge"].as_str().unwrap().to_owned();
        let dispute = dispute_object(&charge, Some(&pi), 500, "needs_response");
        let mut lost = dispute.clone();
        lost["status"] = json!("lost");
        let mut refund = stripe.charge_of(&pi);
        refund["amount_refunded"] = json!(200);
        let facts = [
            stripe_event("payment_intent.succeeded", intent),
            stripe_event("charge.dispute.created", dispute),
            stripe_event("charge.dispute.closed", lost),
            stripe_event("charge.refunded", refund),
        ];
        for &i in perm {
            assert_eq!(app.deliver(&facts[i]).await.0, 200);
        }
        let id = order["id"].as_str().unwrap().to_owned();
        (app.order_status(&id).await, ledger(app, &id).await)
    });
    for (perm, (status, rows)) in permutations.iter().zip(join_all(runs).await) {
        assert_eq!(status, "dispute_lost", "{perm:?}");
        assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), 0, "{perm:?}");
        assert!(rows.contains(&("grant".into(), 100)), "{perm:?}");
    }
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_refund_worth_a_fraction_of_a_credit_revokes_the_floor_and_the_checker_agrees() {
    let app = spawn_app().await;
    let email = unique_email();
    // 550 credits for 2500 cents; 333 cents back is worth 73.26 credits: 73 go.
    let order = app.create_order(&email, "standard").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 333)).await.1,
        "applied"
    );
    assert_eq!(app.balance(&email).await, 550 - 73);
    // Then 1667 cents in all: 366.74 credits, so 293 more (366 in all).
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 1667))
            .await
            .1,
        "applied"
    );
    assert_eq!(app.balance(&email).await, 550 - 366);
    app.assert_money_invariant().await;
}
