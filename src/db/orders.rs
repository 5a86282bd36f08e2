//! Orders and their transition log. Status changes go through `settle` only, with a
//! guarded UPDATE (… WHERE status = the status we locked) as a second line of defence.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::{accounts, order_charges, order_transitions, orders};
use crate::domain::order::{Change, DisputeState, OrderState, OrderStatus};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: Uuid,
    pub account_id: Uuid,
    pub pack_id: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub status: OrderStatus,
    pub provider_key: String,
    pub payment_intent_id: Option<String>,
    pub client_secret: Option<String>,
    pub amount_refunded: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub dispute: DisputeState,
    pub refunds_as_of: Option<i64>,
    pub reason: Option<String>,
    pub revoked: i64,
}

impl Order {
    pub fn state(&self) -> OrderState {
        OrderState {
            status: self.status,
            credits: self.credits,
            amount: self.amount,
            currency: self.currency.clone(),
            payment_intent_id: self.payment_intent_id.clone(),
            amount_refunded: self.amount_refunded,
            dispute: self.dispute,
            refunds_as_of: self.refunds_as_of,
            paid: self.paid_at.is_some(),
            revoked: self.revoked,
        }
    }
}

/// The facts a change was decided on, which the guarded UPDATE checks are still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub status: OrderStatus,
    pub amount_refunded: i64,
    pub dispute: DisputeState,
}

impl Order {
    pub fn expected(&self) -> Expected {
        Expected {
            status: self.status,
            amount_refunded: self.amount_refunded,
            dispute: self.dispute,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrder<'a> {
    pub id: Uuid,
    pub account_id: Uuid,
    pub pack_id: &'a str,
    pub credits: i64,
    pub amount: i64,
    pub currency: &'a str,
    pub provider_key: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = order_transitions, check_for_backend(diesel::pg::Pg))]
pub struct Transition {
    #[serde(rename = "from")]
    pub from_status: Option<String>,
    #[serde(rename = "to")]
    pub to_status: String,
    pub cause: String,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, order: &NewOrder<'_>) -> QueryResult<Order> {
    diesel::insert_into(orders::table)
        .values(order)
        .returning(Order::as_returning())
        .get_result(conn)
        .await
}

/// Takes a shared connection: the poll runs it on `Db::read`'s.
pub async fn find(mut conn: &AsyncPgConnection, id: Uuid) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .first(&mut conn)
        .await
        .optional()
}

/// Takes the order's row lock until the caller's transaction ends. Call inside a transaction.
/// The writes below take a shared connection too: settle pipelines them.
pub async fn lock(mut conn: &AsyncPgConnection, id: Uuid) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .for_update()
        .first(&mut conn)
        .await
        .optional()
}

/// Like `lock`, finding the order by a charge it was seen with.
pub async fn lock_by_charge(
    mut conn: &AsyncPgConnection,
    charge_id: &str,
) -> QueryResult<Option<Order>> {
    let owner = order_charges::table
        .filter(order_charges::charge_id.eq(charge_id))
        .select(order_charges::order_id);
    orders::table
        .filter(orders::id.eq_any(owner))
        .select(Order::as_select())
        .for_update()
        .first(&mut conn)
        .await
        .optional()
}

/// Like `lock`, finding the order by its PaymentIntent.
pub async fn lock_by_payment_intent(
    mut conn: &AsyncPgConnection,
    pi: &str,
) -> QueryResult<Option<Order>> {
    orders::table
        .filter(orders::payment_intent_id.eq(pi))
        .select(Order::as_select())
        .for_update()
        .first(&mut conn)
        .await
        .optional()
}

/// Writes a decided change, only if the order still holds the facts it was decided on
/// (status, refund total, dispute). `None` means somebody else changed it first: that
/// cannot happen under the row lock, and if it ever did, no credit moves on a stale read.
pub async fn apply_change(
    mut conn: &AsyncPgConnection,
    id: Uuid,
    expected: &Expected,
    change: &Change,
) -> QueryResult<Option<Order>> {
    let paid_at = if change.marks_paid {
        Some(Utc::now())
    } else {
        None
    };
    diesel::update(
        orders::table
            .filter(orders::id.eq(id))
            .filter(orders::status.eq(expected.status))
            .filter(orders::amount_refunded.eq(expected.amount_refunded))
            .filter(orders::dispute.eq(expected.dispute)),
    )
    .set((
        orders::status.eq(change.to),
        orders::amount_refunded.eq(change.amount_refunded),
        orders::dispute.eq(change.dispute),
        orders::refunds_as_of.eq(change.refunds_as_of),
        orders::revoked.eq(change.revoked),
        orders::reason.eq(
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Text>>("COALESCE(")
                .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(
                    change.reason.as_deref(),
                )
                .sql(", reason)"),
        ),
        orders::paid_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("COALESCE(paid_at, ")
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(paid_at)
        .sql(")")),
        orders::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Order::as_returning())
    .cached()
    .get_result(&mut conn)
    .await
    .optional()
}

/// Records the PaymentIntent the provider made for this order; a no-op when it is
/// already attached (a resumed creation gets the same intent back).
pub async fn attach_payment_intent(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    pi: &str,
    client_secret: &str,
) -> QueryResult<Option<Order>> {
    diesel::update(
        orders::table
            .filter(orders::id.eq(id))
            .filter(orders::payment_intent_id.is_null()),
    )
    .set((
        orders::payment_intent_id.eq(pi),
        orders::client_secret.eq(client_secret),
        orders::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Order::as_returning())
    .cached()
    .get_result(conn)
    .await
    .optional()
}

pub async fn insert_transition(
    mut conn: &AsyncPgConnection,
    order_id: Uuid,
    from: Option<OrderStatus>,
    to: OrderStatus,
    cause: &str,
    detail: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(order_transitions::table)
        .values((
            order_transitions::order_id.eq(order_id),
            order_transitions::from_status.eq(from.map(OrderStatus::as_str)),
            order_transitions::to_status.eq(to.as_str()),
            order_transitions::cause.eq(cause),
            order_transitions::detail.eq(detail),
        ))
        .execute(&mut conn)
        .await
        .map(|_| ())
}

pub async fn transitions(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Vec<Transition>> {
    order_transitions::table
        .filter(order_transitions::order_id.eq(order_id))
        .order(order_transitions::id)
        .select(Transition::as_select())
        .load(conn)
        .await
}

/// Claims up to `limit` unsettled orders created between `oldest` and `newest` for one
/// reconciler pass: each gets a lease, and rows another pass holds are skipped, so two
/// instances never ask the provider about the same order in the same pass.
pub async fn claim_for_reconcile(
    conn: &mut AsyncPgConnection,
    newest: DateTime<Utc>,
    oldest: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    // Diesel cannot express UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED).
    diesel::sql_query(
        "UPDATE orders SET reconcile_lease_until = $4 WHERE id IN ( \
            SELECT id FROM orders \
            WHERE status IN ('pending', 'processing', 'failed') AND created_at <= $1 AND created_at >= $2 \
              AND (reconcile_lease_until IS NULL OR reconcile_lease_until < now()) \
            ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id, account_id, pack_id, credits, amount, currency, status, provider_key, payment_intent_id, \
                   client_secret, amount_refunded, created_at, updated_at, paid_at, dispute, refunds_as_of, reason, revoked",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(newest)
    .bind::<diesel::sql_types::Timestamptz, _>(oldest)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .bind::<diesel::sql_types::Timestamptz, _>(lease_until)
    .load(conn)
    .await
}

pub async fn release_leases(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<()> {
    diesel::update(orders::table.filter(orders::id.eq_any(ids)))
        .set(orders::reconcile_lease_until.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The newest orders with their account's e-mail, for the operator page.
pub async fn recent_with_email(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<(Order, String)>> {
    orders::table
        .inner_join(accounts::table)
        .order(orders::created_at.desc())
        .limit(limit)
        .select((Order::as_select(), accounts::email))
        .load(conn)
        .await
}

/// Unsettled orders older than `before`, with their account's e-mail: what an operator should look at.
pub async fn stuck_with_email(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<(Order, String)>> {
    orders::table
        .inner_join(accounts::table)
        .filter(orders::status.eq_any(OrderStatus::UNSETTLED))
        .filter(orders::created_at.lt(before))
        .order(orders::created_at)
        .limit(limit)
        .select((Order::as_select(), accounts::email))
        .load(conn)
        .await
}

pub async fn counts_by_status(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(OrderStatus, i64)>> {
    orders::table
        .group_by(orders::status)
        .select((orders::status, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Payments of `email`'s orders that failed since `since` (card-testing guard).
pub async fn failed_payments_since(
    conn: &mut AsyncPgConnection,
    email: &str,
    since: DateTime<Utc>,
) -> QueryResult<i64> {
    order_transitions::table
        .inner_join(orders::table.inner_join(accounts::table))
        .filter(accounts::email.eq(email))
        .filter(order_transitions::to_status.eq(OrderStatus::Failed.as_str()))
        .filter(order_transitions::at.gt(since))
        .count()
        .get_result(conn)
        .await
}
