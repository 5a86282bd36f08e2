//! Exactly once under real races: many concurrent deliveries, different events meaning
//! the same thing, and two app instances sharing one database.

use std::sync::Arc;

use futures_util::future::join_all;

use crate::helpers::*;

fn tally(results: &[(u16, String)]) -> (usize, usize, usize) {
    let applied = results
        .iter()
        .filter(|(s, o)| *s == 200 && o == "applied")
        .count();
    let duplicate = results
        .iter()
        .filter(|(s, o)| *s == 200 && o == "duplicate")
        .count();
    let server_errors = results.iter().filter(|(s, _)| *s >= 500).count();
    (applied, duplicate, server_errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_deliveries_of_one_event_apply_once() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "20")]).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let event = succeeded(&new_event_id(), &order);
    let results = join_all((0..100).map(|_| app.deliver(&event))).await;
    assert_eq!(tally(&results), (1, 99, 0), "{results:?}");
    assert_eq!(app.balance(&email).await, 100);
    // The operator sees the 99 absorbed deliveries on the order and in the event list
    // (counted in memory, written every 2 s).
    let id = order["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = app.admin_text(&format!("/admin/orders/{id}")).await;
        if page.contains("99 duplicate deliveries absorbed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the order page never showed 99 duplicates"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let listed: serde_json::Value = app.admin_json("/admin/api/events?outcome=duplicate").await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["event_id"], event["id"]);
    assert_eq!(listed[0]["duplicates"], 99);
    app.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_different_events_meaning_the_same_success_grant_once() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "20")]).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let events: Vec<_> = (0..50)
        .map(|_| succeeded(&new_event_id(), &order))
        .collect();
    let results = join_all(events.iter().map(|e| app.deliver(e))).await;
    let applied = results.iter().filter(|(_, o)| o == "applied").count();
    let noop = results.iter().filter(|(_, o)| o == "noop").count();
    assert_eq!((applied, noop), (1, 49), "{results:?}");
    assert_eq!(app.balance(&email).await, 100);
    app.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_grant_once_under_duplicates_and_resends() {
    let a = spawn_app_with(&[("DATABASE_POOL_SIZE", "15")]).await;
    let b = spawn_app_on(Arc::clone(&a.db), &[("DATABASE_POOL_SIZE", "15")]).await;
    let email = unique_email();
    let orders: Vec<_> = join_all((0..5).map(|i| {
        if i % 2 == 0 {
            a.create_order(&email, "starter")
        } else {
            b.create_order(&email, "pro")
        }
    }))
    .await;
    let mut deliveries = Vec::new();
    for order in &orders {
        let same = succeeded(&new_event_id(), order);
        for i in 0..20 {
            // Half the copies to each instance; every fourth one is a resend under a new id.
            let event = if i % 4 == 3 {
                succeeded(&new_event_id(), order)
            } else {
                same.clone()
            };
            deliveries.push((i % 2 == 0, event));
        }
    }
    let results = join_all(
        deliveries
            .iter()
            .map(|(to_a, e)| if *to_a { a.deliver(e) } else { b.deliver(e) }),
    )
    .await;
    let (applied, _, server_errors) = tally(&results);
    assert_eq!(server_errors, 0, "{results:?}");
    assert_eq!(applied, orders.len(), "one applied per order");
    assert_eq!(a.balance(&email).await, 100 * 3 + 1200 * 2);
    assert_eq!(b.balance(&email).await, 100 * 3 + 1200 * 2);
    a.assert_money_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refund_events_revoke_once_per_total() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "20")]).await;
    let email = unique_email();
    let order = app.create_order(&email, "standard").await;
    app.deliver(&succeeded(&new_event_id(), &order)).await;
    let events: Vec<_> = (0..30)
        .map(|i| {
            refunded(
                &new_event_id(),
                &order,
                if i % 2 == 0 { 1000 } else { 2500 },
            )
        })
        .collect();
    let results = join_all(events.iter().map(|e| app.deliver(e))).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(
        app.order_status(order["id"].as_str().unwrap()).await,
        "refunded"
    );
    assert_eq!(app.balance(&email).await, 0);
    app.assert_money_invariant().await;
}
