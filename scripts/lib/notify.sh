# Sourced by scripts/test.sh: what the notification tests deliver to — an SMTP sink (PyPI
# aiosmtpd, writing each message to a Maildir) and a webhook receiver that checks every
# delivery's Standard Webhooks signature with the official library (PyPI standardwebhooks,
# scripts/webhook_receiver.py) — in one virtual environment under the user's cache (installed
# once). Each test starts its own on a free loopback port, with its own Maildir and log.
# Exports WRIT_TEST_NOTIFY_PYTHON (the environment's python).

NOTIFY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/writ-test/notify-venv"
pip_venv "$NOTIFY_VENV" "aiosmtpd==1.4.6" aiosmtpd
if ! "$NOTIFY_VENV/bin/python" -c 'import standardwebhooks' 2>/dev/null; then
    log "installing standardwebhooks (PyPI) into $NOTIFY_VENV"
    "$NOTIFY_VENV/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==1.1.0" \
        || { echo "error: standardwebhooks could not be installed" >&2; exit 1; }
fi
"$NOTIFY_VENV/bin/python" -c 'import aiosmtpd.handlers, standardwebhooks' \
    || { echo "error: aiosmtpd or standardwebhooks does not import" >&2; exit 1; }
log "notification receivers: aiosmtpd (SMTP sink), standardwebhooks (webhook receiver)"
export WRIT_TEST_NOTIFY_PYTHON="$NOTIFY_VENV/bin/python"
