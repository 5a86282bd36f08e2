//! Charge ids seen for each order, so an event that names only a charge (a dispute with
//! `payment_intent: null`) still finds its order.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::order_charges;

/// Remembers that `charge_id` belongs to `order_id`; a charge already known keeps its
/// first order (Stripe never moves a charge between PaymentIntents).
pub async fn remember(
    mut conn: &AsyncPgConnection,
    charge_id: &str,
    order_id: Uuid,
) -> QueryResult<()> {
    diesel::insert_into(order_charges::table)
        .values((
            order_charges::charge_id.eq(charge_id),
            order_charges::order_id.eq(order_id),
        ))
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn order_of(mut conn: &AsyncPgConnection, charge_id: &str) -> QueryResult<Option<Uuid>> {
    order_charges::table
        .find(charge_id)
        .select(order_charges::order_id)
        .first(&mut conn)
        .await
        .optional()
}

pub async fn for_order(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Vec<String>> {
    order_charges::table
        .filter(order_charges::order_id.eq(order_id))
        .order(order_charges::created_at)
        .select(order_charges::charge_id)
        .load(conn)
        .await
}
