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
/// deepest first: (e-mail, balance).
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
        "SELECT a.email, SUM(l.delta)::bigint AS balance FROM ledger l JOIN accounts a ON a.id = l.account_id \
         GROUP BY a.email HAVING SUM(l.delta) < 0 ORDER BY balance LIMIT $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.email, r.balance)).collect())
}
