# Sourced by scripts/test.sh: an OpenID Connect provider for the OIDC tests — PyPI
# `oidc-provider-mock` (0.3.4 or later; 0.4 needs Python 3.12) in a virtual environment under the
# user's cache (installed once), started on a free loopback port and stopped on exit.
# Exports WRIT_TEST_OIDC (the issuer URL).

OIDC_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/oidc-venv"
pip_venv "$OIDC_VENV" "oidc-provider-mock>=0.3.4,<0.5" oidc-provider-mock
OIDC_PORT=$(free_port)
OIDC_LOG=$(mktemp)
"$OIDC_VENV/bin/oidc-provider-mock" --host 127.0.0.1 --port "$OIDC_PORT" >"$OIDC_LOG" 2>&1 &
OIDC_PID=$!
stop_oidc() { kill "$OIDC_PID" 2>/dev/null || true; rm -f "$OIDC_LOG"; }
on_exit stop_oidc
wait_http "http://127.0.0.1:$OIDC_PORT/.well-known/openid-configuration" \
    || { echo "error: the OIDC provider did not start:" >&2; cat "$OIDC_LOG" >&2; exit 1; }
log "OIDC provider on 127.0.0.1:$OIDC_PORT"
export WRIT_TEST_OIDC="http://127.0.0.1:$OIDC_PORT"
