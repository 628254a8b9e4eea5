# Sourced first by the scripts that start services: `on_exit CMD` runs CMD when the script exits
# (every registered command, last registered first).
CLEANUP=""
on_exit() {
    CLEANUP="$1${CLEANUP:+; $CLEANUP}"
    # shellcheck disable=SC2064
    trap "$CLEANUP" EXIT
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# pip_venv DIR SPEC BIN: a virtual environment at DIR with the PyPI requirement SPEC installed,
# made once (kept while DIR/bin/BIN exists). Needs `log` and `apt_install`.
pip_venv() {
    [ -x "$1/bin/$3" ] && return 0
    log "installing $2 (PyPI) into $1"
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    rm -rf "$1"
    python3 -m venv "$1" && "$1/bin/pip" install --quiet --disable-pip-version-check "$2" \
        || { echo "error: $2 could not be installed" >&2; exit 1; }
}
# wait_http URL: true once URL answers with a success status (up to 10 s).
wait_http() {
    for _ in $(seq 1 100); do
        python3 -c "import urllib.request; urllib.request.urlopen('$1')" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# random_secret FILE: 32 random URL-safe characters in FILE (mode 0600, no newline).
random_secret() { ( umask 077; printf '%s' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" > "$1" ); }
