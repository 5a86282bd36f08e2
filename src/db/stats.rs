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
