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
        dispute: DisputeState::None,
        refunds_as_of: None,
        paid: matches!(
            status,
            Paid | PartiallyRefunded | Refunded | Disputed | DisputeLost
        ),
        revoked: 0,
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

fn opened() -> FactKind {
    FactKind::DisputeOpened {
        amount: Some(500),
        currency: Some("usd".into()),
    }
}

fn closed(lost: bool) -> FactKind {
    FactKind::DisputeClosed {
        lost,
        amount: None,
        currency: None,
    }
}

fn refunded(total: i64) -> FactKind {
    FactKind::Refunded {
        charge_amount: 500,
        amount_refunded: total,
        currency: "usd".into(),
        as_of: None,
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
        ("failed", FactKind::Failed { error: None }),
        ("canceled", FactKind::Canceled),
        ("refund", refunded(200)),
        ("dispute", opened()),
    ];
    // Rows: status; columns in the order of `facts`.
    let table: [(OrderStatus, [Want; 6]); 10] = [
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
            DisputeLost,
            [
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Noop,
                Want::Remember,
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
            current.revoked = 40;
        }
        if matches!(status, Refunded) {
            current.amount_refunded = 500;
            current.revoked = 100;
        }
        if matches!(status, Disputed) {
            current.dispute = DisputeState::Open;
        }
        if matches!(status, DisputeLost) {
            current.dispute = DisputeState::Lost;
            current.revoked = 100;
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
    for status in [Paid, PartiallyRefunded, Refunded, Disputed, DisputeLost] {
        for kind in [
            FactKind::Processing,
            FactKind::Failed { error: None },
            FactKind::Canceled,
            succeeded(),
            opened(),
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
            kind: RevocationKind::Refund,
            refund_total: 500
        })
    );
}

#[test]
fn dispute_before_success_makes_the_paid_order_disputed() {
    let o = OrderState {
        dispute: DisputeState::Open,
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
                o.revoked = c.revoked;
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
        as_of: None,
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
    for &s in OrderStatus::ALL {
        assert_eq!(s.as_str().parse::<OrderStatus>().unwrap(), s);
    }
    assert!("nope".parse::<OrderStatus>().is_err());
}

/// Applies `kind` to `o` as settle would: the decided change becomes the stored order.
/// Returns the credits the step moved (grant plus revocation).
fn step(o: &mut OrderState, kind: FactKind) -> i64 {
    match decide(o, &fact(kind)) {
        Decision::Apply(c) => {
            o.status = c.to;
            o.amount_refunded = c.amount_refunded;
            o.dispute = c.dispute;
            o.refunds_as_of = c.refunds_as_of;
            o.paid |= c.marks_paid;
            o.revoked = c.revoked;
            c.grant.unwrap_or(0) + c.revoke.map_or(0, |r| r.delta)
        }
        Decision::Noop => 0,
        Decision::Mismatch(why) => panic!("{why}"),
    }
}

#[test]
fn a_lost_dispute_revokes_what_the_order_still_holds_once() {
    let mut o = order(Pending);
    let mut credits = step(&mut o, succeeded());
    credits += step(&mut o, refunded(250)); // 50 back already
    credits += step(&mut o, opened());
    assert_eq!(o.status, PartiallyRefunded);
    let Decision::Apply(c) = decide(&o, &fact(closed(true))) else {
        panic!()
    };
    assert_eq!(c.to, DisputeLost);
    assert_eq!(
        c.revoke.as_ref().map(|r| (r.delta, r.kind)),
        Some((-50, RevocationKind::Dispute))
    );
    credits += step(&mut o, closed(true));
    assert_eq!(credits, 0, "never more than the order granted");
    // Repeats and late refunds change nothing.
    assert_eq!(step(&mut o, closed(true)), 0);
    assert_eq!(step(&mut o, refunded(500)), 0);
    assert_eq!(step(&mut o, closed(false)), 0);
    assert_eq!(o.status, DisputeLost);
}

#[test]
fn a_won_dispute_restores_the_status_before_it_and_keeps_the_credits() {
    for (refund, before) in [(0, Paid), (100, PartiallyRefunded)] {
        let mut o = order(Pending);
        let mut credits = step(&mut o, succeeded());
        if refund > 0 {
            credits += step(&mut o, refunded(refund));
        }
        credits += step(&mut o, opened());
        if refund == 0 {
            assert_eq!(o.status, Disputed);
        }
        credits += step(&mut o, closed(false));
        assert_eq!(o.status, before);
        assert_eq!(credits, 100 - revoked_credits(100, 500, refund));
    }
}

#[test]
fn a_failed_refund_gives_its_credits_back_and_stale_events_do_not_take_them_again() {
    let mut o = order(Pending);
    let mut credits = step(&mut o, succeeded());
    credits += step(
        &mut o,
        FactKind::Refunded {
            charge_amount: 500,
            amount_refunded: 500,
            currency: "usd".into(),
            as_of: Some(100),
        },
    );
    assert_eq!((o.status, credits), (Refunded, 0));
    let synced = FactKind::RefundsSynced {
        charge_amount: 500,
        amount_refunded: 0,
        currency: "usd".into(),
        as_of: 200,
    };
    credits += step(&mut o, synced.clone());
    assert_eq!((o.status, credits), (Paid, 100));
    // The same failure again, and the refund event made before the failure, delivered late.
    assert_eq!(step(&mut o, synced), 0);
    let stale = FactKind::Refunded {
        charge_amount: 500,
        amount_refunded: 500,
        currency: "usd".into(),
        as_of: Some(100),
    };
    assert_eq!(step(&mut o, stale), 0);
    assert_eq!(o.status, Paid);
    // A new refund after the failure counts.
    let fresh = FactKind::Refunded {
        charge_amount: 500,
        amount_refunded: 250,
        currency: "usd".into(),
        as_of: Some(300),
    };
    assert_eq!(step(&mut o, fresh), -50);
    assert_eq!(o.status, PartiallyRefunded);
}

#[test]
fn contradicting_disputes_and_refund_objects_are_mismatches() {
    for kind in [
        FactKind::DisputeOpened {
            amount: Some(501),
            currency: None,
        },
        FactKind::DisputeClosed {
            lost: true,
            amount: Some(500),
            currency: Some("eur".into()),
        },
        FactKind::RefundsSynced {
            charge_amount: 500,
            amount_refunded: 600,
            currency: "usd".into(),
            as_of: 1,
        },
        FactKind::Contradiction("refund without a charge"),
    ] {
        assert!(
            matches!(
                decide(&order(Paid), &fact(kind.clone())),
                Decision::Mismatch(_)
            ),
            "{kind:?}"
        );
    }
}

/// Every permutation of `facts` from a pending order.
fn final_states(facts: &[FactKind]) -> Vec<(OrderState, i64)> {
    fn permute(rest: &mut Vec<FactKind>, done: &mut Vec<FactKind>, out: &mut Vec<Vec<FactKind>>) {
        if rest.is_empty() {
            out.push(done.clone());
        }
        for i in 0..rest.len() {
            let f = rest.remove(i);
            done.push(f.clone());
            permute(rest, done, out);
            done.pop();
            rest.insert(i, f);
        }
    }
    let mut orders = Vec::new();
    permute(&mut facts.to_vec(), &mut Vec::new(), &mut orders);
    orders
        .into_iter()
        .map(|seq| {
            let mut o = order(Pending);
            let credits: i64 = seq.into_iter().map(|k| step(&mut o, k)).sum();
            (o, credits)
        })
        .collect()
}

#[test]
fn every_arrival_order_of_the_facts_ends_in_the_same_state() {
    let cases: Vec<(Vec<FactKind>, OrderStatus, i64)> = vec![
        (
            vec![succeeded(), opened(), closed(true), refunded(250)],
            DisputeLost,
            0,
        ),
        (
            vec![succeeded(), opened(), closed(false), refunded(250)],
            PartiallyRefunded,
            50,
        ),
        (vec![succeeded(), opened(), closed(false)], Paid, 100),
        (vec![succeeded(), opened(), refunded(500)], Refunded, 0),
        (
            vec![succeeded(), closed(true), refunded(100)],
            DisputeLost,
            0,
        ),
        (
            vec![succeeded(), refunded(100), refunded(300), opened()],
            PartiallyRefunded,
            40,
        ),
        (
            vec![
                FactKind::Processing,
                succeeded(),
                FactKind::Failed { error: None },
                opened(),
            ],
            Disputed,
            100,
        ),
    ];
    for (facts, want_status, want_credits) in cases {
        for (o, credits) in final_states(&facts) {
            assert_eq!(
                (o.status, credits),
                (want_status, want_credits),
                "{facts:?}"
            );
        }
    }
}

#[test]
fn mismatches_say_what_was_expected_and_what_arrived() {
    let short = FactKind::Succeeded {
        amount_received: 499,
        currency: "usd".into(),
    };
    let Decision::Mismatch(why) = decide(&order(Pending), &fact(short)) else {
        panic!()
    };
    assert_eq!(why, "amount received: expected 500 usd, received 499 usd");
    let Decision::Mismatch(why) = decide(&order(Paid), &fact(refunded(900))) else {
        panic!()
    };
    assert!(
        why.contains("expected a charge of 500 usd") && why.contains("900 refunded"),
        "{why}"
    );
}

#[test]
fn a_decline_is_kept_as_the_failure_reason() {
    let failed = FactKind::Failed {
        error: Some("card_declined (insufficient_funds): Your card has insufficient funds.".into()),
    };
    let Decision::Apply(c) = decide(&order(Pending), &fact(failed)) else {
        panic!()
    };
    assert_eq!(c.to, Failed);
    assert!(
        c.reason
            .unwrap()
            .starts_with("card_declined (insufficient_funds)")
    );
}

#[test]
fn review_holds_the_credits_still_until_an_operator_decides() {
    // A paid order sent to review by a contradicting refund: later facts are remembered,
    // no credit moves, and the operator's grant settles it from the facts.
    let mut o = order(Paid);
    o.status = NeedsReview;
    assert_eq!(step(&mut o, refunded(250)), 0);
    assert_eq!((o.status, o.amount_refunded), (NeedsReview, 250));
    assert_eq!(
        step(&mut o, FactKind::OperatorGrant),
        -50,
        "no second grant; the refund now counts"
    );
    assert_eq!(o.status, PartiallyRefunded);

    // Never paid: the grant pays it once; a second grant is nothing.
    let mut o = order(NeedsReview);
    assert_eq!(step(&mut o, FactKind::OperatorGrant), 100);
    assert_eq!(o.status, Paid);
    assert_eq!(step(&mut o, FactKind::OperatorGrant), 0);
    assert_eq!(step(&mut o, succeeded()), 0);
}

#[test]
fn an_operator_refund_closes_a_review_as_refunded_taking_back_what_was_granted() {
    let mut unpaid = order(NeedsReview);
    assert_eq!(step(&mut unpaid, FactKind::OperatorRefunded), 0);
    assert_eq!((unpaid.status, unpaid.amount_refunded), (Refunded, 500));
    // Later refund events change nothing: nothing was granted.
    assert_eq!(step(&mut unpaid, refunded(500)), 0);

    let mut paid = order(Paid);
    paid.status = NeedsReview;
    assert_eq!(step(&mut paid, FactKind::OperatorRefunded), -100);
    assert_eq!(paid.status, Refunded);
}

#[test]
fn unsettled_means_pending_processing_or_failed_only() {
    for status in [Pending, Processing, Failed] {
        assert!(status.is_unsettled(), "{status:?}");
    }
    for status in [
        Paid,
        PartiallyRefunded,
        Refunded,
        Canceled,
        Disputed,
        DisputeLost,
        NeedsReview,
    ] {
        assert!(!status.is_unsettled(), "{status:?}");
    }
}

#[test]
fn each_revocation_names_its_ledger_kind() {
    assert_eq!(
        RevocationKind::Refund.ledger_kind(),
        crate::domain::ledger::LedgerKind::Refund
    );
    assert_eq!(
        RevocationKind::Dispute.ledger_kind(),
        crate::domain::ledger::LedgerKind::Dispute
    );
}

#[test]
fn nothing_is_revoked_without_an_amount_or_a_positive_refund() {
    // Either alone is enough: no division by a zero amount, no negative revocation.
    assert_eq!(revoked_credits(100, 0, 10), 0);
    assert_eq!(revoked_credits(100, 1000, -50), 0);
    assert_eq!(revoked_credits(100, -1000, -50), 0);
}

#[test]
fn a_sync_that_finds_the_same_total_later_still_moves_its_time_on() {
    let mut o = order(PartiallyRefunded);
    o.amount_refunded = 250;
    o.refunds_as_of = Some(100);
    o.revoked = 50;
    let synced = |as_of| {
        fact(FactKind::RefundsSynced {
            charge_amount: 500,
            amount_refunded: 250,
            currency: "usd".into(),
            as_of,
        })
    };
    match decide(&o, &synced(200)) {
        Decision::Apply(c) => {
            assert!(c.only_moves_the_sync_time(&o), "reported as a noop");
            assert_eq!(
                (c.to, c.amount_refunded, c.refunds_as_of, c.revoke),
                (PartiallyRefunded, 250, Some(200), None)
            );
        }
        other => panic!("the later time is remembered: {other:?}"),
    }
    // Same total, same or older time: nothing to remember.
    assert_eq!(decide(&o, &synced(100)), Decision::Noop);
    assert_eq!(decide(&o, &synced(50)), Decision::Noop);
}

#[test]
fn every_change_but_a_later_sync_of_the_same_total_is_reported_as_applied() {
    let mut refunded_order = order(PartiallyRefunded);
    refunded_order.amount_refunded = 250;
    refunded_order.refunds_as_of = Some(100);
    refunded_order.revoked = 50;
    let synced = |amount_refunded| {
        fact(FactKind::RefundsSynced {
            charge_amount: 500,
            amount_refunded,
            currency: "usd".into(),
            as_of: 200,
        })
    };
    let cases = [
        (order(Pending), fact(succeeded()), "paid"),
        (order(Paid), fact(refunded(250)), "refunded"),
        (order(Paid), fact(opened()), "disputed"),
        (
            refunded_order.clone(),
            synced(0),
            "a failed refund given back",
        ),
        (refunded_order.clone(), synced(400), "a bigger refund found"),
    ];
    for (before, f, why) in cases {
        let Decision::Apply(c) = decide(&before, &f) else {
            panic!("{why}: a change")
        };
        assert!(!c.only_moves_the_sync_time(&before), "{why}");
    }
}

#[test]
fn a_refund_of_a_paid_order_is_a_refund_revocation() {
    let Decision::Apply(c) = decide(&order(Paid), &fact(refunded(250))) else {
        panic!()
    };
    assert_eq!(
        (c.to, c.revoke),
        (
            PartiallyRefunded,
            Some(Revocation {
                delta: -50,
                kind: RevocationKind::Refund,
                refund_total: 250
            })
        )
    );
}

#[test]
fn a_dispute_amount_may_be_zero_but_never_negative() {
    let amount = |a| FactKind::DisputeOpened {
        amount: Some(a),
        currency: Some("usd".into()),
    };
    assert!(matches!(
        decide(&order(Paid), &fact(amount(-1))),
        Decision::Mismatch(_)
    ));
    assert_eq!(
        summarise(&order(Paid), &decide(&order(Paid), &fact(amount(0)))),
        Want::To(Disputed)
    );
}

#[test]
fn resolving_a_review_by_refund_closes_it_as_refunded_even_after_a_lost_dispute() {
    let o = OrderState {
        dispute: DisputeState::Lost,
        revoked: 100,
        paid: true,
        ..order(NeedsReview)
    };
    let Decision::Apply(c) = decide(&o, &fact(FactKind::OperatorRefunded)) else {
        panic!()
    };
    assert_eq!((c.to, c.amount_refunded, c.revoked), (Refunded, 500, 100));
}
