//! The webhook's hot statements stay prepared on their connection (db::cached): diesel
//! would otherwise parse, plan and close them on every call (issue 7's profile).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use paidonce::db::events::{self, NewEvent, RawJson};
use paidonce::db::orders;
use paidonce::domain::order::{Change, DisputeState, OrderStatus};
use uuid::Uuid;

use crate::helpers::TestDb;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test]
async fn the_webhook_writes_are_prepared_once_per_connection() {
    let db = TestDb::new().await;
    let mut conn = db.conn().await;
    // As received: spacing and key order that a re-serialisation would not keep.
    let payload = br#"{"object":  "event", "id": "evt_x"}"#;
    let change = Change {
        to: OrderStatus::Paid,
        grant: None,
        revoke: None,
        amount_refunded: 0,
        dispute: DisputeState::None,
        refunds_as_of: None,
        revoked: 0,
        marks_paid: true,
        reason: None,
    };
    for i in 0..3 {
        let id = format!("evt_prepared_{i}");
        let new = NewEvent {
            event_id: &id,
            event_type: "payment_intent.succeeded",
            livemode: false,
            api_version: if i % 2 == 0 {
                Some("2026-09-30.endive")
            } else {
                None
            },
            payload: RawJson(payload),
        };
        assert!(events::insert_if_new(&conn, &new).await.unwrap());
        assert!(!events::insert_if_new(&conn, &new).await.unwrap());
        events::set_outcome(&conn, &id, "applied", None)
            .await
            .unwrap();
        let expected = orders::Expected {
            status: OrderStatus::Pending,
            amount_refunded: 0,
            dispute: DisputeState::None,
        };
        let missing = orders::apply_change(&conn, Uuid::new_v4(), &expected, &change)
            .await
            .unwrap();
        assert!(missing.is_none());
    }
    let prepared = |pattern: &'static str| {
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1",
        )
        .bind::<Text, _>(pattern)
    };
    // The insert renders DEFAULT for a missing api_version: two texts, two statements,
    // each reused (the cache is keyed by the SQL text, so shapes never mix).
    for (pattern, what, shapes) in [
        ("INSERT INTO \"webhook_events\"%", "the dedup insert", 2),
        ("UPDATE \"webhook_events\"%", "the outcome update", 1),
        ("UPDATE \"orders\"%", "the guarded order update", 1),
    ] {
        let rows: Vec<Count> = prepared(pattern).load(&mut conn).await.unwrap();
        assert_eq!(
            rows[0].n, shapes,
            "{what}: one prepared statement per SQL shape"
        );
    }
    // The bytes went in as jsonb: Postgres parsed them (normalised key order and spacing).
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Text)]
        payload: String,
    }
    let stored: Stored = diesel::sql_query(
        "SELECT payload::text AS payload FROM webhook_events WHERE event_id = 'evt_prepared_0'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored.payload, r#"{"id": "evt_x", "object": "event"}"#);
}
