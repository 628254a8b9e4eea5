//! Writ's domain core: identities, targets and entitlements, grants, and the change record
//! with its explicit state machine.
//!
//! Architecture invariant: this crate is pure. It has no I/O, no async, no clock and no random
//! source; time and identifiers are passed in as arguments. Every lifecycle transition is
//! [`machine::decide`] (state, command, now) → events, and [`machine::evolve`] folds events
//! back into state, so the whole lifecycle is testable without a database.

pub mod access;
pub mod authority;
#[macro_use]
pub mod change;
pub mod error;
pub mod event;
pub mod exception;
pub mod finding;
pub mod identity;
pub mod intake;
pub mod machine;
pub mod name;
pub mod notify;
pub mod reconcile;
pub mod time;
pub mod transfer;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::Refusal;
