//! Integration tests of the `writ` binary: real SQLite files, real git repositories, the real
//! command line. One test binary for the crate; one module per feature.

// Tests may unwrap and index: a panic is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod harness;
mod server;

mod api;
mod audit;
mod authority;
mod baotarget;
mod breakglass;
mod client;
mod conformance;
mod crash;
mod evidence;
mod exceptions;
mod execution;
mod failclosed;
mod intake;
mod layers;
mod ldaptarget;
mod leavers;
mod ledger;
mod lifecycle;
mod matrix;
mod multi;
mod notify;
mod oidc;
mod pgtarget;
mod policy;
mod proxy;
mod reconcile;
mod record;
mod refusals;
mod scim;
mod sensitive;
mod tidy;
mod web;
mod witness;
