"""Signed WhatsApp webhook bodies, as Meta sends them, for every benchmark (one builder, so the
handler, pywa and the local pipeline are all fed the same bytes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence

PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
TEXT = "hello, is this available in blue? 👍"  # matches the shipped greeting rule: one reply


def new_wamid(tag: str = "bench") -> str:
    return f"wamid.{tag}.{uuid.uuid4().hex}"


def sender_number(index: int) -> str:
    return f"1650555{index:04d}"


def delivery(messages: Sequence[tuple[str, str]], *, timestamp: str = "1764061200") -> bytes:
    """One webhook body: one change per (wamid, sender), compact and ASCII-escaped like Meta's.

    Contacts carry the 2026 `user_id` (BSUID) next to `wa_id`: pywa 4.5 requires it."""
    changes = [
        {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": DISPLAY_NUMBER,
                    "phone_number_id": PHONE_NUMBER_ID,
                },
                "contacts": [
                    {"profile": {"name": "Ana"}, "wa_id": sender, "user_id": f"US.{sender}"}
                ],
                "messages": [
                    {
                        "from": sender,
                        "id": wamid,
                        "timestamp": timestamp,
                        "type": "text",
                        "text": {"body": TEXT},
                    }
                ],
            },
        }
        for wamid, sender in messages
    ]
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": changes}],
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def signature(body: bytes, app_secret: str) -> str:
    """`X-Hub-Signature-256` as Meta computes it."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
