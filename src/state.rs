//! What every handler and background task shares. Built once by `startup`.

use std::sync::atomic::AtomicU64;

use secrecy::SecretString;
use url::Url;

use crate::config::Config;
use crate::db::Db;
use crate::payments::Provider;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub provider: Provider,
    /// Accepted webhook signing secrets: the configured ones, or the sandbox's generated one.
    pub webhook_secrets: Vec<SecretString>,
    /// Signs CSRF tokens; shared through the database by every instance.
    pub csrf_key: SecretString,
    pub admin_password: SecretString,
    /// Base of URLs the outside world sees.
    pub public_base_url: Url,
    /// Rejected webhook signatures since this instance started (SPEC: nothing is stored for them).
    pub signature_failures: AtomicU64,
    /// For the sandbox's outgoing webhook deliveries.
    pub http: reqwest::Client,
    /// Wakes this instance's sandbox delivery worker when an action enqueued events.
    pub sandbox_wakeup: tokio::sync::Notify,
    /// Requests in flight, and whether a graceful stop has begun.
    pub drain: crate::web::drain::Drain,
    /// Duplicate webhook deliveries not yet added to their events.
    pub duplicates: crate::webhook::DuplicateTally,
    /// New orders per client address, this instance's (in memory).
    pub orders_per_client: crate::domain::rate::KeyedLimit<std::net::IpAddr>,
    /// Credits API requests per key, this instance's (in memory).
    pub credits_per_key: crate::domain::rate::KeyedLimit<uuid::Uuid>,
    /// When this instance last asked the provider for each returning shopper's order.
    pub return_sync_turns: crate::orders::return_sync::Turns,
    /// Failed operator logins per client address, this instance's (in memory).
    pub admin_failures: std::sync::Mutex<crate::domain::rate::SlidingWindow<std::net::IpAddr>>,
}
