//! Builds the application the same way for `main` and for the tests: database (embedded
//! or DATABASE_URL), migrations, state, HTTP server and background tasks.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use url::Url;

use crate::config::Config;
use crate::db::embedded::{EmbeddedPostgres, Options};
use crate::db::{self, Db, PooledConn};
use crate::payments::{
    Provider, retry::RetryPolicy, sandbox::SandboxProvider, stripe::StripeProvider,
};
use crate::state::AppState;

/// A database URL, and the embedded server behind it when we started one (stopped
/// when this is dropped).
pub struct Database {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// DATABASE_URL, or the private cluster under PAIDONCE_DATA_DIR.
    pub async fn open(config: &Config) -> anyhow::Result<Database> {
        if let Some(url) = &config.database_url {
            return Ok(Database {
                url: url.expose_secret().to_owned(),
                embedded: None,
            });
        }
        let pg = EmbeddedPostgres::start(&config.data_dir, &Options::default())?;
        pg.ensure_database("paidonce").await?;
        Ok(Database {
            url: pg.url("paidonce"),
            embedded: Some(pg),
        })
    }
}

/// Everything but the HTTP server: used by `serve`, `reconcile` and the tests.
pub async fn build_state(
    config: Config,
    url: &str,
    public_base_url: Url,
) -> anyhow::Result<AppState> {
    // With more than one rustls backend in the build (dependencies may enable aws-lc-rs
    // too), rustls cannot choose by itself and the Stripe client would panic: choose.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Install the metrics recorder now: counters recorded before it exists are lost.
    crate::telemetry::metrics();
    let pool = Db::connect(url, config.pool_size, http_workers())?;
    let mut conn = pool.get().await.context("connecting to the database")?;
    let csrf_key =
        db::secrets::get_or_insert(&mut conn, "csrf_key", &crate::random::token(48)).await?;
    let webhook_secrets = if !config.webhook_secrets.is_empty() {
        config.webhook_secrets.clone()
    } else if config.is_sandbox() {
        let generated = format!("whsec_{}", crate::random::token(40));
        vec![SecretString::from(
            db::secrets::get_or_insert(&mut conn, "sandbox_webhook_secret", &generated).await?,
        )]
    } else {
        Vec::new()
    };
    // This thread is no worker: close the connection rather than leave it, driven from
    // here, in a worker's shard (see db::pool).
    drop(PooledConn::take(conn));
    let provider = match &config.stripe {
        Some(stripe) => Provider::Stripe(Box::new(StripeProvider::new(
            stripe,
            RetryPolicy::default(),
        )?)),
        None => Provider::Sandbox(SandboxProvider::new(pool.clone())),
    };
    let config_admin_failures = config.admin_failures;
    let config_orders = config.orders_per_client;
    let config_credits = config.credits_api_per_key;
    let admin_password = config
        .admin_password
        .clone()
        .unwrap_or_else(|| SecretString::from(crate::random::token(24)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    Ok(AppState {
        config,
        db: pool,
        provider,
        webhook_secrets,
        csrf_key: SecretString::from(csrf_key),
        admin_password,
        public_base_url,
        signature_failures: Default::default(),
        http,
        sandbox_wakeup: Default::default(),
        drain: Default::default(),
        duplicates: Default::default(),
        return_sync_turns: Default::default(),
        admin_failures: std::sync::Mutex::new(crate::domain::rate::SlidingWindow::new(
            config_admin_failures,
        )),
        orders_per_client: crate::domain::rate::KeyedLimit::new(config_orders),
        credits_per_key: crate::domain::rate::KeyedLimit::new(config_credits),
    })
}

/// One actix worker per core, at least two; the pool has a shard per worker.
fn http_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// How long a graceful stop waits for in-flight requests before it closes them.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Application {
    local_addr: SocketAddr,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    database: Database,
    /// Registered before the address is announced: a SIGTERM that comes right after
    /// `listening on` is a graceful stop, not the default action's instant death.
    signals: StopSignals,
    /// The listening socket, still owned by the server; closed by hand on the way down.
    listener: std::os::fd::RawFd,
}

impl Application {
    /// Opens the database (starting the embedded one if needed), migrates and binds.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        config.check_serve()?;
        // Checked whole before anything starts: a bad file refuses to start, naming its line.
        let packs = match &config.packs_file {
            Some(path) => {
                Some(crate::packs_file::load(path).map_err(|e| anyhow::anyhow!("PACKS_FILE {e}"))?)
            }
            None => None,
        };
        let database = Database::open(&config).await?;
        Self::build_with(config, database, packs).await
    }

    async fn build_with(
        config: Config,
        database: Database,
        packs: Option<Vec<crate::packs_file::PackSpec>>,
    ) -> anyhow::Result<Application> {
        let built = async {
            let applied = db::run_migrations(&database.url).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
            if let Some(packs) = &packs {
                let (applied, hidden) = db::packs::apply(&database.url, packs).await?;
                tracing::info!(packs = applied, hidden, "packs applied from PACKS_FILE");
            }
            let listener = TcpListener::bind(config.bind)
                .with_context(|| format!("binding {}", config.bind))?;
            let local_addr = listener.local_addr()?;
            let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            let signals = StopSignals::register()?;
            let base = match &config.public_base_url {
                Some(url) => url.clone(),
                None => Url::parse(&format!("http://{local_addr}"))?,
            };
            let state = web::Data::new(build_state(config, &database.url, base).await?);
            let app_state = state.clone();
            let server = HttpServer::new(move || {
                // Runs on each worker thread as it starts.
                app_state.db.claim_for_this_thread();
                App::new()
                    .wrap(actix_web::middleware::from_fn(crate::web::drain::track))
                    .wrap(actix_web::middleware::from_fn(
                        crate::web::error_pages::html_for_browsers,
                    ))
                    .wrap(actix_web::middleware::from_fn(
                        crate::web::compression::only_pages,
                    ))
                    .wrap(actix_web::middleware::Compress::default())
                    .wrap(tracing_actix_web::TracingLogger::<
                        crate::web::span::PathOnlySpan,
                    >::new())
                    .app_data(app_state.clone())
                    .configure(crate::web::configure)
            })
            .workers(http_workers())
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_TIMEOUT.as_secs())
            .listen(listener)?
            .run();
            anyhow::Ok((local_addr, server, state, signals, listener_fd))
        }
        .await;
        // On an error `database` is dropped here, stopping an embedded server we started.
        let (local_addr, server, state, signals, listener) = built?;
        Ok(Application {
            local_addr,
            server,
            state,
            database,
            signals,
            listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT or SIGTERM, both graceful (in-flight requests finish, for up
    /// to SHUTDOWN_TIMEOUT), then stops the background tasks and the embedded database.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            state,
            database,
            signals,
            listener,
            ..
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        // The dispatcher stops at the signal itself, not once the requests have drained:
        // a send waiting on the merchant is released at once instead of running into its
        // own timeout (and counting as a failed try) while the drain goes on.
        let (signaled_tx, signaled_rx) = watch::channel(false);
        let signaled_tx = std::sync::Arc::new(signaled_tx);
        let mut tasks = Vec::new();
        if !state.config.reconcile_interval.is_zero() {
            tasks.push(tokio::spawn(crate::reconcile::run_loop(
                state.clone(),
                state.config.reconcile_interval,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(flush_duplicates(
            state.clone(),
            stop_rx.clone(),
        )));
        if state.config.merchant_webhook.is_some() {
            tasks.push(tokio::spawn(crate::notify::dispatch::run(
                state.clone(),
                signaled_rx,
            )));
        }
        if state.config.is_sandbox() {
            tasks.push(tokio::spawn(crate::sandbox::delivery::run_worker(
                state.clone(),
                stop_rx.clone(),
            )));
        }
        let handle = server.handle();
        let draining = state.clone();
        let signaled = signaled_tx.clone();
        tokio::spawn(async move {
            signals.wait().await;
            let _ = signaled.send(true);
            tracing::info!(
                in_flight = draining.drain.in_flight(),
                timeout_secs = SHUTDOWN_TIMEOUT.as_secs(),
                "shutting down: finishing in-flight requests, answering new ones 503"
            );
            stop_gracefully(&draining.drain, handle, listener).await;
        });
        let served = server.await;
        let _ = signaled_tx.send(true);
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // Last, once the tasks that use it have stopped: an embedded server stops here.
        drop(database);
        served.context("HTTP server")
    }
}

/// In-flight requests first (see `web::drain`: actix-server's own graceful stop can drop
/// them), then the server: accepting paused, the listening socket shut so that new
/// connections are refused at connect rather than left in its backlog, and the workers
/// stopped. By then no request is in flight, so the stop need not wait for idle
/// keep-alive connections (it would, for their whole keep-alive timeout).
async fn stop_gracefully(
    drain: &crate::web::drain::Drain,
    handle: actix_web::dev::ServerHandle,
    listener: std::os::fd::RawFd,
) {
    drain.start();
    if !drain.wait_idle(SHUTDOWN_TIMEOUT).await {
        tracing::warn!(
            in_flight = drain.in_flight(),
            "shutdown timeout: closing requests still in flight"
        );
    }
    handle.pause().await;
    // The pause reaches the accept thread asynchronously; shut the socket only once it
    // no longer polls it (else it logs an accept error). The accept thread owns and
    // closes the socket only during the stop below, so this fd cannot name another yet.
    tokio::time::sleep(ACCEPT_PAUSE).await;
    if let Err(e) = nix::sys::socket::shutdown(listener, nix::sys::socket::Shutdown::Both) {
        tracing::warn!(error = %e, "could not shut the listening socket");
    }
    // A keep-alive connection may have brought one more request meanwhile: its 503.
    drain.wait_idle(ACCEPT_PAUSE).await;
    handle.stop(false).await;
}

/// Ample for the accept thread to act on a pause (it is woken at once).
const ACCEPT_PAUSE: Duration = Duration::from_millis(20);

/// Adds the duplicate deliveries counted in memory to their events now and then, and
/// once more on the way out.
async fn flush_duplicates(
    state: web::Data<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(DUPLICATE_FLUSH) => false,
            _ = stop.changed() => true,
        };
        state.duplicates.flush(&state.db).await;
        if stopping {
            return;
        }
    }
}

const DUPLICATE_FLUSH: Duration = Duration::from_secs(2);

/// SIGTERM and SIGINT, registered up front.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn register() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
