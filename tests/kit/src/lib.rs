//! What paidonce's integration tests (`tests/api`) and its load lab (`benches/load`)
//! share, so that they stop keeping a copy each: the Stripe API double that async-stripe
//! talks to through `STRIPE_API_BASE`, and Stripe's events built from the app's wire
//! types. (The embedded Postgres both start is the app's own, `paidonce::db::embedded`;
//! Stripe's signature scheme is `paidonce::webhook::signature`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod events;
pub mod stripe_double;
