#!/usr/bin/env bash
# Quick pre-commit gate: format, lints, tests. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --quiet
