//! One integration test binary (one link step on a 2-core machine).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly by design"
)]

mod admin;
mod browser;
mod catchup;
mod cli;
mod concurrency;
mod crash;
mod credits;
mod db_outage;
mod error_pages;
mod facts;
mod helpers;
mod hostile_events;
mod idempotency;
mod lifecycle;
mod limits;
mod log_capture;
mod notifications;
mod operator;
mod orders;
mod pages;
mod promises;
mod reconcile;
mod sandbox;
mod shared_reads;
mod shop;
mod shutdown;
mod statements;
mod stripe_double;
mod stripe_provider;
mod webhook_events;
mod webhook_signature;
