//! The Stripe API double lives in the test kit (tests/kit), shared with the load lab.

pub use paidonce_testkit::stripe_double::*;
