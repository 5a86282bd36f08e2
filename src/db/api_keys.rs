//! Credits API keys: a name, the SHA-256 of the secret, usage and revocation times.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::api_keys;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub secret_sha256: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: &str,
    secret_sha256: &[u8],
) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id),
            api_keys::name.eq(name),
            api_keys::secret_sha256.eq(secret_sha256),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find(mut conn: &AsyncPgConnection, id: Uuid) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .find(id)
        .select(ApiKey::as_select())
        .first(&mut conn)
        .await
        .optional()
}

pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<ApiKey>> {
    api_keys::table
        .order(api_keys::created_at)
        .select(ApiKey::as_select())
        .load(conn)
        .await
}

/// `false` when there is no such key or it was revoked before.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Records use, at most once a minute per key (a write per request would cost the API).
pub async fn touch(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(
        api_keys::table.filter(api_keys::id.eq(id)).filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(Utc::now() - chrono::Duration::minutes(1))),
        ),
    )
    .set(api_keys::last_used_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(|_| ())
}
