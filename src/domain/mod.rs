//! Pure business rules: no IO, no async. Everything here is unit-tested as tables.

pub mod email;
pub mod order;
