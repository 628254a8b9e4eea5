"""An SMTP relay for Writ's notification tests that insists on STARTTLS and AUTH (aiosmtpd).

It listens on 127.0.0.1:--port with the certificate and key given, requires STARTTLS before
anything else and AUTH (PLAIN or LOGIN) with the user and password in --credentials-file
(`user:password`), and writes every message it accepts to the Maildir --maildir. Each AUTH
attempt is appended to --log as `ok` or `refused` (never the password). It prints "listening"
once ready.
"""

import argparse
import ssl
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--credentials-file", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.credentials_file, encoding="utf-8") as f:
        user, password = f.read().strip().split(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        with open(args.log, "a", encoding="utf-8") as log:
            log.write(("ok" if ok else "refused") + "\n")
        return AuthResult(success=ok)

    controller = Controller(
        Mailbox(args.maildir),
        hostname="127.0.0.1",
        port=args.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("listening", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        controller.stop()


if __name__ == "__main__":
    main()
