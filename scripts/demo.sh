#!/usr/bin/env bash
# The demo. Without arguments: `writ-bench demo` on an embedded SQLite file and a real git
# repository (needs only a Rust toolchain and git). With `--targets all`: first starts a
# throwaway PostgreSQL cluster, slapd and OpenBao on temporary directories and free loopback
# ports (installing them if missing, as the test command does), then runs `writ-bench demo --targets
# all` against them, and stops them on exit. Extra arguments go to `writ-bench demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

if [ "${1:-}" = "--targets" ] && [ "${2:-}" = "all" ]; then
    . scripts/lib/apt.sh
    . scripts/lib/services.sh
    . scripts/lib/postgres.sh
    . scripts/lib/ldap.sh
    . scripts/lib/openbao.sh
    export WRIT_DEMO_POSTGRES="$WRIT_TEST_POSTGRES"
    export WRIT_DEMO_LDAP_URL="$WRIT_TEST_LDAP_URL"
    export WRIT_DEMO_LDAP_BIND_DN="$WRIT_TEST_LDAP_BIND_DN"
    export WRIT_DEMO_LDAP_PASSWORD_FILE="$WRIT_TEST_LDAP_PASSWORD_FILE"
    export WRIT_DEMO_OPENBAO_ADDR="$WRIT_TEST_OPENBAO_ADDR"
    export WRIT_DEMO_OPENBAO_TOKEN_FILE="$WRIT_TEST_OPENBAO_TOKEN_FILE"
fi
cargo run --quiet --release -p writ-bench -- demo "$@"
