//! The merchant's shop (issue 17): SHOP_NAME and SUPPORT_EMAIL on the shopper's pages,
//! PACKS_FILE applied at start (new packs offered, changed ones for new orders only,
//! removed ones hidden), the receipt, field errors, compression for pages only.

use serde_json::{Value, json};

use crate::helpers::*;

fn packs_file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::write(text)
}

/// A file that lives as long as the test needs it.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    pub fn write(text: &str) -> TempPath {
        let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("packs-{}.toml", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        TempPath(path)
    }
}

const PACKS: &str = r#"
[[pack]]
id = "starter"
name = "Starter plus"
credits = 150
amount = 700
currency = "usd"

[[pack]]
id = "mega"
name = "Mega"
credits = 5000
amount = 15000
currency = "eur"
"#;

#[tokio::test]
async fn a_packs_file_adds_changes_for_new_orders_and_hides_what_it_removed() {
    // Before: the built-in packs, and an order for the built-in starter.
    let first = spawn_app().await;
    let old = first.create_order(&unique_email(), "starter").await;
    assert_eq!(
        (old["amount"].as_i64(), old["credits"].as_i64()),
        (Some(500), Some(100))
    );

    let file = packs_file(PACKS);
    let path = file.0.to_str().unwrap().to_owned();
    let app = spawn_app_on(first.db.clone(), &[("PACKS_FILE", path.as_str())]).await;
    let packs: Value = app
        .client
        .get(format!("{}/api/packs", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        packs,
        json!([
            {"id": "starter", "name": "Starter plus", "credits": 150, "amount": 700, "currency": "usd"},
            {"id": "mega", "name": "Mega", "credits": 5000, "amount": 15000, "currency": "eur"},
        ]),
        "the file's packs in its order; standard and pro hidden"
    );
    let new = app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        (new["amount"].as_i64(), new["credits"].as_i64()),
        (Some(700), Some(150))
    );
    let mega = app.create_order(&unique_email(), "mega").await;
    assert_eq!(mega["currency"], "eur");
    let hidden = app
        .post_order(&json!({"email": unique_email(), "pack_id": "pro"}))
        .await;
    assert_eq!(hidden.status(), 422, "a removed pack takes no new orders");
    // The old order keeps what it was bought for, and pays for that.
    let res: Value = app
        .get_order(old["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (res["amount"].as_i64(), res["credits"].as_i64()),
        (Some(500), Some(100))
    );
    let email = unique_email();
    let paid_old = app.create_order(&email, "mega").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &paid_old)).await.1,
        "applied"
    );
    assert_eq!(app.balance(&email).await, 5000);
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &old)).await.1,
        "applied"
    );
    app.assert_money_invariant().await;
}

#[tokio::test]
async fn a_bad_packs_file_refuses_to_start_and_names_its_line() {
    let db = TestDb::new().await;
    for (text, expected) in [
        (
            PACKS.replace("id = \"mega\"", "id = \"starter\""),
            "line 10: pack id \"starter\" is used twice",
        ),
        (
            PACKS.replace("amount = 700", "amount = 0"),
            "line 6: amount must be",
        ),
        (
            PACKS.replace("currency = \"eur\"", "currency = \"eu\""),
            "line 14: currency \"eu\"",
        ),
        (
            PACKS.replace("id = \"mega\"", "id = \"Mega!\""),
            "line 10: pack id \"Mega!\"",
        ),
    ] {
        let file = packs_file(&text);
        let config = test_config(&db.url, &[("PACKS_FILE", file.0.to_str().unwrap())]);
        let err = match paidonce::startup::Application::build(config).await {
            Ok(_) => panic!("started with a bad PACKS_FILE: {expected}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.starts_with("PACKS_FILE "), "{err}");
        assert!(err.contains(expected), "{err:?} should name {expected:?}");
    }
    let missing = test_config(&db.url, &[("PACKS_FILE", "/nonexistent/packs.toml")]);
    let err = paidonce::startup::Application::build(missing)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("cannot be read"), "{err:#}");
}

#[tokio::test]
async fn the_receipt_names_the_pack_the_shop_and_its_support_and_says_what_remains() {
    let app = spawn_app_with(&[
        ("SHOP_NAME", "Quill & Ink"),
        ("SUPPORT_EMAIL", "help@quill.example"),
    ])
    .await;
    let email = format!("reader-{}@example.com", uuid::Uuid::new_v4().simple());
    let order = app.create_order(&email, "standard").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &order)).await.1,
        "applied"
    );
    let id = order["id"].as_str().unwrap();
    let page = app.get_text(&format!("/orders/{id}/status")).await;
    assert!(
        page.contains("<title>Order status · Quill &#38; Ink</title>"),
        "{page}"
    );
    assert!(page.contains("<dt>Pack</dt><dd>Standard</dd>"), "{page}");
    assert!(page.contains("r•••@example.com"), "the e-mail, masked");
    assert!(!page.contains(&email), "never the whole address");
    assert!(page.contains("<dt>Paid</dt>"), "{page}");
    assert!(page.contains("mailto:help@quill.example"), "{page}");
    assert!(
        page.contains("<h2 class=\"headline\">paid — 550 credits added</h2>"),
        "{page}"
    );

    // A partial refund: the credits that remain, in plain words.
    assert_eq!(
        app.deliver(&refunded(&new_event_id(), &order, 1000))
            .await
            .1,
        "applied"
    );
    let page = app.get_text(&format!("/orders/{id}/status")).await;
    assert!(
        page.contains("This order was partially refunded."),
        "{page}"
    );
    assert!(
        page.contains("(330 remain after the refund or dispute)"),
        "{page}"
    );
    assert!(page.contains("Need help? Write to"), "{page}");

    let checkout = app.get_text("/").await;
    assert!(
        checkout.contains("Quill &#38; Ink"),
        "the shop's name on the checkout"
    );
}

#[tokio::test]
async fn a_failed_payment_says_why_in_the_shoppers_words() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let mut event = failed(&new_event_id(), &order);
    event["data"]["object"]["last_payment_error"] = json!({
        "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds."
    });
    assert_eq!(app.deliver(&event).await.0, 200);
    let id = order["id"].as_str().unwrap();
    let page = app.get_text(&format!("/orders/{id}/status")).await;
    assert!(page.contains("The card has insufficient funds."), "{page}");
    assert!(
        page.contains(&format!("href=\"/orders/{id}/pay\"")),
        "try again on the same order"
    );
}

#[tokio::test]
async fn a_bad_email_is_shown_at_its_field_with_what_was_typed() {
    let app = spawn_app().await;
    let page = app.get_text("/").await;
    let token = crate::pages::csrf_token(&page);
    let res = app
        .client
        .post(format!("{}/checkout", app.address))
        .form(&[
            ("email", "ann@@example"),
            ("pack_id", "starter"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("value=\"ann@@example\""),
        "the typed e-mail is kept"
    );
    assert!(
        html.contains("aria-invalid=\"true\" aria-describedby=\"email-error email-help\""),
        "{html}"
    );
    assert!(
        html.contains("<p class=\"field-error\" id=\"email-error\">"),
        "{html}"
    );
}

#[tokio::test]
async fn pages_are_compressed_and_the_webhook_and_api_are_not() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(format!("{}/", app.address))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-encoding"], "gzip");
    let order = app.create_order(&unique_email(), "starter").await;
    let body = serde_json::to_vec(&succeeded(&new_event_id(), &order)).unwrap();
    let header =
        paidonce::webhook::signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    let hook = app
        .client
        .post(format!("{}/webhooks/stripe", app.address))
        .header("Accept-Encoding", "gzip")
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 200);
    assert_ne!(
        hook.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let receipt: Value = hook.json().await.unwrap();
    assert_eq!(
        receipt["outcome"], "applied",
        "readable without decompression"
    );
    let poll = app
        .client
        .get(format!(
            "{}/api/orders/{}",
            app.address,
            order["id"].as_str().unwrap()
        ))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_ne!(
        poll.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}
