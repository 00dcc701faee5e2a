"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body, keyed with the app secret."""

import hashlib
import hmac
import re

SIGNATURE_PREFIX = "sha256="
_WELL_FORMED = re.compile(r"^sha256=[0-9a-f]{64}$", re.IGNORECASE)


def sign(body: bytes, app_secret: str) -> str:
    """The header value Meta would send for `body`."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_matches(body: bytes, header_value: str | None, app_secret: str) -> bool:
    """True when `header_value` is `sha256=<hex>` of `body` under `app_secret`.

    The bytes are hashed exactly as received (never re-serialised JSON) and compared in constant
    time. An empty secret matches nothing, so a half-configured deployment fails closed.
    """
    if not header_value or not app_secret:
        return False
    candidate = header_value.strip()
    if candidate[: len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return False
    expected = sign(body, app_secret)
    provided = SIGNATURE_PREFIX + candidate[len(SIGNATURE_PREFIX) :].lower()
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "replace"))


def is_well_formed(header_value: str) -> bool:
    """`sha256=` and 64 hex digits (surrounding white space tolerated)."""
    return _WELL_FORMED.match(header_value.strip()) is not None
