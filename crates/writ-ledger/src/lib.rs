//! The ledger format. An event is stored as the exact RFC 8785 canonical JSON bytes of a
//! versioned record (`schema: "writ.event/v1"`); verifiers hash the stored bytes, never a
//! re-serialisation. See `docs/design/2026-11-ledger-record.md` for the format.
//!
//! Architecture invariant: pure (no I/O). This crate is the only place that knows the record
//! layout; changing an existing field is a format break and needs a new schema version.

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod record;
pub mod sensitive;
pub mod verify;
pub mod witness;

pub use merkle::leaf_hash;

/// SHA-256 of `bytes`: the address of an evidence blob.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
pub use record::{RecordError, SCHEMA, decode, encode};

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod cosignature_tests;
#[cfg(test)]
mod merkle_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod witness_tests;
