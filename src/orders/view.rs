//! What the API shows of an order. The public view never carries the e-mail or the
//! client secret; the created view (answer to its creator) carries both.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::db::orders::Order;

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
