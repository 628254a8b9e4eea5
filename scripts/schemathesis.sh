#!/usr/bin/env bash
# Schemathesis (PyPI schemathesis, all checks) against a real `writ serve` on SQLite, seeded with
# identities of every role, a git target and a pending change, using an admin token that holds
# every role. Not part of scripts/test.sh yet: it still reports failures (issue 21's note lists
# them); run it to see where the OpenAPI document and the server disagree.
# Extra arguments go to `st run` (for example --max-examples 50 --phases coverage).
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
"$writ" change request --as alice --identity dave --grant access:eng-read --justification "seed" > /dev/null
token="$("$writ" token create --identity root --label schemathesis --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"

port="$(free_port)"
"$writ" serve --listen "127.0.0.1:$port" > "$dir/serve.out" 2> "$dir/serve.err" &
on_exit "kill $! 2>/dev/null || true"
wait_http "http://127.0.0.1:$port/healthz" || { echo "error: writ serve did not start" >&2; cat "$dir/serve.err" >&2; exit 1; }

log "schemathesis against http://127.0.0.1:$port"
# The token is a throwaway one for this run; Schemathesis prints the header as [Filtered].
# Run from the temporary directory: Schemathesis keeps its cache where it runs.
cd "$dir"
"$VENV/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    -H "Authorization: Bearer $token" --checks all --no-color "$@"
