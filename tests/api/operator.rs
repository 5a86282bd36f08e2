//! Operator actions (SPEC §7): refund, resolve, sync and cancel, as forms and as JSON,
//! each once per key, each with an audit row, credits only through settlement.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::pages::csrf_token;
use crate::stripe_double::{StripeDouble, as_pairs};

async fn stripe_app() -> (TestApp, StripeDouble) {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    (app, stripe)
}

/// A paid order on the double (the success delivered as a webhook): the order's JSON.
async fn paid(app: &TestApp, stripe: &StripeDouble) -> Value {
    let order = app.create_order(&unique_email(), "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_status(pi, "succeeded");
    let intent = stripe.intents.lock().unwrap().objects[pi].clone();
    assert_eq!(
        app.deliver(&stripe_event("payment_intent.succeeded", intent))
            .await
            .1,
        "applied"
    );
    order
}

/// An order sent to review by a success for the wrong amount.
async fn in_review(app: &TestApp) -> Value {
    let order = app.create_order(&unique_email(), "starter").await;
    let mut short = succeeded(&new_event_id(), &order);
    short["data"]["object"]["amount_received"] = json!(499);
    assert_eq!(app.deliver(&short).await.1, "mismatch");
    order
}

async fn act(
    app: &TestApp,
    order: &Value,
    action: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!(
            "{}/admin/api/orders/{}/{action}",
            app.address,
            order["id"].as_str().unwrap()
        ))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

async fn view(app: &TestApp, order: &Value) -> Value {
    app.admin_get(&format!(
        "/admin/api/orders/{}",
        order["id"].as_str().unwrap()
    ))
    .await
    .json()
    .await
    .unwrap()
}

fn deltas(view: &Value) -> Vec<(String, i64, String)> {
    view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["delta"].as_i64().unwrap(),
                e["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_refund_sent_twice_with_one_key_is_one_stripe_refund_and_one_revocation() {
    // Arrange
    let (app, stripe) = stripe_app().await;
    let order = paid(&app, &stripe).await;
    let body = json!({"amount": 250, "note": "customer asked for half back"});

    // Act: the same action twice at once, and once more after.
    let both = join_all([
        act(&app, &order, "refund", body.clone(), Some("refund-1")),
        act(&app, &order, "refund", body.clone(), Some("refund-1")),
    ])
    .await;
    let again = act(&app, &order, "refund", body, Some("refund-1")).await;

    // Assert
    let statuses: Vec<u16> = both.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 409].contains(s)),
        "the twin is told the action is in progress: {statuses:?}"
    );
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(stripe.requests("POST", "/v1/refunds").await.len(), 1);
    let v = view(&app, &order).await;
    assert_eq!(v["status"], "partially_refunded");
    assert_eq!(
        deltas(&v),
        [
            (
                "grant".into(),
                100,
                v["events"][0]["event_id"].as_str().unwrap().into()
            ),
            ("refund".into(), -50, "operator".into())
        ]
    );
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0]["action"], "refund");
    assert_eq!(actions[0]["note"], "customer asked for half back");
    assert!(
        actions[0]["result"]
            .as_str()
            .unwrap()
            .contains("paid → partially_refunded")
    );
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_partial_refund_then_the_rest_ends_refunded_with_every_credit_back() {
    let (app, stripe) = stripe_app().await;
    let order = paid(&app, &stripe).await;
    let partial = act(
        &app,
        &order,
        "refund",
        json!({"amount": 100, "note": "part"}),
        None,
    )
    .await;
    assert_eq!(partial.status(), 200);
    assert_eq!(view(&app, &order).await["status"], "partially_refunded");
    // No amount: all that is left.
    let rest = act(&app, &order, "refund", json!({"note": "the rest"}), None).await;
    assert_eq!(rest.status(), 200);
    let v = view(&app, &order).await;
    assert_eq!(v["status"], "refunded");
    assert_eq!(deltas(&v).iter().map(|d| d.1).sum::<i64>(), 0);
    // Nothing left: the action makes no sense any more.
    let more = act(&app, &order, "refund", json!({"note": "again"}), None).await;
    assert_eq!(more.status(), 409);
    let body: Value = more.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_action");
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn refunds_with_a_bad_amount_are_422_and_nothing_reaches_stripe() {
    let (app, stripe) = stripe_app().await;
    let order = paid(&app, &stripe).await;
    for (amount, why) in [
        (json!(0), "zero"),
        (json!(-5), "negative"),
        (json!(501), "more than is left"),
        (json!("abc"), "not a number"),
        (json!(2.5), "fractional"),
    ] {
        let res = act(
            &app,
            &order,
            "refund",
            json!({"amount": amount, "note": "x"}),
            None,
        )
        .await;
        assert_eq!(res.status(), 422, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_amount", "{why}");
    }
    let no_note = act(
        &app,
        &order,
        "refund",
        json!({"amount": 100, "note": "  "}),
        None,
    )
    .await;
    assert_eq!(no_note.status(), 422);
    assert!(stripe.requests("POST", "/v1/refunds").await.is_empty());
    assert_eq!(view(&app, &order).await["actions"], json!([]));
}

#[tokio::test]
async fn resolving_a_review_with_grant_pays_once_and_says_why_it_was_in_review() {
    let (app, stripe) = stripe_app().await;
    let order = in_review(&app).await;
    let before = view(&app, &order).await;
    assert_eq!(before["status"], "needs_review");
    assert_eq!(
        before["reason"],
        "amount received: expected 500 usd, received 499 usd"
    );
    let res = act(
        &app,
        &order,
        "resolve",
        json!({"decision": "grant", "note": "bank confirmed 5.00"}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let v = view(&app, &order).await;
    assert_eq!(v["status"], "paid");
    assert_eq!(deltas(&v), [("grant".into(), 100, "operator".into())]);
    assert_eq!(v["actions"][0]["action"], "resolve_grant");
    // Resolving a paid order makes no sense: 409, nothing changed.
    let again = act(
        &app,
        &order,
        "resolve",
        json!({"decision": "grant", "note": "again"}),
        None,
    )
    .await;
    assert_eq!(again.status(), 409);
    assert_eq!(deltas(&view(&app, &order).await).len(), 1);
    assert!(stripe.requests("POST", "/v1/refunds").await.is_empty());
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn resolving_a_review_with_refund_refunds_in_full_and_grants_nothing() {
    let (app, stripe) = stripe_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_status(pi, "succeeded");
    // The success names another currency: review.
    let mut odd = stripe.intents.lock().unwrap().objects[pi].clone();
    odd["currency"] = json!("eur");
    assert_eq!(
        app.deliver(&stripe_event("payment_intent.succeeded", odd))
            .await
            .1,
        "mismatch"
    );
    let res = act(
        &app,
        &order,
        "resolve",
        json!({"decision": "refund", "note": "wrong currency"}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let v = view(&app, &order).await;
    assert_eq!(v["status"], "refunded");
    assert_eq!(deltas(&v), []);
    assert_eq!(stripe.requests("POST", "/v1/refunds").await.len(), 1);
    assert_eq!(stripe.charge_of(pi)["amount_refunded"], 500);
    app.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resolve_racing_a_late_success_grants_once() {
    let (app, _stripe) = stripe_app().await;
    for _ in 0..10 {
        let order = in_review(&app).await;
        // Another success for the same order, now for the right amount, and the grant.
        let late = succeeded(&new_event_id(), &order);
        let (res, _) = tokio::join!(
            act(
                &app,
                &order,
                "resolve",
                json!({"decision": "grant", "note": "race"}),
                None
            ),
            app.deliver(&late)
        );
        assert_eq!(res.status(), 200);
        let grants = deltas(&view(&app, &order).await)
            .into_iter()
            .filter(|d| d.0 == "grant")
            .count();
        assert_eq!(grants, 1);
    }
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn sync_applies_what_the_provider_says_now_and_cancel_cancels_at_the_provider() {
    let (app, stripe) = stripe_app().await;
    // Paid at Stripe, no webhook: sync pays it.
    let order = app.create_order(&unique_email(), "starter").await;
    stripe.set_status(order["payment_intent_id"].as_str().unwrap(), "succeeded");
    let res = act(
        &app,
        &order,
        "sync",
        json!({"note": "shopper says they paid"}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["status"], "paid");
    assert!(
        done["result"].as_str().unwrap().contains("pending → paid"),
        "{done}"
    );
    // Cancel a pending one; then cancel makes no sense any more.
    let other = app.create_order(&unique_email(), "starter").await;
    let res = act(
        &app,
        &other,
        "cancel",
        json!({"note": "duplicate order"}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(view(&app, &other).await["status"], "canceled");
    assert_eq!(
        stripe
            .requests("POST", "/v1/payment_intents/")
            .await
            .iter()
            .filter(|r| r.url.path().ends_with("/cancel"))
            .count(),
        1
    );
    let again = act(&app, &other, "cancel", json!({"note": "again"}), None).await;
    assert_eq!(again.status(), 409);
    let paid_cancel = act(&app, &order, "cancel", json!({"note": "no"}), None).await;
    assert_eq!(paid_cancel.status(), 409);
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn action_forms_need_csrf_and_the_json_twins_need_json() {
    let (app, stripe) = stripe_app().await;
    let order = paid(&app, &stripe).await;
    let id = order["id"].as_str().unwrap();
    // No token: 403, nothing done.
    let res = app
        .client
        .post(format!("{}/admin/orders/{id}/refund", app.address))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(&[("note", "x"), ("amount", "100")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // text/plain to the JSON twin: 415, nothing done.
    let res = app
        .client
        .post(format!("{}/admin/api/orders/{id}/refund", app.address))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .header("Content-Type", "text/plain")
        .body(r#"{"note": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert!(stripe.requests("POST", "/v1/refunds").await.is_empty());

    // The page's own form, submitted twice (a double click): one refund, and the result
    // shown after the redirect.
    let page = app.admin_text(&format!("/admin/orders/{id}")).await;
    let token = csrf_token(&page);
    let key_at = page.find("name=\"action_key\" value=\"").unwrap() + 26;
    let key = &page[key_at..key_at + page[key_at..].find('"').unwrap()];
    let submit = || {
        app.client
            .post(format!("{}/admin/orders/{id}/refund", app.address))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .form(&[
                ("csrf_token", token.as_str()),
                ("action_key", key),
                ("note", "double click"),
                ("amount", "100"),
            ])
            .send()
    };
    let first = submit().await.unwrap();
    assert_eq!(first.status(), 303);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(submit().await.unwrap().status(), 303);
    assert_eq!(stripe.requests("POST", "/v1/refunds").await.len(), 1);
    let shown = app.admin_text(&location).await;
    assert!(
        shown.contains("class=\"flash\""),
        "the result is shown after the redirect"
    );
    assert!(shown.contains("paid → partially_refunded"));
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn the_sandbox_refunds_too_and_delivers_the_event_stripe_would() {
    use paidonce::sandbox::{Action, Chaos, act as pay};
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let pi = order["payment_intent_id"].as_str().unwrap();
    pay(&app.state, pi, Action::Succeed, Chaos::None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.order_status(order["id"].as_str().unwrap()).await != "paid" {
        assert!(std::time::Instant::now() < deadline, "never paid");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = act(
        &app,
        &order,
        "refund",
        json!({"amount": 500, "note": "sandbox refund"}),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(view(&app, &order).await["status"], "refunded");
    // The sandbox's charge.refunded arrives too and changes nothing more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = view(&app, &order).await;
        let refund_event = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "charge.refunded")
            .cloned();
        if let Some(e) = refund_event {
            assert_eq!(e["outcome"], "noop");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no charge.refunded delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.assert_money_invariant().await;
}
