//! Signature verification over real HTTP, signed as the Stripe CLI signs.

use diesel_async::RunQueryDsl;
use paidonce::webhook::signature;
use serde_json::{Value, json};

use crate::helpers::{
    WEBHOOK_SECRET, new_event_id, spawn_app, spawn_app_with, succeeded, unique_email,
};

async fn stored_events(app: &crate::helpers::TestApp) -> usize {
    let events: Vec<Value> = app.admin_json("/admin/api/events").await;
    events.len()
}

#[tokio::test]
async fn every_bad_signature_is_400_with_its_code_and_nothing_is_stored() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let body = serde_json::to_vec(&succeeded(&new_event_id(), &order)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let good = signature::sign(WEBHOOK_SECRET, now, &body);
    // Well past the 300 s tolerance: the cases are sent one after the other on a busy
    // machine, and a header 301 s ahead was inside the tolerance once a second had
    // passed since `now`.
    const OUTSIDE: i64 = 360;
    let cases: Vec<(Option<String>, &str, &str)> = vec![
        (None, "missing_signature", "no header"),
        (Some(String::new()), "missing_signature", "empty header"),
        (
            Some(format!("v1={good}")),
            "malformed_signature",
            "no timestamp",
        ),
        (
            Some(format!("t={now},v0={good}")),
            "malformed_signature",
            "only v0",
        ),
        (
            Some(format!("t=soon,v1={good}")),
            "malformed_signature",
            "timestamp not a number",
        ),
        (
            Some(format!(
                "t={now},v1={}",
                signature::sign("whsec_other", now, &body)
            )),
            "signature_mismatch",
            "wrong secret",
        ),
        (
            Some(signature::header(WEBHOOK_SECRET, now - OUTSIDE, &body)),
            "timestamp_out_of_tolerance",
            "too old",
        ),
        (
            Some(signature::header(WEBHOOK_SECRET, now + OUTSIDE, &body)),
            "timestamp_out_of_tolerance",
            "from the future",
        ),
    ];
    for (header, code, why) in cases {
        let res = app.post_webhook_raw(body.clone(), header.as_deref()).await;
        assert_eq!(res.status(), 400, "{why}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{why}");
    }
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let res = app
        .post_webhook_raw(tampered, Some(&format!("t={now},v1={good}")))
        .await;
    assert_eq!(res.status(), 400, "tampered body");
    assert_eq!(stored_events(&app).await, 0);
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "pending"
    );
}

#[tokio::test]
async fn two_signature_headers_are_refused() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!({"id": new_event_id(), "type": "x"})).unwrap();
    let header = signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    let res = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Stripe-Signature", &header)
        .header("Stripe-Signature", &header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "multiple_signature_headers");
    let mut conn = app.db.conn().await;
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let stored: Stored = diesel::sql_query("SELECT count(*) AS n FROM webhook_events")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.n, 0, "nothing stored");
}

#[tokio::test]
async fn whitespace_extra_schemes_and_several_v1_values_are_tolerated() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(
        &json!({"id": new_event_id(), "type": "customer.created", "data": {"object": {}}}),
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let good = signature::sign(WEBHOOK_SECRET, now, &body);
    let header = format!(
        " t={now} , v1={} , v0=deadbeef ,v1={good}, x=y ",
        "0".repeat(64)
    );
    let res = app.post_webhook_raw(body, Some(&header)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "ignored");
}

#[tokio::test]
async fn any_secret_of_a_rotation_list_verifies() {
    let app = spawn_app_with(&[("STRIPE_WEBHOOK_SECRET", "whsec_old_one, whsec_new_one")]).await;
    for secret in ["whsec_old_one", "whsec_new_one"] {
        let body =
            serde_json::to_vec(&json!({"id": new_event_id(), "type": "customer.created"})).unwrap();
        let header = signature::header(secret, chrono::Utc::now().timestamp(), &body);
        assert_eq!(
            app.post_webhook_raw(body, Some(&header)).await.status(),
            200,
            "{secret}"
        );
    }
}

#[tokio::test]
async fn tolerance_edges_are_inclusive() {
    let app = spawn_app_with(&[("WEBHOOK_TOLERANCE_SECS", "60")]).await;
    let body =
        serde_json::to_vec(&json!({"id": new_event_id(), "type": "customer.created"})).unwrap();
    // 55 s keeps clear of the second boundary moving while the request travels.
    let now = chrono::Utc::now().timestamp();
    for (skew, status) in [(-55, 200), (55, 200), (-65, 400), (65, 400)] {
        let header = signature::header(WEBHOOK_SECRET, now + skew, &body);
        let res = app.post_webhook_raw(body.clone(), Some(&header)).await;
        assert_eq!(res.status(), status, "timestamp now {skew:+} s");
    }
}

#[tokio::test]
async fn a_body_of_exactly_512_kib_is_accepted_and_one_byte_more_is_413() {
    let app = spawn_app().await;
    let make = |len: usize| {
        let head = format!(
            r#"{{"id":"{}","type":"customer.created","pad":""#,
            new_event_id()
        );
        let mut body = head.into_bytes();
        let tail = br#""}"#;
        body.resize(len - tail.len(), b'x');
        body.extend_from_slice(tail);
        body
    };
    let ok = make(524_288);
    let header = signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &ok);
    assert_eq!(app.post_webhook_raw(ok, Some(&header)).await.status(), 200);
    let big = make(524_289);
    let header = signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &big);
    let res = app.post_webhook_raw(big, Some(&header)).await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );
}

#[tokio::test]
async fn compressed_bodies_are_refused_with_415() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Content-Encoding", "gzip")
        .header("Stripe-Signature", "t=1,v1=00")
        .body(vec![0x1f, 0x8b, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}
