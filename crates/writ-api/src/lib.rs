//! `writ-api`: Writ's HTTP API as data, shared by the server and the command line.
//!
//! - `error`: the one table of error kinds. Every stable code has one row, which gives both the
//!   HTTP status the server answers and the exit code the CLI ends with, so a refusal is the same
//!   refusal through every surface.
//! - `wire`: the request bodies, and their conversion into the engine's inputs, which the CLI's
//!   arguments go through too.
//! - `view`: the JSON shapes of responses, printed alike by the CLI's `--json`; `text`: the
//!   text people read, rendered from those views.
//!
//! This crate knows no HTTP framework and no command-line parser: both depend on it, never the
//! other way round (checked by the tidy test).

pub mod error;
pub mod text;
pub mod view;
pub mod wire;

pub use error::{Error, Kind};
