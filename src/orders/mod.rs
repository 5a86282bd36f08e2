//! Orders: creation in phases around the provider call, and settlement, the one
//! exactly-once transition shared by webhook, reconciler and return page.

pub mod create;
pub mod return_sync;
pub mod settle;
pub mod view;
