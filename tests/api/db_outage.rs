//! The database going away: a TCP proxy in front of Postgres that the test cuts.
//! While cut, webhooks answer 503 (so Stripe retries) and nothing is half-applied;
//! once restored, the same delivery applies exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::helpers::*;

/// Forwards TCP connections to the test server (its Unix socket, or its TCP address).
pub struct ChaosProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

enum Target {
    Unix(String),
    Tcp(String),
}

impl ChaosProxy {
    pub async fn start(db_url: &str) -> ChaosProxy {
        let url = url::Url::parse(db_url).unwrap();
        let host = percent_decode(url.host_str().unwrap_or_default());
        let target = if host.starts_with('/') {
            Target::Unix(format!("{host}/.s.PGSQL.{}", url.port().unwrap_or(5432)))
        } else {
            Target::Tcp(format!("{host}:{}", url.port().unwrap_or(5432)))
        };
        let target = Arc::new(target);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (cut2, links2) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the database is "down"
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    match &*target {
                        Target::Unix(path) => {
                            if let Ok(mut out) = UnixStream::connect(path).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        }
                        Target::Tcp(addr) => {
                            if let Ok(mut out) = TcpStream::connect(addr).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            }
                        }
                    }
                });
                links2.lock().await.push(link);
            }
        });
        ChaosProxy { port, cut, links }
    }

    /// The app's DATABASE_URL through the proxy.
    pub fn url(&self, db_url: &str) -> String {
        let url = url::Url::parse(db_url).unwrap();
        let user = if url.username().is_empty() {
            "postgres"
        } else {
            url.username()
        };
        let password = url.password().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "postgres://{user}{password}@127.0.0.1:{}{}",
            self.port,
            url.path()
        )
    }

    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_during_a_database_outage_is_503_and_applies_once_when_it_returns() {
    let db = Arc::new(TestDb::new().await);
    let proxy = ChaosProxy::start(&db.url).await;
    let proxied = proxy.url(&db.url);
    let app = spawn_app_on(db.clone(), &[("DATABASE_URL", &proxied)]).await;
    let email = unique_email();
    let order = app.create_order(&email, "starter").await;
    let event = succeeded(&new_event_id(), &order);

    proxy.cut().await;
    for _ in 0..3 {
        let (status, _) = app.deliver(&event).await;
        assert_eq!(status, 503, "Stripe must be told to retry");
    }
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    proxy.restore();
    // The connections that died in the outage are known dead and never handed out:
    // the first delivery once the database is back applies (issue 18: a restart costs
    // no request).
    let outcome = app.deliver(&event).await;
    assert_eq!(outcome, (200, "applied".into()));
    assert_eq!(app.deliver(&event).await, (200, "duplicate".into()));
    assert_eq!(app.balance(&email).await, 100);
    assert_money_invariant(&db).await;
}
