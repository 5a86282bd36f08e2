//! Accounts, keyed by lowercased e-mail.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::cached::CachedExt;
use crate::db::schema::accounts;
use crate::domain::email::Email;

/// The account for `email`, created on first use. Concurrent callers get the same id.
pub async fn upsert(conn: &mut AsyncPgConnection, email: &Email) -> QueryResult<Uuid> {
    diesel::insert_into(accounts::table)
        .values((
            accounts::id.eq(Uuid::new_v4()),
            accounts::email.eq(email.as_str()),
        ))
        .on_conflict(accounts::email)
        .do_update()
        // A no-op update of a non-key column: it returns the existing id in one round trip
        // and takes only FOR NO KEY UPDATE, which does not block the FOR KEY SHARE locks
        // that concurrent ledger inserts take on this account.
        .set(accounts::created_at.eq(accounts::created_at))
        .returning(accounts::id)
        .cached()
        .get_result(conn)
        .await
}

pub async fn find_id(conn: &mut AsyncPgConnection, email: &Email) -> QueryResult<Option<Uuid>> {
    accounts::table
        .filter(accounts::email.eq(email.as_str()))
        .select(accounts::id)
        .first(conn)
        .await
        .optional()
}

pub async fn email_of(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<String> {
    accounts::table
        .find(id)
        .select(accounts::email)
        .first(conn)
        .await
}

/// The account's running balance: Σ of its ledger rows, kept on the row by the
/// ledger's trigger in each row's own transaction (migration `running_balance`).
pub async fn balance(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<i64> {
    accounts::table
        .find(id)
        .select(accounts::balance)
        .first(conn)
        .await
}
