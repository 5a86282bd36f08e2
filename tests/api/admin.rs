//! The operator pages: authentication, what the dashboard shows, escaping, reconcile now.

use serde_json::json;

use crate::helpers::*;
use crate::pages::csrf_token;

async fn admin_page(app: &TestApp, path: &str) -> (u16, String) {
    let res = app.admin_get(path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn admin_pages_need_the_admin_password() {
    let app = spawn_app().await;
    for path in ["/admin", "/admin/events"] {
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert!(res.headers().get("www-authenticate").is_some());
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .basic_auth("admin", Some("nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let res = app
            .client
            .get(format!("{}{path}", app.address))
            .basic_auth("root", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{path}");
        assert_eq!(app.admin_get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn the_dashboard_shows_a_just_paid_order_and_its_event() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let event_id = new_event_id();
    app.deliver(&succeeded(&event_id, &order)).await;
    let (status, html) = admin_page(&app, "/admin").await;
    assert_eq!(status, 200);
    let id = order["id"].as_str().unwrap();
    assert!(html.contains(&id[..8]), "recent orders list the order");
    assert!(html.contains(&event_id), "recent events list the event");
    assert!(html.contains("applied"));
    let (status, detail) = admin_page(&app, &format!("/admin/orders/{id}")).await;
    assert_eq!(status, 200);
    for text in [
        event_id.as_str(),
        order["payment_intent_id"].as_str().unwrap(),
        "pending",
        "paid",
    ] {
        assert!(detail.contains(text), "order page lacks {text}");
    }
}

#[tokio::test]
async fn outside_values_are_escaped_everywhere() {
    let app = spawn_app().await;
    let evil = "<script>alert(1)</script>";
    let event = json!({"id": format!("evt_{evil}"), "type": evil, "data": {"object": {"metadata": {"order_id": evil}}}});
    assert_eq!(app.deliver(&event).await, (200, "ignored".into()));
    for path in [
        "/admin",
        "/admin/events",
        "/admin/events?type=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ] {
        let (status, html) = admin_page(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains(evil), "{path} shows raw outside HTML");
    }
}

#[tokio::test]
async fn reconcile_now_needs_a_csrf_token() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/admin/reconcile", app.address))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (_, html) = admin_page(&app, "/admin").await;
    assert!(
        !html.contains("(admin)</dd>"),
        "the refused post ran nothing: {html}"
    );
    let token = csrf_token(&html);
    let res = app
        .client
        .post(format!("{}/admin/reconcile", app.address))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (_, html) = admin_page(&app, "/admin").await;
    assert!(
        html.contains("(admin)</dd>"),
        "the run is shown as the last run, with its trigger: {html}"
    );
}

#[tokio::test]
async fn the_eleventh_failed_login_in_a_minute_is_429_even_with_the_right_password() {
    let app = spawn_app().await;
    let get = |password: &'static str| {
        app.client
            .get(format!("{}/admin", app.address))
            .basic_auth("admin", Some(password))
            .send()
    };
    // A bare request (a browser asking) is no failure.
    let bare = app
        .client
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    for i in 0..10 {
        assert_eq!(
            get("wrong-password").await.unwrap().status(),
            401,
            "attempt {i}"
        );
    }
    let blocked = get(ADMIN_PASSWORD).await.unwrap();
    assert_eq!(blocked.status(), 429);
    let wait: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn a_tighter_login_limit_lets_the_right_password_in_again_after_its_window() {
    let app = spawn_app_with(&[("RATE_LIMIT_ADMIN_FAILURES", "2/sec")]).await;
    let get = |password: &'static str| {
        app.client
            .get(format!("{}/admin", app.address))
            .basic_auth("admin", Some(password))
            .send()
    };
    assert_eq!(get("nope").await.unwrap().status(), 401);
    assert_eq!(get("nope").await.unwrap().status(), 401);
    assert_eq!(get(ADMIN_PASSWORD).await.unwrap().status(), 429);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get(ADMIN_PASSWORD).await.unwrap().status(), 200);
}
