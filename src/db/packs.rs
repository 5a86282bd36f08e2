//! Credit packs (read-only at run time; seeded by migration).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::db::schema::packs;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = packs, check_for_backend(diesel::pg::Pg))]
pub struct Pack {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
}

pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Pack>> {
    packs::table
        .order((packs::sort_order, packs::id))
        .select(Pack::as_select())
        .load(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<Pack>> {
    packs::table
        .find(id)
        .select(Pack::as_select())
        .first(conn)
        .await
        .optional()
}
