//! Hostile webhook bodies over HTTP (issue 18, fuzzing): real events, correctly signed,
//! with each field settlement reads replaced by values of the wrong type, size or sign,
//! and real events cut short or with bytes flipped. Each gets a clean answer (200, or
//! a 4xx saying why), never a 5xx, and the books still add up afterwards.

use serde_json::{Value, json};

use crate::helpers::*;

/// Values no field of Stripe's should hold, and a few that are almost right.
fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(-1),
        json!(0),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1e308),
        json!(0.5),
        json!(""),
        json!("x".repeat(10_000)),
        json!("\u{202e}\u{0007}\r\n"),
        json!(true),
        json!([]),
        json!([[[[["deep"]]]]]),
        json!({}),
        json!({"id": {"id": "pi_nested"}}),
    ]
}

const FIELDS: [&str; 14] = [
    "id",
    "type",
    "created",
    "livemode",
    "account",
    "amount",
    "amount_received",
    "amount_refunded",
    "currency",
    "status",
    "payment_intent",
    "metadata",
    "latest_charge",
    "last_payment_error",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_fields_in_signed_events_answer_cleanly_and_keep_the_books_whole() {
    let app = spawn_app_with(&[("DATABASE_POOL_SIZE", "12")]).await;
    let email = unique_email();
    let order = app.create_order(&email, "standard").await;
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for kind in [
        "payment_intent.succeeded",
        "charge.refunded",
        "charge.dispute.closed",
    ] {
        let base = match kind {
            "payment_intent.succeeded" => succeeded(&new_event_id(), &order),
            "charge.refunded" => refunded(&new_event_id(), &order, 1000),
            _ => stripe_event(
                kind,
                dispute_object(
                    "ch_hostile",
                    order["payment_intent_id"].as_str(),
                    order["amount"].as_i64().unwrap(),
                    "lost",
                ),
            ),
        };
        for field in FIELDS {
            for value in hostile_values() {
                for top in [true, false] {
                    let mut event = base.clone();
                    event["id"] = json!(new_event_id());
                    let target = if top {
                        &mut event
                    } else {
                        &mut event["data"]["object"]
                    };
                    target[field] = value.clone();
                    bodies.push(serde_json::to_vec(&event).unwrap());
                }
            }
        }
        // Cut short at every tenth byte, and one byte flipped at every seventh.
        let whole = serde_json::to_vec(&base).unwrap();
        for end in (0..whole.len()).step_by(10) {
            bodies.push(whole[..end].to_vec());
        }
        for at in (0..whole.len()).step_by(7) {
            let mut flipped = whole.clone();
            flipped[at] ^= 0x5a;
            bodies.push(flipped);
        }
    }
    let total = bodies.len();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for chunk in bodies.chunks(32) {
        let answers = futures_util::future::join_all(chunk.iter().map(|body| async {
            let header = paidonce::webhook::signature::header(
                WEBHOOK_SECRET,
                chrono::Utc::now().timestamp(),
                body,
            );
            app.post_webhook_raw(body.clone(), Some(&header)).await
        }))
        .await;
        for (body, res) in chunk.iter().zip(answers) {
            let status = res.status().as_u16();
            assert!(
                status == 200 || (400..500).contains(&status),
                "{status} for {}",
                String::from_utf8_lossy(&body[..body.len().min(400)])
            );
            *statuses.entry(status).or_default() += 1;
        }
    }
    eprintln!("{total} hostile signed bodies: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n > 0));
    assert!(statuses.get(&400).is_some_and(|n| *n > 0));
    // The app still works and its books add up: whatever the hostile events did to the
    // order went through the same exactly-once path as real ones.
    assert!(app.get_order(order["id"].as_str().unwrap()).await.status() == 200);
    app.assert_money_invariant().await;
    let fresh = app.create_order(&unique_email(), "starter").await;
    assert_eq!(
        app.deliver(&succeeded(&new_event_id(), &fresh)).await,
        (200, "applied".into())
    );
}
