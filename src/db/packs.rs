//! Credit packs: seeded by migration, or the merchant's PACKS_FILE applied at start.
//! Only active packs are offered; a hidden one still names its old orders' pack.

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

/// The packs on offer, in the merchant's order.
pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Pack>> {
    packs::table
        .filter(packs::active.eq(true))
        .order((packs::sort_order, packs::id))
        .select(Pack::as_select())
        .load(conn)
        .await
}

/// A pack on offer (new orders); a hidden one is not found.
pub async fn find(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<Pack>> {
    packs::table
        .find(id)
        .filter(packs::active.eq(true))
        .select(Pack::as_select())
        .first(conn)
        .await
        .optional()
}

/// Any pack, hidden or not: what an existing order was bought as.
pub async fn name_of(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<String>> {
    packs::table
        .find(id)
        .select(packs::name)
        .first(conn)
        .await
        .optional()
}

/// Makes the packs table say what PACKS_FILE says, in one transaction: its packs added
/// or updated (new orders only: an order copied its credits and amount when it was made)
/// and on offer in the file's order; every other pack hidden. Returns (applied, hidden).
pub async fn apply(
    url: &str,
    specs: &[crate::packs_file::PackSpec],
) -> anyhow::Result<(usize, usize)> {
    use diesel_async::AsyncConnection;
    let mut conn = AsyncPgConnection::establish(url).await?;
    let specs = specs.to_vec();
    let hidden = conn
        .transaction::<_, diesel::result::Error, _>(async |c| {
            for p in &specs {
                diesel::insert_into(packs::table)
                    .values((
                        packs::id.eq(&p.id),
                        packs::name.eq(&p.name),
                        packs::credits.eq(p.credits),
                        packs::amount.eq(p.amount),
                        packs::currency.eq(&p.currency),
                        packs::sort_order.eq(p.position),
                        packs::active.eq(true),
                    ))
                    .on_conflict(packs::id)
                    .do_update()
                    .set((
                        packs::name.eq(&p.name),
                        packs::credits.eq(p.credits),
                        packs::amount.eq(p.amount),
                        packs::currency.eq(&p.currency),
                        packs::sort_order.eq(p.position),
                        packs::active.eq(true),
                    ))
                    .execute(c)
                    .await?;
            }
            let ids: Vec<&str> = specs.iter().map(|p| p.id.as_str()).collect();
            diesel::update(
                packs::table
                    .filter(packs::id.ne_all(ids))
                    .filter(packs::active.eq(true)),
            )
            .set(packs::active.eq(false))
            .execute(c)
            .await
        })
        .await?;
    Ok((specs.len(), hidden))
}
