//! What is shown of an order. The public view never carries the e-mail or the client
//! secret; the created view (answer to its creator) carries both; the timeline is the
//! operator's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::db;
use crate::db::actions::Action;
use crate::db::events::EventSummary;
use crate::db::ledger::Entry;
use crate::db::orders::{Order, Transition};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicOrder {
    pub id: Uuid,
    pub status: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl From<&Order> for PublicOrder {
    fn from(o: &Order) -> Self {
        PublicOrder {
            id: o.id,
            status: o.status.as_str().to_owned(),
            credits: o.credits,
            amount: o.amount,
            currency: o.currency.clone(),
            created_at: o.created_at,
            paid_at: o.paid_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedOrder {
    pub id: Uuid,
    pub status: String,
    pub email: String,
    pub pack_id: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    pub client_secret: Option<String>,
    pub pay_url: String,
    pub status_url: String,
}

impl CreatedOrder {
    pub fn new(order: &Order, email: &str, base: &Url) -> Self {
        CreatedOrder {
            id: order.id,
            status: order.status.as_str().to_owned(),
            email: email.to_owned(),
            pack_id: order.pack_id.clone(),
            credits: order.credits,
            amount: order.amount,
            currency: order.currency.clone(),
            payment_intent_id: order.payment_intent_id.clone(),
            client_secret: order.client_secret.clone(),
            pay_url: page_url(base, order.id, "pay"),
            status_url: page_url(base, order.id, "status"),
        }
    }
}

pub fn page_url(base: &Url, id: Uuid, page: &str) -> String {
    format!("{}/orders/{id}/{page}", base.as_str().trim_end_matches('/'))
}

/// One order as the operator sees it (the order page and `GET /admin/api/orders/{id}`):
/// the order, whose it is, and everything that happened to it.
pub struct Timeline {
    pub order: Order,
    pub email: String,
    pub transitions: Vec<Transition>,
    pub events: Vec<EventSummary>,
    pub ledger: Vec<Entry>,
    pub actions: Vec<Action>,
    pub charges: Vec<String>,
    /// The account's balance now.
    pub balance: i64,
}

/// `NotFound` when there is no such order.
pub async fn timeline(state: &AppState, id: Uuid) -> Result<Timeline, AppError> {
    let mut conn = state.db.get().await?;
    let order = db::orders::find(&conn, id)
        .await?
        .ok_or(AppError::NotFound("order"))?;
    Ok(Timeline {
        email: db::accounts::email_of(&mut conn, order.account_id).await?,
        transitions: db::orders::transitions(&mut conn, id).await?,
        events: db::events::for_order(&mut conn, id).await?,
        ledger: db::ledger::for_order(&mut conn, id).await?,
        actions: db::actions::for_order(&mut conn, id).await?,
        charges: db::charges::for_order(&mut conn, id).await?,
        balance: db::accounts::balance(&mut conn, order.account_id).await?,
        order,
    })
}
