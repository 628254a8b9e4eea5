#!/usr/bin/env bash
# Writ's benchmarks: the engine and ledger figures (`writ-bench bench`) and the HTTP API figures on
# SQLite and on a throwaway PostgreSQL cluster, one and three instances (`writ-bench bench-api`), and
# the web interface's pages on the demo database (`writ-bench bench-web`).
# Extra arguments go to `writ-bench bench-api` (for example --seconds 5 --rate 1000).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }
. scripts/lib/apt.sh
. scripts/lib/services.sh
command -v git >/dev/null 2>&1 || apt_install git

. scripts/lib/postgres.sh

cargo build --release --locked -p writ -p writ-bench
log "engine and ledger"
target/release/writ-bench bench --postgres "$WRIT_TEST_POSTGRES"
log "HTTP API"
target/release/writ-bench bench-api --postgres "$WRIT_TEST_POSTGRES" "$@"
log "web interface: each page's first byte on the demo database"
target/release/writ-bench bench-web
