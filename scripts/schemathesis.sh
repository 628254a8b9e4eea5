#!/usr/bin/env bash
# Schemathesis (PyPI schemathesis; every check, which is its default, and every phase) against a real `writ serve` on
# SQLite, seeded with identities of every role, a git target and a pending change, using an
# admin token that holds every role. scripts/test.sh runs it; any failure of any check fails.
# scripts/schemathesis.toml says how it authenticates and the two operations whose answers no
# schema can state; scripts/schemathesis_hooks.py gives each well-formed Idempotency-Key a fresh
# value (see there).
# Then the same with a token of each single role. Extra arguments go to every `st run` (for
# example --max-examples 50).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }
. scripts/lib/apt.sh
. scripts/lib/services.sh
command -v git >/dev/null 2>&1 || apt_install git

VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/schemathesis-venv"
pip_venv "$VENV" "schemathesis==4.32.5" st

cargo build --quiet --locked -p writ
writ="$PWD/target/debug/writ"
dir="$(mktemp -d)"
on_exit "rm -rf '$dir'"
export WRIT_DB="$dir/writ.db"
"$writ" init > /dev/null
git init -q "$dir/repo"
printf '[entitlements.eng-read]\nmembers = []\n\n[entitlements.deploy-prod]\nmembers = []\n' > "$dir/repo/access.toml"
git -C "$dir/repo" add access.toml
git -C "$dir/repo" -c user.name=writ -c user.email=writ@localhost commit -qm "entitlements"
"$writ" target add access --connector git --repo "$dir/repo" > /dev/null
for person in root alice bob carol dave; do "$writ" identity add "$person" --kind human > /dev/null; done
for role in admin auditor requester approver executor reviewer provisioner; do "$writ" role grant root "$role" > /dev/null; done
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"; }
# A pending change the change operations act on (schemathesis.toml names it for their `id`).
WRIT_SCHEMATHESIS_CHANGE="$("$writ" change request --as alice --identity dave --grant access:eng-read --justification "seed" --json | field id)"
export WRIT_SCHEMATHESIS_CHANGE
token="$("$writ" token create --identity root --label schemathesis --json | field token)"
# One identity per role, for the runs that hold one role only (tokens are made per run).
roles="requester approver executor reviewer auditor provisioner admin"
for role in $roles; do
    "$writ" identity add "only-$role" --kind human > /dev/null
    "$writ" role grant "only-$role" "$role" > /dev/null
done

port="$(free_port)"
"$writ" serve --listen "127.0.0.1:$port" --checkpoint-interval 20ms > "$dir/serve.out" 2> "$dir/serve.err" &
on_exit "kill $! 2>/dev/null || true"
wait_http "http://127.0.0.1:$port/healthz" || { echo "error: writ serve did not start" >&2; cat "$dir/serve.err" >&2; exit 1; }

# The tokens are throwaway ones for this run; Schemathesis prints the header as [Filtered].
# Run from the temporary directory: Schemathesis keeps its cache where it runs.
scripts="$PWD/scripts"
cd "$dir"
st() { # st TOKEN ARGS...: one Schemathesis run with TOKEN as the bearer
    local bearer="$1"
    shift
    WRIT_SCHEMATHESIS_TOKEN="$bearer" PYTHONPATH="$scripts" "$VENV/bin/st" --config-file "$scripts/schemathesis.toml" \
        run "http://127.0.0.1:$port/api/v1/openapi.json" --no-color "$@"
}
# A run may disable or offboard identities (whose tokens are then revoked): each run starts
# with its identity active again and a new token.
fresh_token() { # fresh_token IDENTITY
    "$writ" identity enable "$1" --reason "schemathesis: next run" > /dev/null
    "$writ" token create --identity "$1" --label schemathesis --json | field token
}
log "schemathesis against http://127.0.0.1:$port: every phase, a token holding every role"
st "$token" "$@"
# The same checks with a token of one role each: what that role may not do is refused with a
# documented status and body, and what it may do is answered as documented.
for role in $roles; do
    log "schemathesis: a token holding only $role (coverage and fuzzing)"
    st "$(fresh_token "only-$role")" --phases coverage,fuzzing --max-examples 10 "$@"
done
