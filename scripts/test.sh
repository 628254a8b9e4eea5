#!/usr/bin/env bash
# Writ's full test suite: formatting, lints, and every test, against the real components the
# suites use. It installs what is missing (idempotently) and fails loudly if something cannot be
# had; it never skips a suite silently.
#
# Real components used today: SQLite (bundled into the binary), a throwaway PostgreSQL cluster
# (the store conformance suite), the git binary (the git connector's tests and the CLI tests
# drive real repositories), and the kernel's file-system controls (chattr, file-size limits) for
# the fail-closed tests. Suites for slapd, OpenBao, an SMTP sink and Chromium start those
# services here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

need() { # need COMMAND DEBIAN-PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        log "installing $2 (for $1)"
        apt_install "$2" || { echo "error: $1 is required and $2 could not be installed" >&2; exit 1; }
    fi
    command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is still missing after installing $2" >&2; exit 1; }
}

need git git
need chattr e2fsprogs   # the fail-closed test makes the database immutable mid-run
need cargo cargo

# ---- a throwaway PostgreSQL cluster on a temporary directory and a free loopback port ----
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    log "installing postgresql"
    apt_install postgresql || { echo "error: PostgreSQL is required and could not be installed" >&2; exit 1; }
fi
PGBIN=$(pg_bin)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGDIR=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stop_postgres() {
    as_postgres "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
}
trap stop_postgres EXIT
log "starting PostgreSQL on 127.0.0.1:$PGPORT"
as_postgres "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U writ >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1" start >/dev/null \
    || { echo "error: PostgreSQL did not start:" >&2; cat "$PGDIR/postgres.log" >&2; exit 1; }
export WRIT_TEST_POSTGRES="host=127.0.0.1 port=$PGPORT user=writ"
# Suites that need a service fail instead of skipping when it is missing.
export WRIT_REQUIRE_SERVICES=1

log "format"
cargo fmt --all --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked

log "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

log "demo"
cargo run --quiet --locked -p writ -- demo > /dev/null

log "all passed"
