# Sourced by scripts/test.sh: a real headless browser for the web interface's tests — Debian's
# `chromium` and `chromium-driver` (installed if missing), ChromeDriver started on a free
# loopback port and stopped on exit. The tests drive it over W3C WebDriver.
# Exports WRIT_TEST_WEBDRIVER (ChromeDriver's URL) and WRIT_TEST_CHROMIUM (the browser binary).

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    log "installing chromium and chromium-driver (Debian)"
    apt_install chromium chromium-driver \
        || { echo "error: chromium and chromium-driver are required and could not be installed" >&2; exit 1; }
fi
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    || { echo "error: chromium or chromedriver is still missing after installing them" >&2; exit 1; }
WEBDRIVER_PORT=$(free_port)
WEBDRIVER_LOG=$(mktemp)
chromedriver --port="$WEBDRIVER_PORT" --allowed-ips=127.0.0.1 >"$WEBDRIVER_LOG" 2>&1 &
WEBDRIVER_PID=$!
stop_webdriver() { kill "$WEBDRIVER_PID" 2>/dev/null || true; rm -f "$WEBDRIVER_LOG"; }
on_exit stop_webdriver
wait_http "http://127.0.0.1:$WEBDRIVER_PORT/status" \
    || { echo "error: ChromeDriver did not start:" >&2; cat "$WEBDRIVER_LOG" >&2; exit 1; }
log "ChromeDriver on 127.0.0.1:$WEBDRIVER_PORT ($(chromium --version 2>/dev/null | head -1))"
export WRIT_TEST_WEBDRIVER="http://127.0.0.1:$WEBDRIVER_PORT"
export WRIT_TEST_CHROMIUM="$(command -v chromium)"
