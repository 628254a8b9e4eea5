"""Schemathesis hooks for scripts/schemathesis.sh.

An Idempotency-Key names one intended write: the server answers a replay of the same key and the
same body with the first answer, and refuses the same key with a different body (422
`idempotency.key_reused`, as the IETF Idempotency-Key draft asks). A generator cannot know which
requests are "the same write", so it reuses a few short keys across different bodies. Each
request that carries a well-formed key gets a fresh one instead; a malformed key is left as
drawn, so the server's refusal of malformed keys is still tested.
"""

import re
import uuid

import schemathesis

KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str) and KEY.match(headers[name]):
            headers[name] = str(uuid.uuid4())
