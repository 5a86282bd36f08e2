//! Orders: creation in phases around the provider call, and settlement, the one
//! exactly-once transition shared by webhook, reconciler and return page.

pub mod actions;
pub mod create;
pub mod return_sync;
pub mod settle;
pub mod sync;
pub mod view;

use uuid::Uuid;

use crate::db::{self, orders::Order};
use crate::error::AppError;
use crate::state::AppState;

/// An order by id, read on the worker's shared lookup connection (db::pool::Db::read);
/// `NotFound` when there is none.
pub async fn lookup(state: &AppState, id: Uuid) -> Result<Order, AppError> {
    state
        .db
        .read(async |c| db::orders::find(c, id).await)
        .await?
        .ok_or(AppError::NotFound("order"))
}
