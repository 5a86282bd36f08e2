//! The order poll runs on a connection its worker's concurrent requests share
//! (db::pool::Db::read): answers must never cross, the lookups must really run there
//! and not on pooled connections, the instance must stay within DATABASE_POOL_SIZE
//! connections, and a dead shared connection must be replaced. Also what writes do with
//! pooled connections the database killed: a webhook (at its BEGIN, or at a failed
//! refund's lookup before it), an order creation, a spend (at its key claim or at its
//! transaction's BEGIN) and an operator action still succeed, and once one request found
//! a dead connection the next is not handed one.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer};
use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::*;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test]
async fn concurrent_polls_each_get_their_own_order() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "10")]).await;
    let packs = ["starter", "standard", "pro"];
    let mut orders = Vec::new();
    for i in 0..12 {
        let order = app.create_order(&unique_email(), packs[i % 3]).await;
        // Every third one paid, so the answers differ in status as well as in id.
        if i % 3 == 0 {
            assert_eq!(
                app.deliver(&succeeded(&new_event_id(), &order)).await.0,
                200
            );
        }
        orders.push(order);
    }
    let polls = (0..300).map(|k| {
        let order = &orders[(k * 7) % orders.len()];
        let app = &app;
        async move {
            let id = order["id"].as_str().unwrap();
            let res = app.get_order(id).await;
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            (order, body)
        }
    });
    for (i, (order, body)) in join_all(polls).await.into_iter().enumerate() {
        assert_eq!(body["id"], order["id"], "poll {i} answered another order");
        assert_eq!(body["credits"], order["credits"], "poll {i}");
        let paid = orders.iter().position(|o| o["id"] == order["id"]).unwrap() % 3 == 0;
        assert_eq!(
            body["status"],
            if paid { "paid" } else { "pending" },
            "poll {i}"
        );
    }
    let mut conn = app.db.conn().await;
    let open: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(
        open.n <= 10,
        "{} connections open for DATABASE_POOL_SIZE=10",
        open.n
    );
    // 300 polls at once ran on the workers' shared connections (one per worker), not
    // on the 8 pooled ones: no more than one backend per worker last ran the lookup.
    let lookups: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND query LIKE 'SELECT %FROM \"orders\" WHERE (\"orders\".\"id\" = $1)%' \
           AND query NOT LIKE '%FOR UPDATE%'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2)) as i64;
    assert!(
        (1..=workers).contains(&lookups.n),
        "{} backends ran the poll's lookup; {workers} shared connections expected at most",
        lookups.n
    );
}

/// Every connection to the test's database but `conn`'s own, terminated by the server.
async fn kill_other_connections(conn: &mut diesel_async::AsyncPgConnection) {
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_killed_shared_connection_is_replaced() {
    let app = spawn_app().await;
    let order = app.create_order(&unique_email(), "starter").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.get_order(id).await.status(), 200);
    let mut conn = app.db.conn().await;
    kill_other_connections(&mut conn).await;
    // A read is safe to repeat: the poll on the dead connection runs again on a fresh
    // one and answers 200 at once, every time, on every worker. (Polled before the
    // backends are even gone: a read meets the dying connection and retries.)
    for _ in 0..10 {
        let res = app.get_order(id).await;
        assert_eq!(
            res.status(),
            200,
            "a poll after the connections were killed"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["id"], order["id"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_after_the_database_killed_every_connection_never_answer_503() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "10")]).await;
    let email = unique_email();
    // Fill the pool: concurrent orders each hold a pooled connection.
    let orders: Vec<Value> = join_all((0..8).map(|_| app.create_order(&email, "starter"))).await;
    let mut conn = app.db.conn().await;
    kill_other_connections(&mut conn).await;
    // The database accepts connections again as soon as the killed backends are gone.
    wait_until_gone(
        &mut conn,
        "datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    let results = join_all(orders.iter().map(|order| {
        let app = &app;
        async move {
            let delivered = app.deliver(&succeeded(&new_event_id(), order)).await;
            let created = app
                .post_order(&serde_json::json!({"email": unique_email(), "pack_id": "starter"}))
                .await
                .status()
                .as_u16();
            (delivered, created)
        }
    }))
    .await;
    for (delivered, created) in &results {
        assert_eq!(*delivered, (200, "applied".to_owned()), "{results:?}");
        assert_eq!(*created, 201, "{results:?}");
    }
    assert_eq!(app.balance(&email).await, 100 * 8);
    app.assert_money_invariant().await;
}

/// Waits (up to 10 s) until no backend matching `which`, a condition on
/// pg_stat_activity, is left: a killed backend is gone only once it has exited.
async fn wait_until_gone(conn: &mut diesel_async::AsyncPgConnection, which: &str) {
    let query = format!("SELECT count(*) AS n FROM pg_stat_activity WHERE {which}");
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let left: Count = diesel::sql_query(&query).get_result(conn).await.unwrap();
            if left.n == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("backends where {which} went away"));
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// Runs `work` on a thread whose shard's one pooled connection is dead without this
/// process knowing: what load does by chance (hand out a connection whose killed backend
/// nobody has noticed yet) done for certain. The connection is opened by a runtime that
/// is driven only inside `block_on`, so while its backend is killed nothing reads its
/// socket's end, and the pool still takes it for alive when `work` checks out.
fn on_a_dead_pooled_connection<T: Send>(
    app: &TestApp,
    work: impl AsyncFnOnce(&paidonce::state::AppState) -> T + Send,
) -> T {
    let state = app.state.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            let frozen = test_runtime();
            let pid = frozen_pooled_connection(&frozen, &state);
            kill_backends(app, &format!("pid = {pid}"));
            frozen.block_on(work(&state))
        })
        .join()
        .unwrap()
    })
}

/// Replaces the pooled connection of this thread's shard (the shard holds one) with one
/// that `frozen` drives, and answers its backend's pid.
fn frozen_pooled_connection(
    frozen: &tokio::runtime::Runtime,
    state: &paidonce::state::AppState,
) -> i32 {
    frozen.block_on(async {
        paidonce::db::pool::discard(state.db.get().await.unwrap());
        backend_pid(&mut state.db.get().await.unwrap()).await
    })
}

async fn backend_pid(conn: &mut diesel_async::AsyncPgConnection) -> i32 {
    let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(conn)
        .await
        .unwrap();
    pid.pid
}

/// Terminates the backends of `app`'s database where `which` (a condition on
/// pg_stat_activity), and waits until they are gone.
fn kill_backends(app: &TestApp, which: &str) {
    test_runtime().block_on(async {
        let mut conn = app.db.conn().await;
        let pids: Vec<Pid> = diesel::sql_query(format!(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND {which}"
        ))
        .load(&mut conn)
        .await
        .unwrap();
        assert!(!pids.is_empty(), "no backend where {which}");
        let pids = pids
            .iter()
            .map(|p| p.pid.to_string())
            .collect::<Vec<_>>()
            .join(",");
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pids})"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        wait_until_gone(&mut conn, &format!("pid IN ({pids})")).await;
    });
}

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_webhook_whose_begin_meets_a_dead_pooled_connection_runs_again_on_a_fresh_one() {
    let main = test_runtime();
    // Two connections over two workers: one per shard, no shared read connection.
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "2")]));
    let order = main.block_on(app.create_order(&unique_email(), "starter"));
    let event_id = new_event_id();
    let body = serde_json::to_vec(&succeeded(&event_id, &order)).unwrap();
    let (outcome, retried) = on_a_dead_pooled_connection(&app, async |state| {
        ran_again_at_begin(&event_id, paidonce::webhook::process(state, &body)).await
    });
    assert_eq!(
        outcome.map(|p| p.receipt.outcome.as_str()).ok(),
        Some("applied")
    );
    assert!(
        retried,
        "the retry ran (not a live connection met by chance)"
    );
    assert_eq!(
        main.block_on(app.order_status(order["id"].as_str().unwrap())),
        "paid"
    );
}

/// Runs `work` in a span tagged `tag`, and answers what it answered and whether it
/// logged `line` (a log line of `target`) inside that span: other tests' lines cannot
/// count.
async fn logged_within<T>(
    tag: &str,
    target: &str,
    line: &str,
    work: impl Future<Output = T>,
) -> (T, bool) {
    use tracing::Instrument;
    let done = work
        .instrument(tracing::info_span!("dead_connection", tag = %tag))
        .await;
    let line = format!("dead_connection{{tag={tag}}}: {target}: {line}");
    (done, crate::log_capture::contains(&line))
}

/// `work`, and whether a transaction of it ran again because its BEGIN met a dead
/// connection.
async fn ran_again_at_begin<T>(tag: &str, work: impl Future<Output = T>) -> (T, bool) {
    let line = "database: a pooled connection was dead at BEGIN";
    logged_within(tag, "paidonce::db::pool", line, work).await
}

/// `work`, and whether a repeatable statement of it (here: the Idempotency-Key claim)
/// was sent again because its connection was dead.
async fn claimed_again<T>(tag: &str, work: impl Future<Output = T>) -> (T, bool) {
    let line = "database: a pooled connection was dead; sending a repeatable statement";
    logged_within(tag, "paidonce::db::pool", line, work).await
}

/// A spend's transaction (run here without the key claim before it, which has its own
/// test below) whose BEGIN meets a dead pooled connection runs on a fresh one.
#[test]
fn a_spend_whose_begin_meets_a_dead_pooled_connection_runs_again_on_a_fresh_one() {
    let main = test_runtime();
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "2")]));
    let (key_id, key) = main.block_on(new_key(&app));
    let email = main.block_on(account_of_100(&app));
    let tag = format!("spend-{}", uuid::Uuid::new_v4().simple());
    let (spent, retried) = on_a_dead_pooled_connection(&app, async |state| {
        let spend = paidonce::credits::spend(state, key_id, &email, 30, "r1", &tag, None);
        ran_again_at_begin(&tag, spend).await
    });
    assert_eq!(spent.map(|s| s.balance_after).ok(), Some(70));
    assert!(
        retried,
        "the retry ran (not a live connection met by chance)"
    );
    let account = main.block_on(crate::credits::account(&app, &key, &email));
    assert_eq!(account["balance"], 70, "{account}");
}

/// A credits API key: its id and the key itself.
async fn new_key(app: &TestApp) -> (uuid::Uuid, String) {
    let (id, key) = paidonce::credits::create_key(&app.state, "test shop")
        .await
        .unwrap();
    (id, secrecy::ExposeSecret::expose_secret(&key).to_owned())
}

/// A new account holding a paid starter pack's 100 credits; its e-mail.
async fn account_of_100(app: &TestApp) -> String {
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let (status, outcome) = app.deliver(&succeeded(&new_event_id(), &order)).await;
    assert_eq!((status, outcome.as_str()), (200, "applied"));
    email
}

/// An operator action takes a connection that has just answered: after a restart the
/// operator's click is not the request that finds the first dead connection.
#[test]
fn an_operator_action_on_a_dead_pooled_connection_is_performed() {
    use paidonce::orders::actions::{ActionKind, perform};
    let main = test_runtime();
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "2")]));
    let order = main.block_on(app.create_order(&unique_email(), "starter"));
    let id = uuid::Uuid::parse_str(order["id"].as_str().unwrap()).unwrap();
    let key = format!("cancel-{}", uuid::Uuid::new_v4().simple());
    let performed = on_a_dead_pooled_connection(&app, async |state| {
        perform(
            state,
            id,
            ActionKind::Cancel,
            "the shopper asked us to",
            &key,
        )
        .await
    });
    let performed = performed.expect("performed, not 503");
    assert_eq!(performed.status.as_str(), "canceled", "{performed:?}");
    assert_eq!(main.block_on(app.order_status(&id.to_string())), "canceled");
}

/// A failed refund's event asks the provider for the charge before its transaction
/// opens, after looking up whether it was seen: that lookup is a read, run again on a
/// fresh connection when its pooled one was dead.
#[test]
fn a_failed_refund_whose_lookup_meets_a_dead_pooled_connection_is_processed() {
    use crate::stripe_double::{StripeDouble, as_pairs};
    let main = test_runtime();
    let (app, stripe, order, charge) = main.block_on(async {
        let stripe = StripeDouble::start().await;
        let env = stripe.env();
        let mut env = as_pairs(&env);
        // Two connections over two workers: one per shard, no shared read connection.
        env.push(("DATABASE_POOL_SIZE", "2"));
        let app = spawn_app_with(&env).await;
        let order = app.create_order(&unique_email(), "starter").await;
        let pi = order["payment_intent_id"].as_str().unwrap().to_owned();
        stripe.set_status(&pi, "succeeded");
        let intent = stripe.intents.lock().unwrap().objects[&pi].clone();
        let charge = intent["latest_charge"].as_str().unwrap().to_owned();
        let paid = app
            .deliver(&stripe_event("payment_intent.succeeded", intent))
            .await;
        assert_eq!(paid, (200, "applied".into()));
        (app, stripe, order, charge)
    });
    let pi = order["payment_intent_id"].as_str().unwrap();
    let failed = stripe_event("refund.failed", refund_object(&charge, pi, 500, "failed"));
    let body = serde_json::to_vec(&failed).unwrap();
    let processed = on_a_dead_pooled_connection(&app, async |state| {
        paidonce::webhook::process(state, &body).await
    });
    let processed = processed.expect("processed, not 503");
    assert_eq!(processed.receipt.event_id, failed["id"].as_str().unwrap());
    let asked = main.block_on(stripe.requests("GET", "/v1/charges/"));
    assert_eq!(asked.len(), 1, "the charge was asked for after the lookup");
}

#[test]
fn an_order_created_on_a_dead_pooled_connection_is_created() {
    let main = test_runtime();
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "2")]));
    let email = unique_email();
    let request = paidonce::orders::create::validate(&email, "starter").unwrap();
    let created = on_a_dead_pooled_connection(&app, async |state| {
        paidonce::orders::create::create_order(state, &request, None, None)
            .await
            .map(|(order, _)| order.id)
    });
    let id = created.expect("created despite the dead connection");
    let status = main.block_on(app.get_order(&id.to_string())).status();
    assert_eq!(status, 200);
}

/// A restart whose news reaches a worker one connection at a time: the spend's key
/// lookup finds the shared read connection dead (and runs again on a fresh one); the
/// pooled connection's backend, killed too, has not been noticed by the time the spend
/// checks it out. Having seen one connection die, the pool verifies its older ones.
#[test]
fn a_spend_after_a_restart_meets_no_dead_connection_once_one_was_found_dead() {
    let main = test_runtime();
    // Four connections over two workers: each shard has a pooled one and a shared one.
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "4")]));
    let (_, key) = main.block_on(new_key(&app));
    let email = main.block_on(account_of_100(&app));
    let state = app.state.clone();
    let spent = std::thread::scope(|s| {
        s.spawn(|| {
            let frozen = test_runtime();
            let pooled = frozen_pooled_connection(&frozen, &state);
            // Opens the shard's shared read connection unless a worker has.
            frozen
                .block_on(
                    state
                        .db
                        .read(async |mut c| diesel::sql_query("SELECT 1").execute(&mut c).await),
                )
                .unwrap();
            // Every other connection of the app dies first, its shared read one included.
            kill_backends(&app, &format!("pid <> {pooled}"));
            let authorization = format!("Bearer {key}");
            let key_id = frozen
                .block_on(paidonce::credits::authenticate(
                    &state,
                    Some(&authorization),
                ))
                .expect("the key lookup runs again on a fresh connection");
            kill_backends(&app, &format!("pid = {pooled}"));
            let tag = format!("restart-{}", uuid::Uuid::new_v4().simple());
            frozen.block_on(claimed_again(
                &tag,
                spend_30_as_the_api_does(&state, key_id, &email),
            ))
        })
        .join()
        .unwrap()
    });
    let (spent, resent) = spent;
    assert!(
        !resent,
        "the claim was not handed the dead connection (its resend would hide that)"
    );
    let spent = spent.expect("spent, not 503");
    assert_eq!(spent.body["balance_after"], 70, "{}", spent.body);
    let account = main.block_on(crate::credits::account(&app, &key, &email));
    assert_eq!(account["balance"], 70, "{account}");
}

/// What `POST /api/v1/accounts/{email}/spends` does once the key is checked: claims a
/// fresh Idempotency-Key, spends 30 credits, and stores the answer.
async fn spend_30_as_the_api_does(
    state: &paidonce::state::AppState,
    key_id: uuid::Uuid,
    email: &str,
) -> Result<paidonce::idempotency::StoredResponse, paidonce::error::AppError> {
    use paidonce::idempotency;
    let idem = format!("spend-{}", uuid::Uuid::new_v4().simple());
    let idem = idempotency::IdempotencyKey::parse(idem.as_bytes())?;
    let body = br#"{"credits": 30, "reference": "r1"}"#;
    let path = format!("/api/v1/accounts/{email}/spends");
    let fingerprint = idempotency::fingerprint("POST", &path, body);
    idempotency::run(state, Some(&idem), &fingerprint, async |resume| {
        let spent =
            paidonce::credits::spend(state, key_id, email, 30, "r1", idem.as_str(), resume).await?;
        let body = serde_json::to_value(spent).unwrap();
        Ok((actix_web::http::StatusCode::CREATED, body))
    })
    .await
}

/// A spend's Idempotency-Key claim is its first write: sent on a dead pooled connection,
/// it is sent once more on a fresh one (an INSERT that makes one row however often it is
/// sent), and the spend goes on.
#[test]
fn a_spend_whose_key_claim_meets_a_dead_pooled_connection_is_spent() {
    let main = test_runtime();
    // Two connections over two workers: one per shard, no shared read connection.
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "2")]));
    let (key_id, key) = main.block_on(new_key(&app));
    let email = main.block_on(account_of_100(&app));
    let tag = format!("claim-{}", uuid::Uuid::new_v4().simple());
    let (spent, resent) = on_a_dead_pooled_connection(&app, async |state| {
        claimed_again(&tag, spend_30_as_the_api_does(state, key_id, &email)).await
    });
    assert!(
        resent,
        "the claim met the dead connection (not a live one by chance)"
    );
    let spent = spent.expect("spent, not 503");
    assert_eq!(spent.body["balance_after"], 70, "{}", spent.body);
    let account = main.block_on(crate::credits::account(&app, &key, &email));
    assert_eq!(account["balance"], 70, "{account}");
}

/// Whichever request meets the first dead connection (here an account summary, whose
/// error is only converted into a 503), the next request on that worker is not handed
/// its dead pool-mate.
#[test]
fn after_one_request_met_a_dead_connection_the_next_meets_none() {
    let main = test_runtime();
    // Six connections over two workers: each shard has two pooled and a shared one.
    let app = main.block_on(spawn_app_with(&[("DATABASE_POOL_SIZE", "6")]));
    let email = unique_email();
    let order = main.block_on(app.create_order(&email, "starter"));
    let (status, outcome) = main.block_on(app.deliver(&succeeded(&new_event_id(), &order)));
    assert_eq!((status, outcome.as_str()), (200, "applied"));
    let state = app.state.clone();
    let (first, second) = std::thread::scope(|s| {
        s.spawn(|| {
            let frozen = test_runtime();
            // Both pooled connections opened by the frozen runtime, handed back in the
            // order the pool hands them out again (first in, first out).
            let (met_first, met_second) = frozen.block_on(async {
                let held = [state.db.get().await.unwrap(), state.db.get().await.unwrap()];
                held.into_iter().for_each(paidonce::db::pool::discard);
                let mut a = state.db.get().await.unwrap();
                let mut b = state.db.get().await.unwrap();
                let pids = (backend_pid(&mut a).await, backend_pid(&mut b).await);
                drop(a);
                drop(b);
                pids
            });
            kill_backends(&app, &format!("pid = {met_first}"));
            let first = frozen.block_on(paidonce::credits::summary(&state, &email));
            kill_backends(&app, &format!("pid = {met_second}"));
            let second = frozen.block_on(paidonce::credits::summary(&state, &email));
            (first.map(|s| s.balance), second.map(|s| s.balance))
        })
        .join()
        .unwrap()
    });
    assert!(
        matches!(first, Err(paidonce::error::AppError::DbUnavailable(_))),
        "the first request met the dead connection: {first:?}"
    );
    assert_eq!(
        second.ok(),
        Some(100),
        "the second is not handed its dead pool-mate"
    );
}
