"""A webhook receiver for Writ's notification tests.

Each delivery is checked with the official Standard Webhooks library (PyPI `standardwebhooks`)
against the secret in --secret-file, then recorded as one JSON line in --log:
{"id": webhook-id, "verified": bool, "error": str|null, "status": answered, "body": parsed or
null}. The first --fail deliveries are answered 503 (the receiver is "down"); with --redirect
every delivery is answered 307 to another URL. It listens on 127.0.0.1 on a free port and prints
"listening PORT" once ready.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail", type=int, default=0)
    parser.add_argument("--redirect", action="store_true")
    args = parser.parse_args()
    with open(args.secret_file, encoding="ascii") as f:
        webhook = Webhook(f.read().strip())
    lock = threading.Lock()
    state = {"seen": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k: v for k, v in self.headers.items()}
            try:
                parsed = webhook.verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as e:
                parsed, verified, error = None, False, str(e)
            with lock:
                state["seen"] += 1
                if args.redirect:
                    status = 307
                elif state["seen"] <= args.fail:
                    status = 503
                else:
                    status = 204 if verified else 401
                record = {
                    "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
                    "verified": verified,
                    "error": error,
                    "status": status,
                    "body": parsed,
                }
                with open(args.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(record) + "\n")
            self.send_response(status)
            if status == 307:
                self.send_header("location", "http://127.0.0.1:9/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
