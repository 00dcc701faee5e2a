"""Signed sample webhooks: the banner's ready-to-paste `curl` and the demo's deliveries."""

from __future__ import annotations

import json
import shlex
import time
import uuid
from typing import Any

from functions.domain.ingest.signature import sign

SAMPLE_WABA_ID = "102290129340398"
SAMPLE_PHONE_NUMBER_ID = "106540352242922"
SAMPLE_DISPLAY_NUMBER = "15550783881"
SAMPLE_SENDER = "16505551234"


def new_wamid(tag: str = "") -> str:
    return f"wamid.local.{tag + '.' if tag else ''}{uuid.uuid4().hex}"


def message_delivery(
    message: dict[str, Any],
    *,
    sender: str = SAMPLE_SENDER,
    name: str = "Sheena Nelson",
    phone_number_id: str = SAMPLE_PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A webhook body holding one inbound message (`from`/`timestamp` filled in)."""
    message = {"from": sender, "timestamp": str(int(time.time())), **message}
    return _delivery(
        {
            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
            "messages": [message],
        },
        phone_number_id=phone_number_id,
    )


def status_delivery(
    wamid: str, status: str = "delivered", *, recipient: str = SAMPLE_SENDER
) -> dict[str, Any]:
    return _delivery(
        {
            "statuses": [
                {
                    "id": wamid,
                    "status": status,
                    "timestamp": str(int(time.time())),
                    "recipient_id": recipient,
                }
            ]
        },
        phone_number_id=SAMPLE_PHONE_NUMBER_ID,
    )


def _delivery(value: dict[str, Any], *, phone_number_id: str) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": SAMPLE_WABA_ID,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": SAMPLE_DISPLAY_NUMBER,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def encode(document: dict[str, Any]) -> bytes:
    """Compact, ASCII-escaped JSON: the bytes Meta would send (and sign)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def signed_curl(url: str, body: bytes, app_secret: str) -> str:
    """A ready-to-paste command posting `body` with a valid `X-Hub-Signature-256`."""
    return " ".join(
        [
            "curl -sS -i -X POST",
            shlex.quote(url),
            "-H 'Content-Type: application/json'",
            "-H " + shlex.quote(f"X-Hub-Signature-256: {sign(body, app_secret)}"),
            "--data-binary " + shlex.quote(body.decode("ascii")),
        ]
    )


def text_message(body: str = "Hello from make run!", *, wamid: str | None = None) -> dict[str, Any]:
    return {"id": wamid or new_wamid("text"), "type": "text", "text": {"body": body}}
