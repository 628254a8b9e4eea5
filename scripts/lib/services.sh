# Sourced first by the scripts that start services: `on_exit CMD` runs CMD when the script exits
# (every registered command, last registered first).
CLEANUP=""
on_exit() {
    CLEANUP="$1${CLEANUP:+; $CLEANUP}"
    # shellcheck disable=SC2064
    trap "$CLEANUP" EXIT
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
