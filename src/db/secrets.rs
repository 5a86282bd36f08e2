//! Secrets generated once per database and shared by every instance using it.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::app_secrets;

/// The stored value for `name`, storing `candidate` first if there is none. Every
/// instance racing here ends up with the same value.
pub async fn get_or_insert(
    conn: &mut AsyncPgConnection,
    name: &str,
    candidate: &str,
) -> QueryResult<String> {
    diesel::insert_into(app_secrets::table)
        .values((app_secrets::name.eq(name), app_secrets::value.eq(candidate)))
        .on_conflict(app_secrets::name)
        .do_nothing()
        .execute(conn)
        .await?;
    app_secrets::table
        .find(name)
        .select(app_secrets::value)
        .first(conn)
        .await
}
