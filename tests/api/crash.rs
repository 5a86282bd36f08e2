//! Crashes and restarts under load (issue 18): `kill -9` of one of two instances in the
//! middle of a webhook storm, and the database going away and coming back in the middle
//! of another. Stripe redelivers every event that did not get a 200; after that, no
//! event is lost, no credit granted twice, every order is paid once, and the instance
//! that lived answered nothing but 200 or 503.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::db_outage::ChaosProxy;
use crate::helpers::*;

/// Concurrent deliveries in flight during a storm, as Stripe's many senders would be.
const IN_FLIGHT: usize = 16;

/// Signs and posts `event` to the instance at `addr`: its status, or None when the
/// instance was not there to answer (killed, connection cut).
async fn post_event(client: &reqwest::Client, addr: &str, event: &Value) -> Option<u16> {
    let res = post_signed_event(client, addr, event).await.ok()?;
    let status = res.status().as_u16();
    res.bytes().await.ok()?;
    Some(status)
}

/// Each order's success three times under one id and once more under a new id (Stripe's
/// duplicates and resends), interleaved across orders.
fn storm_events(orders: &[Value]) -> Vec<Value> {
    let mut events = Vec::new();
    let firsts: Vec<Value> = orders
        .iter()
        .map(|o| succeeded(&new_event_id(), o))
        .collect();
    for copy in 0..4 {
        for (order, first) in orders.iter().zip(&firsts) {
            events.push(if copy == 3 {
                succeeded(&new_event_id(), order)
            } else {
                first.clone()
            });
        }
    }
    events
}

/// Stripe's redelivery: every event id that never got a 200 is sent again to `addr`
/// until it does. Returns how many were redelivered and the statuses of the first try
/// of each.
async fn redeliver(
    client: &reqwest::Client,
    addr: &str,
    events: &[Value],
    answered: &HashSet<String>,
) -> (usize, Vec<Option<u16>>) {
    let mut pending: HashMap<String, &Value> = HashMap::new();
    for e in events {
        let id = e["id"].as_str().unwrap().to_owned();
        if !answered.contains(&id) {
            pending.insert(id, e);
        }
    }
    let first_tries = join_all(pending.values().map(|e| post_event(client, addr, e))).await;
    for (id, event) in &pending {
        let mut tries = 0;
        while post_event(client, addr, event).await != Some(200) {
            tries += 1;
            assert!(tries < 50, "event {id} never got a 200 on redelivery");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    (pending.len(), first_tries)
}

/// Every order paid, each granted exactly its pack's credits once, and the money
/// invariant over the whole database.
async fn assert_each_paid_once(db: &TestDb, app: &TestApp, orders: &[Value], email: &str) {
    for order in orders {
        assert_eq!(
            app.order_status(order["id"].as_str().unwrap()).await,
            "paid"
        );
    }
    let expected: i64 = orders.iter().map(|o| o["credits"].as_i64().unwrap()).sum();
    assert_eq!(app.balance(email).await, expected);
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Grants {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await;
    let grants: Grants = diesel::sql_query("SELECT count(*) AS n FROM ledger WHERE kind = 'grant'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(grants.n, orders.len() as i64, "one grant per order");
    assert_money_invariant(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_of_two_instances_mid_storm_loses_nothing_and_grants_once() {
    let survivor = spawn_app_with(&[("DATABASE_POOL_SIZE", "12")]).await;
    let db = survivor.db.clone();
    let (mut victim, victim_addr) =
        crate::shutdown::serve_with(&db, &[("DATABASE_POOL_SIZE", "12")]).await;
    let email = unique_email();
    let packs = ["starter", "standard", "pro"];
    let orders: Vec<Value> =
        join_all((0..40).map(|i| survivor.create_order(&email, packs[i % 3]))).await;
    let events = storm_events(&orders);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let victim_pid = nix::unistd::Pid::from_raw(victim.id().unwrap() as i32);
    let kill_at = events.len() / 3;

    let results: Vec<(bool, String, Option<u16>)> =
        futures_util::stream::iter(events.iter().enumerate())
            .map(|(i, event)| {
                let (client, sent) = (client.clone(), sent.clone());
                let to_victim = i % 2 == 0;
                let addr = if to_victim {
                    victim_addr.clone()
                } else {
                    survivor.address.clone()
                };
                async move {
                    if sent.fetch_add(1, Ordering::SeqCst) == kill_at {
                        nix::sys::signal::kill(victim_pid, nix::sys::signal::Signal::SIGKILL)
                            .unwrap();
                    }
                    let status = post_event(&client, &addr, event).await;
                    (to_victim, event["id"].as_str().unwrap().to_owned(), status)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
    victim.wait().await.unwrap();

    let survivor_statuses: Vec<Option<u16>> = results
        .iter()
        .filter(|(to_victim, _, _)| !to_victim)
        .map(|(_, _, s)| *s)
        .collect();
    assert!(
        survivor_statuses
            .iter()
            .all(|s| matches!(s, Some(200) | Some(503))),
        "the survivor answered {survivor_statuses:?}"
    );
    let lost_to_the_kill = results
        .iter()
        .filter(|(to_victim, _, s)| *to_victim && s.is_none())
        .count();
    assert!(lost_to_the_kill > 0, "the kill landed mid-storm");
    let answered: HashSet<String> = results
        .iter()
        .filter(|(_, _, s)| *s == Some(200))
        .map(|(_, id, _)| id.clone())
        .collect();
    let (redelivered, first_tries) =
        redeliver(&client, &survivor.address, &events, &answered).await;
    assert!(
        first_tries.iter().all(|s| *s == Some(200)),
        "redeliveries to the survivor: {first_tries:?}"
    );
    eprintln!(
        "kill -9 mid-storm: {} deliveries, {lost_to_the_kill} cut by the kill, {redelivered} events redelivered",
        events.len()
    );
    assert_each_paid_once(&db, &survivor, &orders, &email).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_mid_storm_loses_nothing_and_costs_no_request_after_it() {
    let db = Arc::new(TestDb::new().await);
    let proxy = ChaosProxy::start(&db.url).await;
    let proxied = proxy.url(&db.url);
    let settings = [
        ("DATABASE_URL", proxied.as_str()),
        ("DATABASE_POOL_SIZE", "12"),
    ];
    let a = spawn_app_on(db.clone(), &settings).await;
    let b = spawn_app_on(db.clone(), &settings).await;
    let email = unique_email();
    let packs = ["starter", "standard", "pro"];
    let orders: Vec<Value> = join_all((0..60).map(|i| a.create_order(&email, packs[i % 3]))).await;
    let events = storm_events(&orders);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let cut_at = events.len() / 8;
    let proxy = Arc::new(proxy);

    let results: Vec<(String, Option<u16>)> = futures_util::stream::iter(events.iter().enumerate())
        .map(|(i, event)| {
            let (client, sent, proxy) = (client.clone(), sent.clone(), proxy.clone());
            let addr = if i % 2 == 0 { &a.address } else { &b.address }.clone();
            async move {
                if sent.fetch_add(1, Ordering::SeqCst) == cut_at {
                    // The restart: every connection dropped, new ones refused for a while.
                    proxy.cut().await;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        proxy.restore();
                    });
                }
                let status = post_event(&client, &addr, event).await;
                (event["id"].as_str().unwrap().to_owned(), status)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let statuses: Vec<Option<u16>> = results.iter().map(|(_, s)| *s).collect();
    let last_503 = statuses.iter().rposition(|s| *s == Some(503)).unwrap_or(0);
    assert!(
        statuses.iter().all(|s| matches!(s, Some(200) | Some(503))),
        "both instances answer 200 or 503 only: {statuses:?}"
    );
    assert!(
        statuses.contains(&Some(503)),
        "the restart landed mid-storm"
    );
    // The storm may end before the restart does.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The database accepts connections again: from here on, no request answers 503.
    let answered: HashSet<String> = results
        .iter()
        .filter(|(_, s)| *s == Some(200))
        .map(|(id, _)| id.clone())
        .collect();
    let (redelivered, first_tries) = redeliver(&client, &b.address, &events, &answered).await;
    assert!(
        first_tries.iter().all(|s| *s == Some(200)),
        "redeliveries after the restart: {first_tries:?}"
    );
    let burst = join_all((0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        let order = &orders[i];
        async move {
            let created = app
                .post_order(&json!({"email": unique_email(), "pack_id": "starter"}))
                .await
                .status()
                .as_u16();
            let polled = app
                .get_order(order["id"].as_str().unwrap())
                .await
                .status()
                .as_u16();
            let delivered = app.deliver(&succeeded(&new_event_id(), order)).await.0;
            (created, polled, delivered)
        }
    }))
    .await;
    assert!(
        burst.iter().all(|r| *r == (201, 200, 200)),
        "requests after the restart: {burst:?}"
    );
    eprintln!(
        "database restart mid-storm: {} deliveries, {} answered 503, {} answered after the last 503, {redelivered} events redelivered",
        events.len(),
        statuses.iter().filter(|s| **s == Some(503)).count(),
        statuses.len() - last_503 - 1
    );
    // The burst paid nothing new (its orders have e-mails of their own, its events
    // repeat successes): the storm's orders are each paid once.
    assert_each_paid_once(&db, &a, &orders, &email).await;
}
