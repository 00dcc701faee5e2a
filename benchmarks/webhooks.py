"""Signed WhatsApp webhook bodies, as Meta sends them, for every benchmark (one builder, so the
handler, pywa and the local pipeline are all fed the same bytes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
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


def delivery(messages: Sequence[tuple[str, str]]) -> bytes:
    """One webhook body: one change per (wamid, sender), compact and ASCII-escaped like Meta's."""
    return delivery_of_changes([[message] for message in messages])


def delivery_of_changes(changes: Sequence[Sequence[tuple[str, str]]]) -> bytes:
    """One webhook body with a change per list of (wamid, sender); a change's contact is its
    first sender. Contacts carry the 2026 `user_id` (BSUID) next to `wa_id`: pywa 4.5 needs it."""
    documents = [
        {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": DISPLAY_NUMBER,
                    "phone_number_id": PHONE_NUMBER_ID,
                },
                "contacts": [
                    {
                        "profile": {"name": "Ana"},
                        "wa_id": messages[0][1],
                        "user_id": f"US.{messages[0][1]}",
                    }
                ],
                "messages": [
                    {
                        "from": sender,
                        "id": wamid,
                        "timestamp": str(int(time.time())),  # inside the 24-hour window
                        "type": "text",
                        "text": {"body": TEXT},
                    }
                    for wamid, sender in messages
                ],
            },
        }
        for messages in changes
    ]
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": documents}],
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def signature(body: bytes, app_secret: str) -> str:
    """`X-Hub-Signature-256` as Meta computes it."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
