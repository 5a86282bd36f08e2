//! Errors as pages (SPEC §7): a browser on a page route gets a small HTML page with
//! the status and the headers that say what to do next; API clients, the webhook and
//! anyone asking for JSON get SPEC §4's JSON body.

use serde_json::Value;

use crate::helpers::*;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn get(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
}

fn content_type(res: &reqwest::Response) -> String {
    res.headers()["content-type"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn browsers_get_html_error_pages_and_api_clients_get_json() {
    let app = spawn_app().await;

    let res = get(&app, "/no/such/page", BROWSER).await;
    assert_eq!(res.status(), 404);
    assert!(content_type(&res).starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<h1>Not found</h1>"), "{html}");
    assert!(html.contains("no route for GET /no/such/page"), "{html}");

    let res = get(&app, "/no/such/page", "application/json").await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // The API stays JSON even for a browser.
    let res = get(&app, "/api/orders/ord_nope", BROWSER).await;
    assert_eq!(res.status(), 404);
    assert!(content_type(&res).starts_with("application/json"));

    // A wrong method on a page: 405 as a page.
    let res = app
        .client
        .delete(format!("{}/", app.address))
        .header("Accept", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert!(content_type(&res).starts_with("text/html"));
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("<h1>Not allowed here</h1>")
    );

    // The operator page without credentials: a page that still asks for them.
    let res = get(&app, "/admin", BROWSER).await;
    assert_eq!(res.status(), 401);
    assert!(content_type(&res).starts_with("text/html"));
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("<h1>Sign in required</h1>")
    );
    let res = get(&app, "/admin/api/events", BROWSER).await;
    assert_eq!(res.status(), 401);
    assert!(content_type(&res).starts_with("application/json"));

    // The status page of an unknown or malformed id: the HTML 404.
    for id in ["ord_00000000000000000000000000", "%00%ff", "x"] {
        let res = get(&app, &format!("/orders/{id}/status"), BROWSER).await;
        assert_eq!(res.status(), 404, "{id}");
        assert!(content_type(&res).starts_with("text/html"), "{id}");
    }
    // A page's own error is a page whoever asks (the handler's PageError), with the
    // headers that tell the client what to do.
    let res = get(&app, "/orders/x/status", "application/json").await;
    assert_eq!(res.status(), 404);
    assert!(content_type(&res).starts_with("text/html"));
    assert!(res.headers().contains_key("content-security-policy"));
    assert!(res.text().await.unwrap().contains("<h1>Not found</h1>"));
}

#[tokio::test]
async fn the_checkout_form_past_the_order_limit_is_a_429_page_with_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_ORDERS", "2/min")]).await;
    for _ in 0..2 {
        assert_eq!(
            crate::pages::checkout(&app, &unique_email()).await.status(),
            303
        );
    }
    let res = crate::pages::checkout(&app, &unique_email()).await;
    assert_eq!(res.status(), 429);
    assert!(content_type(&res).starts_with("text/html"));
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let html = res.text().await.unwrap();
    assert!(html.contains("<h1>Too many tries</h1>"), "{html}");
}
