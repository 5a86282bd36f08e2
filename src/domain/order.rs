//! The order state machine of SPEC §3 as one pure function, `decide`.
//! Every caller that learns something about a payment (webhook, reconciler, return
//! page) turns it into a `PaymentFact`; `orders::settle` applies the `Decision`.
//! Invariant for paid orders: credits revoked so far = `revoked_credits(amount_refunded)`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum OrderStatus {
    Pending,
    Processing,
    Paid,
    PartiallyRefunded,
    Refunded,
    Failed,
    Canceled,
    Disputed,
    NeedsReview,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Pending,
        OrderStatus::Processing,
        OrderStatus::Paid,
        OrderStatus::PartiallyRefunded,
        OrderStatus::Refunded,
        OrderStatus::Failed,
        OrderStatus::Canceled,
        OrderStatus::Disputed,
        OrderStatus::NeedsReview,
    ];
    /// Statuses the reconciler still asks the provider about.
    pub const UNSETTLED: [OrderStatus; 3] = [
        OrderStatus::Pending,
        OrderStatus::Processing,
        OrderStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Processing => "processing",
            OrderStatus::Paid => "paid",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Failed => "failed",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Disputed => "disputed",
            OrderStatus::NeedsReview => "needs_review",
        }
    }

    pub fn is_unsettled(self) -> bool {
        Self::UNSETTLED.contains(&self)
    }

    /// Paid at some point and credits were granted.
    pub fn was_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::PartiallyRefunded
                | OrderStatus::Refunded
                | OrderStatus::Disputed
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown order status {s:?}"))
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
    pub dispute_seen: bool,
}

/// Something the provider says happened to the order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactKind {
    Processing,
    Succeeded {
        amount_received: i64,
        currency: String,
    },
    Failed,
    Canceled,
    /// `amount_refunded` is the charge's cumulative refunded amount.
    Refunded {
        charge_amount: i64,
        amount_refunded: i64,
        currency: String,
    },
    Disputed,
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
    /// The fact contradicts the order: it goes to `needs_review`, no credits move.
    Mismatch(&'static str),
    Apply(Change),
}

/// A change to one order. `to` may equal the current status when only a remembered
/// refund or dispute changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub to: OrderStatus,
    pub grant: Option<i64>,
    pub revoke: Option<Revocation>,
    pub amount_refunded: i64,
    pub dispute_seen: bool,
    pub marks_paid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Negative: credits taken back by this step.
    pub delta: i64,
    /// The cumulative refund total this revocation brings the order to.
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

/// The whole state machine of SPEC §3: given the order as stored and a new fact,
/// what must change. Pure, so every pair is tested below.
pub fn decide(order: &OrderState, fact: &PaymentFact) -> Decision {
    use OrderStatus::*;

    if let (Some(ours), Some(theirs)) = (&order.payment_intent_id, &fact.payment_intent_id) {
        if ours != theirs {
            return Decision::Mismatch("the event names a different PaymentIntent than the order");
        }
    }
    let unchanged = Change {
        to: order.status,
        grant: None,
        revoke: None,
        amount_refunded: order.amount_refunded,
        dispute_seen: order.dispute_seen,
        marks_paid: false,
    };
    let move_to = |to: OrderStatus| {
        Decision::Apply(Change {
            to,
            ..unchanged.clone()
        })
    };

    match &fact.kind {
        FactKind::Succeeded {
            amount_received,
            currency,
        } => {
            if *amount_received != order.amount {
                return Decision::Mismatch("amount received differs from the order amount");
            }
            if !currency.eq_ignore_ascii_case(&order.currency) {
                return Decision::Mismatch("currency differs from the order currency");
            }
            match order.status {
                Pending | Processing | Failed => Decision::Apply(pay(order)),
                Canceled => Decision::Mismatch("payment succeeded for an order canceled here"),
                Paid | PartiallyRefunded | Refunded | Disputed | NeedsReview => Decision::Noop,
            }
        }
        FactKind::Processing => match order.status {
            Pending | Failed => move_to(Processing),
            _ => Decision::Noop,
        },
        FactKind::Failed => match order.status {
            Pending | Processing => move_to(Failed),
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
        } => {
            if !currency.eq_ignore_ascii_case(&order.currency) {
                return Decision::Mismatch("refund currency differs from the order currency");
            }
            if *charge_amount != order.amount
                || *amount_refunded > order.amount
                || *amount_refunded < 0
            {
                return Decision::Mismatch("refunded charge does not match the order amount");
            }
            if *amount_refunded <= order.amount_refunded {
                return Decision::Noop; // repeated or stale: this total was already applied
            }
            if order.status.was_paid() {
                Decision::Apply(refund(order, *amount_refunded))
            } else {
                // Remembered until the success arrives (or forever, for an order never paid).
                Decision::Apply(Change {
                    amount_refunded: *amount_refunded,
                    ..unchanged
                })
            }
        }
        FactKind::Disputed => match order.status {
            Paid => Decision::Apply(Change {
                to: Disputed,
                dispute_seen: true,
                ..unchanged
            }),
            _ if order.dispute_seen => Decision::Noop,
            Disputed => Decision::Noop,
            _ => Decision::Apply(Change {
                dispute_seen: true,
                ..unchanged
            }),
        },
    }
}

/// Unpaid → paid with its one grant, then whatever refund or dispute overtook the success.
fn pay(order: &OrderState) -> Change {
    let mut change = Change {
        to: OrderStatus::Paid,
        grant: Some(order.credits),
        revoke: None,
        amount_refunded: order.amount_refunded,
        dispute_seen: order.dispute_seen,
        marks_paid: true,
    };
    if order.amount_refunded > 0 {
        let paid = OrderState {
            status: OrderStatus::Paid,
            amount_refunded: 0,
            ..order.clone()
        };
        let refunded = refund(&paid, order.amount_refunded);
        change.to = refunded.to;
        change.revoke = refunded.revoke;
    } else if order.dispute_seen {
        change.to = OrderStatus::Disputed;
    }
    change
}

fn refund(order: &OrderState, new_total: i64) -> Change {
    let before = revoked_credits(order.credits, order.amount, order.amount_refunded);
    let after = revoked_credits(order.credits, order.amount, new_total);
    let delta = before - after;
    Change {
        to: if new_total >= order.amount {
            OrderStatus::Refunded
        } else {
            OrderStatus::PartiallyRefunded
        },
        grant: None,
        revoke: (delta != 0).then_some(Revocation {
            delta,
            refund_total: new_total,
        }),
        amount_refunded: new_total,
        dispute_seen: order.dispute_seen,
        marks_paid: false,
    }
}

#[cfg(test)]
mod tests;
