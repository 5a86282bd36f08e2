//! Aggregates for the operator page.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::ledger;

/// (credits granted, credits revoked as a positive number).
pub async fn credit_totals(conn: &mut AsyncPgConnection) -> QueryResult<(i64, i64)> {
    ledger::table
        .select((
            diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "COALESCE(SUM(delta) FILTER (WHERE delta > 0), 0)::bigint",
            ),
            diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "COALESCE(-SUM(delta) FILTER (WHERE delta < 0), 0)::bigint",
            ),
        ))
        .first(conn)
        .await
}

/// Accounts whose balance is below zero (refunds or lost disputes after spending), the
/// deepest first: (e-mail, balance). Read from the running balance the ledger's trigger
/// keeps (migration `running_balance`), not summed from the ledger: the dashboard asks
/// every 10 s, and the sum over a million ledger rows took about a second, the accounts
/// table about 15 ms. No index on the balance: it would cost every ledger change its
/// HOT update of the account row.
pub async fn accounts_in_deficit(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<(String, i64)>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        balance: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT email, balance FROM accounts WHERE balance < 0 ORDER BY balance, email LIMIT $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.email, r.balance)).collect())
}
