//! The order state machine of SPEC §3 as one pure function, `decide`.
//! Every caller that learns something about a payment (webhook, event catch-up,
//! reconciler, return page) turns it into a `PaymentFact`; `orders::settle` applies the
//! `Decision`. An order's status and credits are a function of the facts it holds (the
//! payment outcome, the refund total, the dispute and its end), whatever order they
//! arrived in: `paid_status` and `revoked_target` are those functions.

crate::text_enum! {
    pub enum OrderStatus {
        Pending => "pending",
        Processing => "processing",
        Paid => "paid",
        PartiallyRefunded => "partially_refunded",
        Refunded => "refunded",
        Failed => "failed",
        Canceled => "canceled",
        Disputed => "disputed",
        DisputeLost => "dispute_lost",
        NeedsReview => "needs_review",
    }
}

crate::text_enum! {
    /// The order's dispute as far as the facts tell: a dispute may close before its
    /// creation is seen, and both may come before the success.
    pub enum DisputeState {
        None => "none",
        Open => "open",
        /// Closed `won` or `warning_closed` (or `prevented`): nothing is taken back.
        Won => "won",
        /// Closed `lost`: every credit the order still holds is revoked.
        Lost => "lost",
    }
}

impl OrderStatus {
    /// Statuses the reconciler still asks the provider about.
    pub const UNSETTLED: [OrderStatus; 3] = [
        OrderStatus::Pending,
        OrderStatus::Processing,
        OrderStatus::Failed,
    ];

    pub fn is_unsettled(self) -> bool {
        Self::UNSETTLED.contains(&self)
    }
}

/// What the decision needs to know about the order, as currently stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
    pub amount_refunded: i64,
    pub dispute: DisputeState,
    /// Stripe's time of the last refund total taken from the provider (see `RefundsSynced`).
    pub refunds_as_of: Option<i64>,
    /// The pack's credits were granted (once, ever). Credits follow the refund and
    /// dispute facts only for a paid order that is not waiting for review.
    pub paid: bool,
    /// Credits taken back so far (refunds and a lost dispute, net of give-backs): what
    /// the next revocation is measured against.
    pub revoked: i64,
}

/// Something the provider says happened to the order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactKind {
    Processing,
    Succeeded {
        amount_received: i64,
        currency: String,
    },
    /// `error` is the provider's decline in words (code, decline code, message).
    Failed {
        error: Option<String>,
    },
    Canceled,
    /// `amount_refunded` is the charge's cumulative refunded amount; `as_of` is when
    /// Stripe made the event (unix seconds), `None` for an answer given just now.
    Refunded {
        charge_amount: i64,
        amount_refunded: i64,
        currency: String,
        as_of: Option<i64>,
    },
    /// The charge's refund total as the provider reports it now, asked for after a
    /// refund failed or was canceled: it may lower the total. `as_of` is the failure
    /// event's time; refund events made before it are stale.
    RefundsSynced {
        charge_amount: i64,
        amount_refunded: i64,
        currency: String,
        as_of: i64,
    },
    /// A refund moved to a state that changes nothing (pending, succeeded: the charge's
    /// `charge.refunded` carries the total).
    RefundInFlight,
    /// Amount and currency are checked against the order when the dispute carries them.
    DisputeOpened {
        amount: Option<i64>,
        currency: Option<String>,
    },
    DisputeClosed {
        lost: bool,
        amount: Option<i64>,
        currency: Option<String>,
    },
    /// A handled object that contradicts itself or what we can act on (a refund failure
    /// with no charge, a dispute status nobody knows): the order goes to review.
    Contradiction(&'static str),
    /// An operator resolved a `needs_review` order by granting it: paid, credits once.
    OperatorGrant,
    /// An operator resolved a `needs_review` order by refunding it in full at the
    /// provider: `refunded`, and credits, if any were granted, taken back.
    OperatorRefunded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFact {
    /// The PaymentIntent the fact is about, when the source names one.
    pub payment_intent_id: Option<String>,
    pub kind: FactKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Valid, but nothing to change.
    Noop,
    /// The fact contradicts the order: it goes to `needs_review`, no credits move. The
    /// reason says what was expected and what arrived.
    Mismatch(String),
    Apply(Change),
}

/// A change to one order. `to` may equal the current status when only a remembered
/// fact changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub to: OrderStatus,
    pub grant: Option<i64>,
    pub revoke: Option<Revocation>,
    pub amount_refunded: i64,
    pub dispute: DisputeState,
    pub refunds_as_of: Option<i64>,
    /// Credits taken back in total after this change.
    pub revoked: i64,
    pub marks_paid: bool,
    /// Why, in words, when the change has a reason worth keeping (a decline).
    pub reason: Option<String>,
}

impl Change {
    /// Whether the change only moves the time of the last refund sync on (a sync that
    /// found the total it already knew, later): worth writing, since it makes older
    /// refund events stale, but nothing anyone sees has changed, so it is reported as a
    /// `noop` (SPEC: "valid but nothing to change"), not `applied`. Without this, which
    /// of several events about one refund failure came out `applied` depended on whether
    /// their syncs fell in the same second.
    pub fn only_moves_the_sync_time(&self, before: &OrderState) -> bool {
        self.to == before.status
            && self.grant.is_none()
            && self.revoke.is_none()
            && self.amount_refunded == before.amount_refunded
            && self.dispute == before.dispute
            && self.revoked == before.revoked
            && !self.marks_paid
            && self.reason.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    Refund,
    Dispute,
}

impl RevocationKind {
    pub fn ledger_kind(self) -> crate::domain::ledger::LedgerKind {
        use crate::domain::ledger::LedgerKind;
        match self {
            RevocationKind::Refund => LedgerKind::Refund,
            RevocationKind::Dispute => LedgerKind::Dispute,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Negative: credits taken back by this step; positive: given back (a refund failed).
    pub delta: i64,
    pub kind: RevocationKind,
    /// The cumulative refund total after this step.
    pub refund_total: i64,
}

/// Credits revoked in total once `refunded` of `amount` has been refunded:
/// floor(credits × refunded / amount), in 128 bits so no product overflows.
pub fn revoked_credits(credits: i64, amount: i64, refunded: i64) -> i64 {
    if amount <= 0 || refunded <= 0 {
        return 0;
    }
    let refunded = refunded.min(amount);
    let floor = (i128::from(credits) * i128::from(refunded)) / i128::from(amount);
    i64::try_from(floor).unwrap_or(credits)
}

/// Credits a paid order has lost in total: all of them after a lost dispute, else what
/// its refund total takes back. Never more than the order granted.
pub fn revoked_target(credits: i64, amount: i64, refunded: i64, dispute: DisputeState) -> i64 {
    match dispute {
        DisputeState::Lost => credits,
        _ => revoked_credits(credits, amount, refunded),
    }
}

/// The status of a paid order, from its facts. A refund shows over an open dispute (the
/// money already went back); a won dispute leaves the status the refunds give.
pub fn paid_status(amount: i64, refunded: i64, dispute: DisputeState) -> OrderStatus {
    match dispute {
        DisputeState::Lost => OrderStatus::DisputeLost,
        _ if refunded >= amount => OrderStatus::Refunded,
        _ if refunded > 0 => OrderStatus::PartiallyRefunded,
        DisputeState::Open => OrderStatus::Disputed,
        DisputeState::None | DisputeState::Won => OrderStatus::Paid,
    }
}

/// The facts an order holds besides its payment outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Facts {
    amount_refunded: i64,
    dispute: DisputeState,
    refunds_as_of: Option<i64>,
    revoked: i64,
}

impl Facts {
    fn of(order: &OrderState) -> Facts {
        Facts {
            amount_refunded: order.amount_refunded,
            dispute: order.dispute,
            refunds_as_of: order.refunds_as_of,
            revoked: order.revoked,
        }
    }
}

/// The whole state machine of SPEC §3: given the order as stored and a new fact,
/// what must change. Pure, so every pair is tested.
pub fn decide(order: &OrderState, fact: &PaymentFact) -> Decision {
    use OrderStatus::*;

    if let (Some(ours), Some(theirs)) = (&order.payment_intent_id, &fact.payment_intent_id)
        && ours != theirs
    {
        return Decision::Mismatch(format!(
            "the event names PaymentIntent {theirs}; the order's is {ours}"
        ));
    }
    let facts = Facts::of(order);
    let move_to = |to: OrderStatus| Decision::Apply(change(to, facts, None, false));

    match &fact.kind {
        FactKind::Succeeded {
            amount_received,
            currency,
        } => {
            if *amount_received != order.amount {
                return Decision::Mismatch(format!(
                    "amount received: expected {} {}, received {amount_received} {currency}",
                    order.amount, order.currency
                ));
            }
            if !currency.eq_ignore_ascii_case(&order.currency) {
                return Decision::Mismatch(format!(
                    "currency: expected {}, received {currency}",
                    order.currency
                ));
            }
            match order.status {
                Pending | Processing | Failed => Decision::Apply(pay(order)),
                Canceled => Decision::Mismatch(
                    "payment succeeded for an order canceled here: expected no payment".into(),
                ),
                Paid | PartiallyRefunded | Refunded | Disputed | DisputeLost | NeedsReview => {
                    Decision::Noop
                }
            }
        }
        FactKind::Processing => match order.status {
            Pending | Failed => move_to(Processing),
            _ => Decision::Noop,
        },
        FactKind::Failed { error } => match order.status {
            Pending | Processing => Decision::Apply(Change {
                reason: error.clone(),
                ..change(Failed, facts, None, false)
            }),
            _ => Decision::Noop,
        },
        FactKind::Canceled => match order.status {
            Pending | Processing | Failed => move_to(Canceled),
            _ => Decision::Noop,
        },
        FactKind::Refunded {
            charge_amount,
            amount_refunded,
            currency,
            as_of,
        } => {
            if let Some(reason) =
                refund_contradiction(order, *charge_amount, *amount_refunded, currency)
            {
                return Decision::Mismatch(reason);
            }
            let stale = matches!((as_of, order.refunds_as_of), (Some(made), Some(synced)) if *made < synced);
            if stale || *amount_refunded <= order.amount_refunded {
                return Decision::Noop; // repeated, stale, or covered by a later sync
            }
            with_facts(
                order,
                Facts {
                    amount_refunded: *amount_refunded,
                    ..facts
                },
            )
        }
        FactKind::RefundsSynced {
            charge_amount,
            amount_refunded,
            currency,
            as_of,
        } => {
            if let Some(reason) =
                refund_contradiction(order, *charge_amount, *amount_refunded, currency)
            {
                return Decision::Mismatch(reason);
            }
            let as_of = Some(
                order
                    .refunds_as_of
                    .map_or(*as_of, |known| known.max(*as_of)),
            );
            if *amount_refunded == order.amount_refunded && as_of == order.refunds_as_of {
                return Decision::Noop;
            }
            with_facts(
                order,
                Facts {
                    amount_refunded: *amount_refunded,
                    refunds_as_of: as_of,
                    ..facts
                },
            )
        }
        FactKind::RefundInFlight => Decision::Noop,
        FactKind::DisputeOpened { amount, currency } => {
            if let Some(reason) = dispute_contradiction(order, *amount, currency.as_deref()) {
                return Decision::Mismatch(reason);
            }
            if order.dispute != DisputeState::None {
                return Decision::Noop; // seen, or already closed (its creation came late)
            }
            with_facts(
                order,
                Facts {
                    dispute: DisputeState::Open,
                    ..facts
                },
            )
        }
        FactKind::DisputeClosed {
            lost,
            amount,
            currency,
        } => {
            if let Some(reason) = dispute_contradiction(order, *amount, currency.as_deref()) {
                return Decision::Mismatch(reason);
            }
            if matches!(order.dispute, DisputeState::Won | DisputeState::Lost) {
                return Decision::Noop; // a closed dispute stays closed
            }
            let dispute = if *lost {
                DisputeState::Lost
            } else {
                DisputeState::Won
            };
            with_facts(order, Facts { dispute, ..facts })
        }
        FactKind::Contradiction(reason) => Decision::Mismatch((*reason).to_owned()),
        FactKind::OperatorGrant => match order.status {
            // Credits granted before the review: what the facts remembered meanwhile
            // take back, as for any paid order.
            NeedsReview if order.paid => with_facts(
                &OrderState {
                    status: Paid,
                    ..order.clone()
                },
                facts,
            ),
            NeedsReview => Decision::Apply(pay(order)),
            _ => Decision::Noop,
        },
        FactKind::OperatorRefunded => {
            let refunded = Facts {
                amount_refunded: order.amount,
                ..facts
            };
            if !order.paid {
                return Decision::Apply(change(Refunded, refunded, None, false));
            }
            // As a paid order: what the full refund takes back, then `refunded`.
            let as_paid = OrderState {
                status: Paid,
                ..order.clone()
            };
            match with_facts(&as_paid, refunded) {
                Decision::Apply(c) => Decision::Apply(Change { to: Refunded, ..c }),
                _ => Decision::Apply(change(Refunded, refunded, None, false)),
            }
        }
    }
}

fn refund_contradiction(
    order: &OrderState,
    charge_amount: i64,
    amount_refunded: i64,
    currency: &str,
) -> Option<String> {
    let contradicts = !currency.eq_ignore_ascii_case(&order.currency)
        || charge_amount != order.amount
        || amount_refunded > order.amount
        || amount_refunded < 0;
    contradicts.then(|| {
        format!(
            "refunded charge: expected a charge of {} {}, received {charge_amount} {currency} \
             with {amount_refunded} refunded",
            order.amount, order.currency
        )
    })
}

fn dispute_contradiction(
    order: &OrderState,
    amount: Option<i64>,
    currency: Option<&str>,
) -> Option<String> {
    let contradicts = currency.is_some_and(|c| !c.eq_ignore_ascii_case(&order.currency))
        || amount.is_some_and(|a| a > order.amount || a < 0);
    contradicts.then(|| {
        format!(
            "dispute: expected at most {} {}, received {} {}",
            order.amount,
            order.currency,
            amount.map_or_else(|| "?".to_owned(), |a| a.to_string()),
            currency.unwrap_or("?")
        )
    })
}

/// The order with new facts: a paid order's status and credits follow them; an order
/// not (yet) paid, or waiting for review, only remembers them (until the success
/// arrives, or an operator decides).
fn with_facts(order: &OrderState, mut new: Facts) -> Decision {
    if !order.paid || order.status == OrderStatus::NeedsReview {
        return Decision::Apply(change(order.status, new, None, false));
    }
    let after = revoked_target(
        order.credits,
        order.amount,
        new.amount_refunded,
        new.dispute,
    );
    let kind = if new.dispute == DisputeState::Lost && order.dispute != DisputeState::Lost {
        RevocationKind::Dispute
    } else {
        RevocationKind::Refund
    };
    let revoke = (order.revoked != after).then_some(Revocation {
        delta: order.revoked - after,
        kind,
        refund_total: new.amount_refunded,
    });
    new.revoked = after;
    let to = paid_status(order.amount, new.amount_refunded, new.dispute);
    Decision::Apply(change(to, new, revoke, false))
}

fn change(to: OrderStatus, facts: Facts, revoke: Option<Revocation>, marks_paid: bool) -> Change {
    Change {
        to,
        grant: None,
        revoke,
        amount_refunded: facts.amount_refunded,
        dispute: facts.dispute,
        refunds_as_of: facts.refunds_as_of,
        revoked: facts.revoked,
        marks_paid,
        reason: None,
    }
}

/// Unpaid → paid with its one grant, then whatever refund or dispute overtook the success.
fn pay(order: &OrderState) -> Change {
    let revoked = revoked_target(
        order.credits,
        order.amount,
        order.amount_refunded,
        order.dispute,
    );
    let facts = Facts {
        revoked,
        ..Facts::of(order)
    };
    let kind = if order.dispute == DisputeState::Lost {
        RevocationKind::Dispute
    } else {
        RevocationKind::Refund
    };
    let revoke = (revoked != 0).then_some(Revocation {
        delta: -revoked,
        kind,
        refund_total: order.amount_refunded,
    });
    let to = paid_status(order.amount, order.amount_refunded, order.dispute);
    Change {
        grant: Some(order.credits),
        ..change(to, facts, revoke, true)
    }
}

#[cfg(test)]
mod tests;
