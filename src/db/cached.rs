//! Lets diesel-async keep a prepared statement for queries diesel refuses to cache.
//!
//! Diesel caches nothing that contains an UPDATE, an `ON CONFLICT`, an INSERT of a struct
//! with `Option` fields or a `dsl::sql` fragment, because such builders *can* produce
//! different SQL from one call to the next. diesel-async then sends Parse + Describe
//! (one extra round trip) and Postgres parses and plans the statement again on every
//! call. The load harness (issue 7) measured this as three of the webhook transaction's
//! six statements. The queries wrapped here always render the same SQL text, and the
//! cache is keyed by that text (and bind types) because the wrapper declares no static
//! query id, so a query whose text did vary would get one cached statement per variant,
//! never a wrong one.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// Wrap a query whose SQL text never varies between calls.
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(pub Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // No static id: the statement cache falls back to the SQL text as the key.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

/// `Cached(query)` as a method, to end a builder chain.
pub trait CachedExt: Sized {
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q> CachedExt for Q {}
