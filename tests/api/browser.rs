//! The shopper's journey in a real headless Chromium: checkout, sandbox pay page,
//! status page turning to paid by itself, with JavaScript and without. Needs Debian's
//! `chromium` and `chromium-driver`; skipped with a message when they are missing,
//! except in CI (CI=true), where `.ci/run` installs them and the test is mandatory.
//! Screenshots of each step land in target/tmp/browser/ for humans.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::*;

struct Browser {
    client: Client,
    driver: Child,
    shots: std::path::PathBuf,
}

impl Browser {
    /// `None` (after saying so) when no chromedriver is installed outside CI.
    async fn start(javascript: bool, name: &str) -> Option<Browser> {
        // fantoccini's rustls needs a process-wide crypto provider; the app installs the
        // same one when it builds, but this test may run before any app did.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(driver_path) = driver_path else {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("chromium-driver is required in CI (.ci/run installs it)");
            }
            eprintln!(
                "SKIPPED browser test {name}: install chromium and chromium-driver (apt-get install chromium chromium-driver) to run it"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = std::env::temp_dir().join(format!(
            "paidonce-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut prefs = json!({});
        if !javascript {
            prefs = json!({"profile.managed_default_content_settings.javascript": 2});
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1024,900", format!("--user-data-dir={}", profile.display())],
                "prefs": prefs,
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("connecting to chromedriver: {e}"),
            }
        };
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("browser")
            .join(name);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            client,
            driver,
            shots,
        })
    }

    async fn shot(&self, step: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("{step}.png")), png);
        }
    }

    async fn wait_for_url(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.as_str().contains(part) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never reached a URL with {part}; at {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_text(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let body = match self.client.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if body.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never showed {text:?}; it shows: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Presses `action` on the sandbox pay page and waits for the return to the status page.
    async fn press_and_return(&self, action: &str) {
        self.client
            .find(Locator::Css(&format!(
                "button[name=action][value={action}]"
            )))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_for_url("/status").await;
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn buy_credits_in_the_sandbox(javascript: bool, name: &str) {
    let Some(browser) = Browser::start(javascript, name).await else {
        return;
    };
    let app = spawn_app().await;
    let email = unique_email();

    // Arrange and act: the checkout, then "succeed" on the sandbox pay page.
    checkout_to_sandbox_pay(&browser, &app, &email).await;
    browser.shot("2-sandbox-pay").await;
    browser.press_and_return("succeed").await;
    browser.shot("3-status-unsettled").await;

    // Assert: the status page turns to paid by itself (polling, or meta refresh without JS).
    browser
        .wait_for_text("100 credits added", Duration::from_secs(30))
        .await;
    browser.shot("4-status-paid").await;
    assert_eq!(app.balance(&email).await, 100);
    app.assert_money_invariant().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_credits_in_a_real_browser_and_sees_them_arrive() {
    buy_credits_in_the_sandbox(true, "with-javascript").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_status_page_still_reaches_paid_by_refreshing() {
    buy_credits_in_the_sandbox(false, "without-javascript").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_refunds_a_paid_order_in_a_real_browser_and_reads_the_timeline() {
    use paidonce::sandbox::{Action, Chaos, act};
    let Some(browser) = Browser::start(true, "operator-refund").await else {
        return;
    };
    let app = spawn_app().await;
    let c = &browser.client;
    // Credentials in the URL: the browser keeps them for the forms it then posts.
    let admin = app
        .address
        .replace("http://", &format!("http://admin:{ADMIN_PASSWORD}@"));

    // Arrange: a paid sandbox order, and one sent to review by a short payment.
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    act(
        &app.state,
        order["payment_intent_id"].as_str().unwrap(),
        Action::Succeed,
        Chaos::None,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.order_status(id).await != "paid" {
        assert!(Instant::now() < deadline, "never paid");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let odd = app.create_order(&unique_email(), "starter").await;
    let mut short = succeeded(&new_event_id(), &odd);
    short["data"]["object"]["amount_received"] = json!(499);
    assert_eq!(app.deliver(&short).await.1, "mismatch");

    // Act: refund all that is left from the order's page.
    c.goto(&format!("{admin}/admin/orders/{id}")).await.unwrap();
    browser
        .wait_for_text("Refund at the provider", Duration::from_secs(10))
        .await;
    browser.shot("1-paid-order").await;
    c.find(Locator::Css("#refund-note"))
        .await
        .unwrap()
        .send_keys("customer asked for a refund by e-mail")
        .await
        .unwrap();
    c.find(Locator::Css("form[action$='/refund'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Assert: the result after the redirect, and the timeline.
    browser.wait_for_url("action=").await;
    browser
        .wait_for_text("paid → refunded", Duration::from_secs(10))
        .await;
    browser
        .wait_for_text(
            "-100 credits, taken back for a refund (refund)",
            Duration::from_secs(5),
        )
        .await;
    browser.shot("2-refunded-order").await;
    assert_eq!(app.order_status(id).await, "refunded");

    // The review's reason, in the operator's words, on the other order's page.
    c.goto(&format!(
        "{admin}/admin/orders/{}",
        odd["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    browser
        .wait_for_text(
            "amount received: expected 500 usd, received 499 usd",
            Duration::from_secs(10),
        )
        .await;
    browser
        .wait_for_text("Resolve the review", Duration::from_secs(5))
        .await;
    browser.shot("3-needs-review-order").await;
    app.assert_money_invariant().await;
    browser.close().await;
}

/// Ticks "pay" on the checkout as a shopper would and lands on the sandbox's pay page.
async fn checkout_to_sandbox_pay(browser: &Browser, app: &TestApp, email: &str) {
    let c = &browser.client;
    c.goto(&format!("{}/", app.address)).await.unwrap();
    browser.shot("1-checkout").await;
    c.find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Css("input[name=pack_id][value=starter]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/checkout'] [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_url("/sandbox/pay/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_whose_webhook_is_lost_shows_within_ten_seconds_and_paying_again_pays_the_same_order()
 {
    let Some(browser) = Browser::start(true, "decline-lost-webhook").await else {
        return;
    };
    // No reconciler (the test config turns it off): only the status page's own check.
    let app = spawn_app_with(&[("SUPPORT_EMAIL", "help@shop.example")]).await;
    let email = unique_email();
    let c = &browser.client;
    checkout_to_sandbox_pay(&browser, &app, &email).await;
    c.find(Locator::Css("select[name=chaos]"))
        .await
        .unwrap()
        .select_by_value("drop")
        .await
        .unwrap();
    browser.press_and_return("fail").await;
    let landed = Instant::now();
    browser
        .wait_for_text("Your payment failed.", Duration::from_secs(10))
        .await;
    eprintln!("failure shown {:?} after landing", landed.elapsed());
    browser
        .wait_for_text("Your bank declined the payment.", Duration::from_secs(1))
        .await;
    browser.shot("1-failed").await;

    // Try again: the same order's pay page, the same PaymentIntent.
    c.find(Locator::LinkText("Try again"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_url("/sandbox/pay/").await;
    browser.shot("2-pay-again").await;
    browser.press_and_return("succeed").await;
    browser.shot("3-status-after-paying-again").await;
    browser
        .wait_for_text("100 credits added", Duration::from_secs(30))
        .await;
    // The receipt: the pack by name and whom to ask.
    browser
        .wait_for_text("Starter", Duration::from_secs(1))
        .await;
    browser
        .wait_for_text("help@shop.example", Duration::from_secs(1))
        .await;
    browser.shot("4-paid-receipt").await;

    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        orders: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        intents: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        grants: i64,
    }
    let mut conn = app.db.conn().await;
    let n: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM orders) AS orders, \
                (SELECT count(*) FROM sandbox_payment_intents) AS intents, \
                (SELECT count(*) FROM ledger WHERE kind = 'grant') AS grants",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!((n.orders, n.intents, n.grants), (1, 1, 1));
    assert_eq!(app.balance(&email).await, 100);
    app.assert_money_invariant().await;
    browser.close().await;
}

/// axe-core (npm), injected into the page; `None` when it is not installed outside CI.
fn axe_source() -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/axe/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(js) => Some(js),
        Err(_) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("axe-core is required in CI (.ci/run installs it into target/axe)")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED accessibility check: npm install --prefix target/axe axe-core@4 to run it"
            );
            None
        }
    }
}

/// The violations axe-core finds on the page the browser shows, as "rule: target"
/// lines. Panics unless axe really ran (a check that cannot run must not pass).
async fn violations(c: &Client, axe: &str) -> Vec<String> {
    c.execute(axe, vec![]).await.unwrap();
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
                .then(r => done({ran: r.passes.length + r.violations.length,
                    violations: r.violations.map(v => v.id + ' (' + v.impact + '): ' +
                        v.nodes.map(n => n.target.join(' ')).join(', '))}))
                .catch(e => done({ran: 0, violations: ['axe failed: ' + e]}));",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        found["ran"].as_u64().is_some_and(|n| n > 0),
        "axe-core did not run its rules: {found}"
    );
    serde_json::from_value(found["violations"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_core_finds_no_accessibility_violations_on_any_page() {
    let Some(axe) = axe_source() else {
        return;
    };
    let Some(browser) = Browser::start(true, "axe").await else {
        return;
    };
    let app = spawn_app_with(&[("SUPPORT_EMAIL", "help@shop.example")]).await;
    let c = &browser.client;
    let admin = app
        .address
        .replace("http://", &format!("http://admin:{ADMIN_PASSWORD}@"));
    let paid = app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &paid)).await.1,
        "applied"
    );
    let failed_order = app.create_order(&unique_email(), "pro").await;
    assert_eq!(
        app.deliver(&failed(&new_event_id(), &failed_order)).await.0,
        200
    );
    let pending = app.create_order(&unique_email(), "standard").await;
    let refunded_order = app.create_order(&unique_email(), "standard").await;
    app.deliver(&succeeded(&new_event_id(), &refunded_order))
        .await;
    app.deliver(&refunded(&new_event_id(), &refunded_order, 1000))
        .await;
    let canceled = app.create_order(&unique_email(), "starter").await;
    let cancel_event = pi_event(
        &new_event_id(),
        "payment_intent.canceled",
        &canceled,
        "canceled",
        0,
    );
    assert_eq!(app.deliver(&cancel_event).await.1, "applied");
    let review = app.create_order(&unique_email(), "starter").await;
    let mut short = succeeded(&new_event_id(), &review);
    short["data"]["object"]["amount_received"] = json!(499);
    assert_eq!(app.deliver(&short).await.1, "mismatch");
    let disputed_order = app.create_order(&unique_email(), "starter").await;
    app.deliver(&succeeded(&new_event_id(), &disputed_order))
        .await;
    assert_eq!(
        app.deliver(&disputed(&new_event_id(), &disputed_order))
            .await
            .1,
        "applied"
    );
    let id = |o: &serde_json::Value| o["id"].as_str().unwrap().to_owned();
    let status = |o: &serde_json::Value| format!("{}/orders/{}/status", app.address, id(o));
    let pi = pending["payment_intent_id"].as_str().unwrap();
    let mut pages = vec![
        ("checkout", format!("{}/", app.address)),
        ("pay (sandbox)", format!("{}/sandbox/pay/{pi}", app.address)),
        ("not found", format!("{}/no/such/page", app.address)),
        ("admin dashboard", format!("{admin}/admin")),
        ("admin order", format!("{admin}/admin/orders/{}", id(&paid))),
        (
            "admin order in review",
            format!("{admin}/admin/orders/{}", id(&review)),
        ),
        ("admin events", format!("{admin}/admin/events")),
        (
            "admin notifications",
            format!("{admin}/admin/notifications"),
        ),
    ];
    for (state, order) in [
        ("paid", &paid),
        ("failed", &failed_order),
        ("pending", &pending),
        ("partially refunded", &refunded_order),
        ("canceled", &canceled),
        ("needs review", &review),
        ("disputed", &disputed_order),
    ] {
        pages.push((state, status(order)));
    }
    let mut found = Vec::new();
    for (name, url) in pages.drain(..) {
        c.goto(&url).await.unwrap();
        let title = c.title().await.unwrap();
        let expect_error = name == "not found";
        assert_eq!(
            title.starts_with("Not found") || title.starts_with("Sign in required"),
            expect_error,
            "{name} shows {title:?}"
        );
        for v in violations(c, &axe).await {
            found.push(format!("{name}: {v}"));
        }
    }
    // The checkout after a bad e-mail: the field error and its wiring.
    c.goto(&format!("{}/", app.address)).await.unwrap();
    c.find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys("not-an-address@")
        .await
        .unwrap();
    c.execute(
        "document.getElementById('checkout-form').noValidate = true;",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("form[action='/checkout'] [type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("e-mail", Duration::from_secs(10))
        .await;
    for v in violations(c, &axe).await {
        found.push(format!("checkout with a field error: {v}"));
    }
    // The check can fail: an image without a text alternative is found.
    c.execute(
        "document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/favicon.ico\">');",
        vec![],
    )
    .await
    .unwrap();
    let planted = violations(c, &axe).await;
    assert!(
        planted.iter().any(|v| v.starts_with("image-alt")),
        "axe-core missed a planted violation: {planted:?}"
    );
    browser.close().await;
    assert!(found.is_empty(), "axe-core found:\n{}", found.join("\n"));
}
