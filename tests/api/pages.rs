//! The shopper's pages over HTTP: checkout with CSRF, pay page, status page, sync on return.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::stripe_double::{StripeDouble, as_pairs};

/// The value of the first `name="csrf_token"` hidden field in a page.
pub fn csrf_token(html: &str) -> String {
    let at = html
        .find("name=\"csrf_token\"")
        .expect("page has a csrf_token field");
    let rest = &html[at..];
    let value = rest.find("value=\"").expect("csrf_token has a value") + 7;
    rest[value..rest[value..].find('"').unwrap() + value].to_owned()
}

async fn page(app: &TestApp, path: &str) -> (u16, String) {
    let res = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Posts the checkout form as a browser would: with the token from the page.
pub async fn checkout(app: &TestApp, email: &str) -> reqwest::Response {
    let (_, html) = page(app, "/").await;
    let token = csrf_token(&html);
    let form = [
        ("email", email),
        ("pack_id", "starter"),
        ("csrf_token", token.as_str()),
    ];
    app.client
        .post(format!("{}/checkout", app.address))
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn order_count(app: &TestApp) -> usize {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.conn().await;
    diesel::sql_query("SELECT 1 FROM orders")
        .execute(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_checkout_page_lists_packs_with_prices_and_a_token() {
    let app = spawn_app().await;
    let (status, html) = page(&app, "/").await;
    assert_eq!(status, 200);
    for text in [
        "starter",
        "$5.00",
        "$25.00",
        "$50.00",
        "name=\"email\"",
        "action=\"/checkout\"",
    ] {
        assert!(html.contains(text), "checkout page lacks {text}");
    }
    assert!(!csrf_token(&html).is_empty());
}

#[tokio::test]
async fn checkout_without_or_with_a_wrong_token_is_403_and_creates_nothing() {
    let app = spawn_app().await;
    let email = unique_email();
    for form in [
        vec![("email", email.as_str()), ("pack_id", "starter")],
        vec![
            ("email", email.as_str()),
            ("pack_id", "starter"),
            ("csrf_token", "1.2.3"),
        ],
        vec![
            ("email", email.as_str()),
            ("pack_id", "starter"),
            ("csrf_token", ""),
        ],
    ] {
        let res = app
            .client
            .post(format!("{}/checkout", app.address))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{form:?}");
    }
    assert_eq!(order_count(&app).await, 0);
}

#[tokio::test]
async fn checkout_with_a_token_creates_the_order_and_redirects_to_its_pay_page() {
    let app = spawn_app().await;
    let res = checkout(&app, "shopper@example.com").await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("/orders/") && location.ends_with("/pay"),
        "{location}"
    );
    assert_eq!(order_count(&app).await, 1);
    // In sandbox mode the pay page sends the shopper to the sandbox's page for that intent.
    let path = location.trim_start_matches(&app.address);
    let res = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection() || res.status() == 200);
    let target = match res.headers().get("location") {
        Some(l) => l.to_str().unwrap().to_owned(),
        None => String::new(),
    };
    let (status, sandbox) = page(&app, target.trim_start_matches(&app.address)).await;
    assert_eq!(status, 200, "{target}");
    for text in [
        "name=\"action\"",
        "value=\"succeed\"",
        "value=\"fail\"",
        "value=\"cancel\"",
        "name=\"chaos\"",
        "out_of_order",
    ] {
        assert!(sandbox.contains(text), "sandbox page lacks {text}");
    }
}

#[tokio::test]
async fn form_errors_re_render_with_the_message_and_the_input_kept() {
    let app = spawn_app().await;
    let res = checkout(&app, "not-an-email").await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("not-an-email"), "input kept");
    assert!(html.contains("e-mail"), "message shown");
    assert_eq!(order_count(&app).await, 0);
}

#[tokio::test]
async fn without_a_publishable_key_the_live_pay_page_says_so_instead_of_failing() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let (status, html) = page(
        &app,
        &format!("/orders/{}/pay", order["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Card payments are not available"));
    assert!(
        !html.contains("js.stripe.com"),
        "no card form without a key"
    );
    assert!(!html.contains(order["client_secret"].as_str().unwrap()));
    assert!(html.contains(&format!("/orders/{}/status", order["id"].as_str().unwrap())));
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn the_live_pay_page_carries_the_keys_of_that_order_only() {
    let stripe = StripeDouble::start().await;
    let mut env = stripe.env();
    env.push(("STRIPE_PUBLISHABLE_KEY", "pk_test_visible".into()));
    let app = spawn_app_with(&as_pairs(&env)).await;
    let mine = app.create_order(&unique_email(), "starter").await;
    let other = app.create_order(&unique_email(), "starter").await;
    let (status, html) = page(
        &app,
        &format!("/orders/{}/pay", mine["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("pk_test_visible"));
    assert!(html.contains(mine["client_secret"].as_str().unwrap()));
    assert!(!html.contains(other["client_secret"].as_str().unwrap()));
    assert!(!html.contains("sk_test_double"), "never the secret key");
    assert!(html.contains("https://js.stripe.com/v3"));
    assert!(
        html.contains(&format!("/orders/{}/status", mine["id"].as_str().unwrap())),
        "return_url"
    );
}

#[tokio::test]
async fn the_status_page_refreshes_while_unsettled_and_says_paid_with_the_credits() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let path = format!("/orders/{}/status", order["id"].as_str().unwrap());
    let (status, html) = page(&app, &path).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "works without JavaScript"
    );
    app.deliver(&succeeded(&new_event_id(), &order)).await;
    let (_, html) = page(&app, &path).await;
    assert!(html.contains("paid — 100 credits added"), "{html}");
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "a settled page stops refreshing"
    );
    let (status, _) = page(&app, &format!("/orders/{}/status", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_status_page_states_failure_cancel_and_review_clearly() {
    let app = spawn_app().await;
    // The visible headline, not a word: the page's inline CSS names every status.
    for (event_type, status, headline) in [
        (
            "payment_intent.payment_failed",
            "requires_payment_method",
            "<h2 class=\"headline\">Your payment failed.</h2>",
        ),
        (
            "payment_intent.canceled",
            "canceled",
            "<h2 class=\"headline\">This order was canceled.</h2>",
        ),
    ] {
        let order = app.create_order(&unique_email(), "starter").await;
        app.deliver(&pi_event(&new_event_id(), event_type, &order, status, 0))
            .await;
        let (_, html) = page(
            &app,
            &format!("/orders/{}/status", order["id"].as_str().unwrap()),
        )
        .await;
        assert!(html.contains(headline), "{headline}: {html}");
    }
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = succeeded(&new_event_id(), &order);
    event["data"]["object"]["amount_received"] = serde_json::json!(1);
    app.deliver(&event).await;
    let (_, html) = page(
        &app,
        &format!("/orders/{}/status", order["id"].as_str().unwrap()),
    )
    .await;
    assert!(
        html.contains("<h2 class=\"headline\">Your order is under review, contact support.</h2>"),
        "{html}"
    );
}

#[tokio::test]
async fn returning_with_succeeded_syncs_once_when_the_webhook_never_arrives() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let id = order["id"].as_str().unwrap();
    let pi = order["payment_intent_id"].as_str().unwrap();
    stripe.set_status(pi, "succeeded");
    let path = format!(
        "/orders/{id}/status?payment_intent={pi}&payment_intent_client_secret=x&redirect_status=succeeded"
    );
    // Give the webhook its chance first, as the page does, then come back.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    for _ in 0..3 {
        page(&app, &path).await;
    }
    assert_eq!(app.order_status(id).await, "paid");
    assert_eq!(app.balance(&email).await, 100);
    assert_eq!(
        stripe.requests("GET", "/v1/payment_intents").await.len(),
        1,
        "rate-limited to one provider call"
    );
    let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
    assert_eq!(
        view["transitions"].as_array().unwrap().last().unwrap()["cause"],
        "return_sync"
    );
    // The late webhook changes nothing.
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "noop"
    );
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_redirect_status_is_never_proof_of_payment() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (_, html) = page(
        &app,
        &format!("/orders/{id}/status?redirect_status=succeeded&payment_intent=pi_forged"),
    )
    .await;
    assert!(!html.contains("credits added"));
    assert_eq!(
        app.order_status(id).await,
        "pending",
        "the sandbox intent was never paid"
    );
}

#[tokio::test]
async fn get_checkout_goes_back_to_the_checkout_and_there_is_a_favicon() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/checkout", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let icon = app
        .client
        .get(format!("{}/favicon.ico", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.text().await.unwrap().starts_with("<svg"));
}

#[tokio::test]
async fn a_decline_whose_webhook_is_lost_shows_on_the_status_page_whatever_the_redirect_says() {
    let stripe = StripeDouble::start().await;
    let app = spawn_app_with(&as_pairs(&stripe.env())).await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    // Declined at Stripe; the payment_failed webhook never arrives.
    stripe.set_status(
        order["payment_intent_id"].as_str().unwrap(),
        "requires_payment_method",
    );
    for path in [
        format!("/orders/{id}/status"),
        format!("/orders/{id}/status?redirect_status=failed"),
    ] {
        let (_, html) = page(&app, &path).await;
        assert!(
            !html.contains("Your payment failed"),
            "not before the webhook had its chance"
        );
    }
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (_, html) = page(&app, &format!("/orders/{id}/status?redirect_status=failed")).await;
    assert!(html.contains("Your payment failed."), "{html}");
    assert_eq!(app.order_status(id).await, "failed");
    let view: Value = app.admin_json(&format!("/admin/api/orders/{id}")).await;
    assert_eq!(
        view["transitions"].as_array().unwrap().last().unwrap()["cause"],
        "return_sync"
    );
    assert!(
        view["reason"].as_str().unwrap().contains("declined"),
        "{view}"
    );
}
