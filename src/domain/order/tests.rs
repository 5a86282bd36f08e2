use super::*;
use OrderStatus::*;

fn order(status: OrderStatus) -> OrderState {
    OrderState {
        status,
        credits: 100,
        amount: 500,
        currency: "usd".into(),
        payment_intent_id: Some("pi_1".into()),
        amount_refunded: 0,
        dispute_seen: false,
    }
}

fn fact(kind: FactKind) -> PaymentFact {
    PaymentFact {
        payment_intent_id: Some("pi_1".into()),
        kind,
    }
}

fn succeeded() -> FactKind {
    FactKind::Succeeded {
        amount_received: 500,
        currency: "USD".into(),
    }
}

fn refunded(total: i64) -> FactKind {
    FactKind::Refunded {
        charge_amount: 500,
        amount_refunded: total,
        currency: "usd".into(),
    }
}

/// What a decision boils down to, for the table.
#[derive(Debug, PartialEq)]
enum Want {
    Noop,
    Mismatch,
    To(OrderStatus),
    /// Same status, something remembered.
    Remember,
}

fn summarise(order: &OrderState, d: &Decision) -> Want {
    match d {
        Decision::Noop => Want::Noop,
        Decision::Mismatch(_) => Want::Mismatch,
        Decision::Apply(c) if c.to == order.status => Want::Remember,
        Decision::Apply(c) => Want::To(c.to),
    }
}

#[test]
fn every_status_and_fact_pair_decides_as_the_spec_says() {
    let facts = [
        ("processing", FactKind::Processing),
        ("succeeded", succeeded()),
        ("failed", FactKind::Failed),
        ("canceled", FactKind::Canceled),
        ("refund", refunded(200)),
        ("dispute", FactKind::Disputed),
    ];
    // Rows: status; columns in the order of `facts`.
    let table: [(OrderStatus, [Want; 6]); 9] = [
        (
            Pending,
            [
                Want::To(Processing),
                Want::To(Paid),
                Want::To(Failed),
                Want::To(Canceled),
                Want::Remember,
                Want::Remember,
            ],
        ),
        (
            Processing,
            [
                Want::Noop,
                Want::To(Paid),
                Want::To(Failed),
                Want::To(Canceled),
                Want::Remember,
                Want::Remember,
            ],
        ),
        (
            Failed,
            [
                Want::To(Processing),
                Want::To(Paid),
                Want::Noop,
                Want::To(Canceled),
                Want::Remember,
                Want::Remember,
            ],
        ),
        (
            Paid,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::To(PartiallyRefunded),
                Want::To(Disputed),
            ],
        ),
        (
            PartiallyRefunded,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Remember,
            ],
        ),
        (
            Refunded,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Remember,
            ],
        ),
        (
            Canceled,
            [
                Want::Noop,
                Want::Mismatch,
                Want::Noop,
                Want::Noop,
                Want::Remember,
                Want::Remember,
            ],
        ),
        (
            Disputed,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::To(PartiallyRefunded),
                Want::Noop,
            ],
        ),
        (
            NeedsReview,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Remember,
                Want::Remember,
            ],
        ),
    ];
    for (status, wants) in table {
        let mut current = order(status);
        // Rows that were refunded already hold the refund total that got them there.
        if matches!(status, PartiallyRefunded) {
            current.amount_refunded = 200;
        }
        if matches!(status, Refunded) {
            current.amount_refunded = 500;
        }
        if matches!(status, Disputed) {
            current.dispute_seen = true;
        }
        for ((name, kind), want) in facts.iter().zip(wants) {
            let got = summarise(&current, &decide(&current, &fact(kind.clone())));
            assert_eq!(got, want, "{status} + {name}");
        }
    }
}

#[test]
fn no_fact_ever_moves_a_paid_order_backwards() {
    let backwards = [Pending, Processing, Failed, Canceled];
    for status in [Paid, PartiallyRefunded, Refunded, Disputed] {
        for kind in [
            FactKind::Processing,
            FactKind::Failed,
            FactKind::Canceled,
            succeeded(),
            FactKind::Disputed,
            refunded(100),
        ] {
            if let Decision::Apply(c) = decide(&order(status), &fact(kind.clone())) {
                assert!(
                    !backwards.contains(&c.to),
                    "{status} + {kind:?} -> {}",
                    c.to
                );
            }
        }
    }
}

#[test]
fn success_grants_the_pack_credits_once_and_marks_paid() {
    let Decision::Apply(c) = decide(&order(Pending), &fact(succeeded())) else {
        panic!("not applied")
    };
    assert_eq!(c.grant, Some(100));
    assert!(c.marks_paid);
    assert_eq!(c.revoke, None);
    assert_eq!(decide(&order(Paid), &fact(succeeded())), Decision::Noop);
}

#[test]
fn contradicting_success_is_a_mismatch_for_any_unpaid_status() {
    for status in [Pending, Processing, Failed] {
        for kind in [
            FactKind::Succeeded {
                amount_received: 499,
                currency: "usd".into(),
            },
            FactKind::Succeeded {
                amount_received: 500,
                currency: "eur".into(),
            },
        ] {
            assert!(
                matches!(decide(&order(status), &fact(kind)), Decision::Mismatch(_)),
                "{status}"
            );
        }
    }
}

#[test]
fn an_event_for_another_payment_intent_is_a_mismatch() {
    let other = PaymentFact {
        payment_intent_id: Some("pi_other".into()),
        kind: succeeded(),
    };
    assert!(matches!(
        decide(&order(Pending), &other),
        Decision::Mismatch(_)
    ));
}

#[test]
fn an_event_before_the_intent_is_attached_is_matched_by_order_alone() {
    let unattached = OrderState {
        payment_intent_id: None,
        ..order(Pending)
    };
    assert_eq!(
        summarise(&unattached, &decide(&unattached, &fact(succeeded()))),
        Want::To(Paid)
    );
}

#[test]
fn refund_before_success_takes_effect_when_the_success_arrives() {
    let mut o = order(Pending);
    let Decision::Apply(c) = decide(&o, &fact(refunded(500))) else {
        panic!()
    };
    assert_eq!(
        (c.to, c.amount_refunded, c.grant, c.revoke.clone()),
        (Pending, 500, None, None)
    );
    o.amount_refunded = c.amount_refunded;
    let Decision::Apply(c) = decide(&o, &fact(succeeded())) else {
        panic!()
    };
    assert_eq!(c.to, Refunded);
    assert_eq!(c.grant, Some(100));
    assert_eq!(
        c.revoke,
        Some(Revocation {
            delta: -100,
            refund_total: 500
        })
    );
}

#[test]
fn dispute_before_success_makes_the_paid_order_disputed() {
    let o = OrderState {
        dispute_seen: true,
        ..order(Processing)
    };
    let Decision::Apply(c) = decide(&o, &fact(succeeded())) else {
        panic!()
    };
    assert_eq!((c.to, c.grant), (Disputed, Some(100)));
}

#[test]
fn refunds_revoke_from_the_cumulative_total_never_twice() {
    let mut o = order(Paid);
    let mut revoked = 0;
    // partial, the same partial again, a stale lower total, then the full refund.
    for (total, want_status) in [
        (150, Some(PartiallyRefunded)),
        (150, None),
        (100, None),
        (500, Some(Refunded)),
    ] {
        match decide(&o, &fact(refunded(total))) {
            Decision::Apply(c) => {
                assert_eq!(Some(c.to), want_status, "total {total}");
                revoked += c.revoke.map_or(0, |r| r.delta);
                o.status = c.to;
                o.amount_refunded = c.amount_refunded;
            }
            Decision::Noop => assert_eq!(want_status, None, "total {total}"),
            Decision::Mismatch(why) => panic!("{why}"),
        }
    }
    assert_eq!(revoked, -100);
}

#[test]
fn refund_larger_than_the_order_is_a_mismatch() {
    assert!(matches!(
        decide(&order(Paid), &fact(refunded(501))),
        Decision::Mismatch(_)
    ));
    let other_charge = FactKind::Refunded {
        charge_amount: 900,
        amount_refunded: 100,
        currency: "usd".into(),
    };
    assert!(matches!(
        decide(&order(Paid), &fact(other_charge)),
        Decision::Mismatch(_)
    ));
}

#[test]
fn revoked_credits_rounds_down() {
    for (credits, amount, refunded, want) in [
        (100, 500, 0, 0),
        (100, 500, 1, 0), // 0.2 credits
        (100, 500, 4, 0), // 0.8 credits
        (100, 500, 5, 1),
        (100, 500, 250, 50),
        (100, 500, 499, 99), // 99.8
        (100, 500, 500, 100),
        (100, 500, 900, 100), // capped at the amount
        (550, 2500, 1, 0),
        (550, 2500, 1000, 220),
        (7, 3, 2, 4), // 4.67
        (i64::MAX, i64::MAX, i64::MAX - 1, i64::MAX - 1),
    ] {
        assert_eq!(
            revoked_credits(credits, amount, refunded),
            want,
            "{credits} {amount} {refunded}"
        );
    }
}

#[test]
fn small_refund_worth_zero_credits_changes_status_without_a_ledger_row() {
    let Decision::Apply(c) = decide(&order(Paid), &fact(refunded(1))) else {
        panic!()
    };
    assert_eq!(
        (c.to, c.revoke, c.amount_refunded),
        (PartiallyRefunded, None, 1)
    );
}

#[test]
fn status_names_round_trip() {
    for s in OrderStatus::ALL {
        assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), s);
    }
    assert!("nope".parse::<OrderStatus>().is_err());
}
