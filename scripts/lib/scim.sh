# Sourced by scripts/test.sh: the SCIM conformance tools from PyPI, each in its own virtual
# environment under the user's cache (installed once): scim2-cli (the `scim2` command, which
# drives scim2-tester) and scim-sanity. The SCIM tests run both against a real `writ serve`.
# Exports WRIT_TEST_SCIM2 and WRIT_TEST_SCIM_SANITY (the commands).

SCIM2_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/scim2-venv"
SCIM_SANITY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/scim-sanity-venv"
pip_venv "$SCIM2_VENV" "scim2-cli==0.6.0" scim2
pip_venv "$SCIM_SANITY_VENV" "scim-sanity==0.7.4" scim-sanity
"$SCIM2_VENV/bin/scim2" --help >/dev/null || { echo "error: scim2 (scim2-cli) does not run" >&2; exit 1; }
"$SCIM_SANITY_VENV/bin/scim-sanity" --help >/dev/null || { echo "error: scim-sanity does not run" >&2; exit 1; }
log "SCIM conformance tools: scim2-cli, scim-sanity"
export WRIT_TEST_SCIM2="$SCIM2_VENV/bin/scim2"
export WRIT_TEST_SCIM_SANITY="$SCIM_SANITY_VENV/bin/scim-sanity"
