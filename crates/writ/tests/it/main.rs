//! Integration tests of the `writ` binary.
