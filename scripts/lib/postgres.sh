# Sourced by scripts/test.sh and scripts/bench.sh: installs PostgreSQL if missing and starts a
# throwaway cluster on a temporary directory and a free loopback port; stops it on exit.
# Exports WRIT_TEST_POSTGRES (a libpq key=value string without dbname). Needs `log`,
# `apt_install` (lib/apt.sh) and `on_exit`, `free_port` (lib/services.sh).

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    log "installing postgresql"
    apt_install postgresql || { echo "error: PostgreSQL is required and could not be installed" >&2; exit 1; }
fi
PGBIN=$(pg_bin)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGDIR=$(mktemp -d)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
PGPORT=$(free_port)
stop_postgres() {
    as_postgres "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
}
on_exit stop_postgres
log "starting PostgreSQL on 127.0.0.1:$PGPORT"
as_postgres "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U writ >/dev/null
# The superuser `writ` (the tests' own connections) is trusted; every other role must present
# its password, so a test can show that a rotated or revoked credential is really refused.
cat > "$PGDIR/data/pg_hba.conf" <<HBA
local all all trust
host all writ 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
HBA
as_postgres "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
    || { echo "error: PostgreSQL did not start:" >&2; cat "$PGDIR/postgres.log" >&2; exit 1; }
export WRIT_TEST_POSTGRES="host=127.0.0.1 port=$PGPORT user=writ"
