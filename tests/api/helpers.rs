//! Test harness: one Postgres per test process (TEST_DATABASE_URL, or a cluster started
//! with the app's own embedded-database code), a migrated template, and a fresh database
//! cloned from it for every test. `spawn_app` serves the real app on a real socket.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use paidonce::config::Config;
use paidonce::db::embedded::{EmbeddedPostgres, Options};
use paidonce::startup::Application;
use paidonce::webhook::signature;

use crate::facts::{self, Fact};
use crate::log_capture;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub const WEBHOOK_SECRET: &str = "whsec_test_secret_for_paidonce";
pub const ADMIN_PASSWORD: &str = "test-admin-password";
const TEMPLATE: &str = "paidonce_template";

static SERVER: OnceLock<String> = OnceLock::new();
static EMBEDDED: OnceLock<EmbeddedPostgres> = OnceLock::new();
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();

/// Admin URL of the test server, given a database name.
fn server_url(db: &str) -> String {
    // Every test makes its database first: from then on, events a Stripe double records
    // as made by Stripe are facts for the money checker.
    paidonce_testkit::stripe_double::observe_events(crate::facts::record);
    let base = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            return url
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or(url);
        }
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("paidonce-test-pg");
        let options = Options {
            settings: vec![
                ("fsync".into(), "off".into()),
                ("synchronous_commit".into(), "off".into()),
                ("full_page_writes".into(), "off".into()),
                ("max_connections".into(), "400".into()),
            ],
        };
        let pg = EmbeddedPostgres::start(&dir, &options).expect("starting the test Postgres");
        let url = pg.url("postgres");
        let _ = EMBEDDED.set(pg);
        // Stop it when the test process exits (if this process started it).
        extern "C" fn stop_at_exit() {
            if let Some(pg) = EMBEDDED.get() {
                pg.stop();
            }
        }
        unsafe {
            libc::atexit(stop_at_exit);
        }
        url.rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(url)
    });
    // The embedded URL carries the socket as percent-encoded host, so the db is the last segment.
    format!("{base}/{db}")
}

pub async fn admin_conn() -> AsyncPgConnection {
    let url = server_url("postgres");
    AsyncPgConnection::establish(&url)
        .await
        .expect("connecting to the test server")
}

async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let mut conn = admin_conn().await;
            // Several test processes (nextest) may race here.
            conn.batch_execute("SELECT pg_advisory_lock(7283001)")
                .await
                .expect("lock");
            let exists = diesel::sql_query(format!(
                "SELECT 1 FROM pg_database WHERE datname = '{TEMPLATE}'"
            ))
            .execute(&mut conn)
            .await
            .expect("probe template")
                == 1;
            if !exists {
                conn.batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                    .await
                    .expect("create template");
            }
            paidonce::db::run_migrations(&server_url(TEMPLATE))
                .await
                .expect("migrating the template");
            conn.batch_execute("SELECT pg_advisory_unlock(7283001)")
                .await
                .expect("unlock");
        })
        .await;
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        ensure_template().await;
        let name = format!("t_{}", Uuid::new_v4().simple());
        let mut conn = admin_conn().await;
        let mut tries = 0;
        loop {
            match conn
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
                .await
            {
                Ok(()) => break,
                // The template is briefly busy while another process migrates or clones it.
                Err(e) if tries < 50 && e.to_string().contains("being accessed by other users") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("creating test database: {e}"),
            }
        }
        TestDb {
            url: server_url(&name),
            name,
        }
    }

    /// A database of its own with nothing in it: no migrations run.
    pub async fn empty() -> TestDb {
        let name = format!("t_{}", Uuid::new_v4().simple());
        admin_conn()
            .await
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .expect("creating an empty test database");
        TestDb {
            url: server_url(&name),
            name,
        }
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = AsyncPgConnection::establish(&server_url("postgres")).await {
                    let _ = conn
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Configuration for a test app: sandbox provider, fixed secrets, no background reconciler.
pub fn test_config(db_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db_url.to_owned()),
        ("PAIDONCE_BIND".into(), "127.0.0.1:0".into()),
        ("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("RECONCILE_INTERVAL_SECS".into(), "0".into()),
        ("DATABASE_POOL_SIZE".into(), "10".into()),
        ("RUST_LOG".into(), "warn".into()),
        // Tests make many orders from one address; the limit's own tests lower it.
        ("RATE_LIMIT_ORDERS".into(), "100000/min".into()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test config")
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: std::sync::Arc<TestDb>,
    pub state: actix_web::web::Data<paidonce::state::AppState>,
}

/// An app on its own fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let db = std::sync::Arc::new(TestDb::new().await);
    spawn_app_on(db, overrides).await
}

/// Another instance on the same database (two instances, one database).
pub async fn spawn_app_on(db: std::sync::Arc<TestDb>, overrides: &[(&str, &str)]) -> TestApp {
    log_capture::install();
    let app = Application::build(test_config(&db.url, overrides))
        .await
        .expect("building the app");
    let address = format!("http://{}", app.local_addr());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        address,
        client,
        db,
        state,
    }
}

/// Every test app's log lines fail the test that drops the app if they carry a secret
/// (SPEC §2): the apps of this process share one subscriber, so each drop scans what was
/// written since the last scan, whoever wrote it.
impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            log_capture::assert_no_secret_since_last_scan();
        }
    }
}

impl TestApp {
    pub async fn post_order(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/orders", self.address))
            .json(body)
            .send()
            .await
            .expect("post order")
    }

    pub async fn post_order_with_key(&self, body: &Value, key: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/orders", self.address))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("post order")
    }

    /// Creates an order and returns its 201 body.
    pub async fn create_order(&self, email: &str, pack: &str) -> Value {
        let res = self
            .post_order(&json!({"email": email, "pack_id": pack}))
            .await;
        assert_eq!(res.status(), 201);
        res.json().await.expect("order json")
    }

    pub async fn get_order(&self, id: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/orders/{id}", self.address))
            .send()
            .await
            .expect("get order")
    }

    pub async fn order_status(&self, id: &str) -> String {
        let body: Value = self.get_order(id).await.json().await.expect("json");
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Signs `event` exactly as the Stripe CLI does (t=now, one v1, whole whsec as key).
    pub async fn post_webhook(&self, event: &Value) -> reqwest::Response {
        post_signed_event(&self.client, &self.address, event)
            .await
            .expect("post webhook")
    }

    pub async fn post_webhook_raw(&self, body: Vec<u8>, header: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/stripe", self.address))
            .header("Content-Type", "application/json");
        if let Some(h) = header {
            req = req.header("Stripe-Signature", h);
        }
        let res = req.body(body.clone()).send().await.expect("post webhook");
        if res.status() == 200
            && let Ok(event) = serde_json::from_slice::<Value>(&body)
        {
            facts::record(&event);
        }
        res
    }

    /// Posts and returns (status, outcome).
    pub async fn deliver(&self, event: &Value) -> (u16, String) {
        let res = self.post_webhook(event).await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        (
            status,
            body["outcome"].as_str().unwrap_or_default().to_owned(),
        )
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .expect("admin get")
    }

    /// The body of a plain GET (a page, /metrics), without credentials.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body")
    }

    /// An operator page's HTML.
    pub async fn admin_text(&self, path: &str) -> String {
        self.admin_get(path).await.text().await.expect("admin page")
    }

    /// An operator JSON answer.
    pub async fn admin_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.admin_get(path).await.json().await.expect("admin json")
    }

    /// The account's balance as the operator API reports it. An account that does not
    /// exist is a failure, never a zero: a test asking for it expected one.
    pub async fn balance(&self, email: &str) -> i64 {
        let res = self
            .admin_get(&format!("/admin/api/accounts/{email}"))
            .await;
        assert_eq!(res.status(), 200, "no account for {email}");
        let body: Value = res.json().await.expect("account json");
        body["balance"].as_i64().expect("balance")
    }

    /// SPEC §3's money rules, checked over every order in the database.
    pub async fn assert_money_invariant(&self) {
        assert_money_invariant(&self.db).await;
    }
}

#[derive(diesel::QueryableByName, Debug)]
struct OrderMoney {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    credits: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    amount: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    payment_intent_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    paid: bool,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    revoked_column: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    grants: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    grant_rows: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    revoked: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    granted_after_review: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    operator_granted: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    sandbox_status: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    sandbox_amount: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    sandbox_refunded: Option<i64>,
}

impl OrderMoney {
    /// Whether something outside the app says this order was paid: a success event the
    /// app accepted for this order, with its amount and currency; the provider's record
    /// of a succeeded PaymentIntent of that amount; or an operator's grant.
    fn payment_is_a_fact(&self, facts: &[Fact]) -> bool {
        let order_id = self.id.to_string();
        let by_event = facts.iter().any(|f| match f {
            Fact::Succeeded {
                amount,
                currency,
                order_id: named,
                payment_intent,
            } => {
                *amount == self.amount
                    && currency.eq_ignore_ascii_case(&self.currency)
                    && named.as_deref().is_none_or(|n| n == order_id)
                    && self
                        .payment_intent_id
                        .as_deref()
                        .is_none_or(|pi| pi == payment_intent)
            }
            _ => false,
        });
        let by_sandbox = self.sandbox_status.as_deref() == Some("succeeded")
            && self.sandbox_amount == Some(self.amount);
        let by_double = self
            .payment_intent_id
            .as_deref()
            .and_then(facts::double_intent)
            .is_some_and(|pi| {
                pi["status"] == "succeeded"
                    && pi["amount_received"].as_i64().or(pi["amount"].as_i64()) == Some(self.amount)
                    && pi["currency"]
                        .as_str()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&self.currency))
            });
        by_event || by_sandbox || by_double || self.operator_granted
    }

    /// The refund total the outside world stated: the highest total in a refund event
    /// that fits this order's charge, or the provider's own; after a refund failed, the
    /// provider's total, raised only by refund events made since.
    fn refund_total_from_facts(&self, facts: &[Fact]) -> i64 {
        let failed_at = facts
            .iter()
            .filter_map(|f| match f {
                Fact::RefundFailed { created } => Some(*created),
                _ => None,
            })
            .max();
        let provider = self
            .sandbox_refunded
            .or_else(|| {
                self.payment_intent_id
                    .as_deref()
                    .and_then(facts::double_amount_refunded)
            })
            .unwrap_or(0);
        let stated = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Refunded {
                    charge_amount,
                    amount_refunded,
                    currency,
                    created,
                } if *charge_amount == self.amount
                    && currency.eq_ignore_ascii_case(&self.currency)
                    && (0..=self.amount).contains(amount_refunded)
                    && failed_at.is_none_or(|t| *created >= t) =>
                {
                    Some(*amount_refunded)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0);
        stated.max(provider)
    }
}

/// SPEC §3's money rules over every order in the database, with what must be true taken
/// from outside the app (facts.rs: the events it accepted, the provider's records, the
/// operator's decisions) and what is true read from the ledger by raw SQL.
pub async fn assert_money_invariant(db: &TestDb) {
    let mut conn = db.conn().await;
    let rows: Vec<OrderMoney> = diesel::sql_query(
        "SELECT o.id, o.status, o.credits, o.amount, o.currency, o.payment_intent_id, \
           (o.paid_at IS NOT NULL) AS paid, o.revoked AS revoked_column, \
           COALESCE(SUM(l.delta) FILTER (WHERE l.kind = 'grant'), 0)::bigint AS grants, \
           COUNT(l.id) FILTER (WHERE l.kind = 'grant') AS grant_rows, \
           COALESCE(-SUM(l.delta) FILTER (WHERE l.kind IN ('refund', 'dispute')), 0)::bigint AS revoked, \
           EXISTS (SELECT 1 FROM ledger g WHERE g.order_id = o.id AND g.kind = 'grant' AND ( \
             NOT EXISTS (SELECT 1 FROM order_transitions t WHERE t.order_id = o.id AND t.at = g.created_at \
               AND t.to_status NOT IN ('pending', 'processing', 'failed', 'canceled', 'needs_review')) \
             OR EXISTS (SELECT 1 FROM order_transitions t WHERE t.order_id = o.id AND t.at = g.created_at \
               AND t.to_status = 'needs_review'))) AS granted_after_review, \
           EXISTS (SELECT 1 FROM operator_actions a WHERE a.order_id = o.id \
             AND a.action = 'resolve_grant' AND a.state = 'done') AS operator_granted, \
           s.status AS sandbox_status, s.amount AS sandbox_amount, s.amount_refunded AS sandbox_refunded \
         FROM orders o LEFT JOIN ledger l ON l.order_id = o.id \
           LEFT JOIN sandbox_payment_intents s ON s.id = o.payment_intent_id \
         GROUP BY o.id, s.id",
    )
    .load(&mut conn)
    .await
    .expect("money query");
    for o in rows {
        assert_eq!(
            o.revoked, o.revoked_column,
            "order {}: the revoked column is the sum of its revocation rows",
            o.id
        );
        let facts = facts::about(&o.id.to_string(), o.payment_intent_id.as_deref());
        if o.grant_rows > 0 {
            assert!(
                o.payment_is_a_fact(&facts),
                "order {} ({}) holds a grant that no accepted success event, provider record \
                 or operator decision supports",
                o.id,
                o.status
            );
        }
        if !o.paid {
            assert_eq!(
                (o.grant_rows, o.revoked),
                (0, 0),
                "order {} ({}) never paid: no ledger rows",
                o.id,
                o.status
            );
            continue;
        }
        assert_eq!(
            (o.grant_rows, o.grants),
            (1, o.credits),
            "order {} ({}) must have exactly one grant",
            o.id,
            o.status
        );
        if o.status == "needs_review" {
            // No credits move in a review: a grant it holds came before the contradiction,
            // and never more is taken back than was granted. "Before" is read from the
            // grant's own transaction (its rows share that transaction's now()): it must
            // have moved the order to a paid status, and not into review. Comparing the
            // grant's time with the review's would not do: now() is when a transaction
            // began, and the review's may have begun first and waited for the order's
            // lock while the grant committed (seen once in CI).
            assert!(
                !o.granted_after_review,
                "order {}: credits granted while in review",
                o.id
            );
            assert!(o.revoked <= o.credits, "order {}", o.id);
            continue;
        }
        // A lost dispute takes back everything (a dispute closes once: the first close
        // accepted is its end); otherwise the refund total the facts state decides, by
        // SPEC §3's rule written out here: floor(credits × refunded / amount).
        let lost = facts
            .iter()
            .find_map(|f| match f {
                Fact::DisputeClosed { lost } => Some(*lost),
                _ => None,
            })
            .unwrap_or(false);
        let expected = if lost {
            o.credits
        } else {
            let refunded = o.refund_total_from_facts(&facts);
            i64::try_from(i128::from(o.credits) * i128::from(refunded) / i128::from(o.amount))
                .expect("revocation fits")
        };
        assert_eq!(
            o.revoked, expected,
            "order {} ({}) revoked credits",
            o.id, o.status
        );
    }
    // Every account's balance is the sum of its ledger rows (and never double-counts).
    #[derive(diesel::QueryableByName)]
    struct Mismatch {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let m: Mismatch = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM accounts a WHERE \
           (SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE account_id = a.id AND order_id IS NOT NULL) <> \
           (SELECT COALESCE(SUM(l.delta), 0) FROM ledger l JOIN orders o ON o.id = l.order_id WHERE o.account_id = a.id)",
    )
    .get_result(&mut conn)
    .await
    .expect("balance query");
    assert_eq!(m.n, 0, "ledger rows belong to the order's own account");
    // The running balance the ledger's trigger keeps is the ledger's sum, on every account.
    let drifted: Vec<(String, i64, i64)> = diesel::sql_query(
        "SELECT a.email, a.balance, COALESCE(SUM(l.delta), 0)::bigint AS total \
         FROM accounts a LEFT JOIN ledger l ON l.account_id = a.id \
         GROUP BY a.id HAVING a.balance <> COALESCE(SUM(l.delta), 0)",
    )
    .load::<BalanceRow>(&mut conn)
    .await
    .expect("running balance query")
    .into_iter()
    .map(|r| (r.email, r.balance, r.total))
    .collect();
    assert!(
        drifted.is_empty(),
        "accounts whose running balance is not Σ ledger (email, balance, sum): {drifted:?}"
    );
}

#[derive(diesel::QueryableByName)]
struct BalanceRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    balance: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
}

/// Signs `event` as the Stripe CLI does and posts it to the instance at `addr` (an app
/// of this process, or a `paidonce serve` of its own): its answer, or why none came.
pub async fn post_signed_event(
    client: &reqwest::Client,
    addr: &str,
    event: &Value,
) -> reqwest::Result<reqwest::Response> {
    let body = serde_json::to_vec(event).expect("event bytes");
    let header = signature::header(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), &body);
    let res = client
        .post(format!("{addr}/webhooks/stripe"))
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", header)
        .body(body)
        .send()
        .await?;
    if res.status() == 200 {
        facts::record(event);
    }
    Ok(res)
}

/// A new order for `email` on the instance at `addr`: its 201 body.
pub async fn create_order_at(client: &reqwest::Client, addr: &str, email: &str) -> Value {
    let res = client
        .post(format!("{addr}/api/orders"))
        .json(&json!({"email": email, "pack_id": "starter"}))
        .send()
        .await
        .expect("post order");
    assert_eq!(res.status(), 201, "creating an order at {addr}");
    res.json().await.expect("order json")
}

pub use paidonce_testkit::events::{
    dispute_object, disputed, failed, new_event_id, pi_event, refund_object, refunded,
    stripe_event, succeeded,
};

pub fn unique_email() -> String {
    format!("buyer-{}@example.com", Uuid::new_v4().simple())
}
