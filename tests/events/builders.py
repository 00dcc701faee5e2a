"""Small builders for webhook bodies and API Gateway events, with overrides.

The JSON files beside this module are Meta's documented examples (and one real, signed delivery);
these builders make the variety real traffic brings: many entries, many numbers, every type.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from functions.domain.ingest.signature import sign

EVENTS = Path(__file__).parent
BUSINESS_NUMBER_ID = "106540352242922"
BUSINESS_DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
SENDER = "16505551234"

_counter = itertools.count(1)


def fixture_bytes(name: str) -> bytes:
    """A stored webhook body, byte for byte (they are stored the way Meta sends them)."""
    return (EVENTS / "webhooks" / f"{name}.json").read_bytes().rstrip(b"\n")


def new_wamid() -> str:
    return f"wamid.TEST{next(_counter):06d}{uuid.uuid4().hex[:16]}="


def message(
    message_type: str = "text",
    *,
    wamid: str | None = None,
    sender: str = SENDER,
    content: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "text": {"body": "hello"},
        "image": {"id": "1003383421387256", "mime_type": "image/jpeg", "sha256": "abc="},
        "video": {"id": "2", "mime_type": "video/mp4", "sha256": "def="},
        "audio": {
            "id": "3",
            "mime_type": "audio/ogg; codecs=opus",
            "sha256": "ghi=",
            "voice": True,
        },
        "document": {"id": "4", "mime_type": "application/pdf", "filename": "invoice.pdf"},
        "sticker": {"id": "5", "mime_type": "image/webp", "animated": False},
        "location": {"latitude": 38.9, "longitude": -77.03, "name": "Office", "address": "Main"},
        "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
        "button": {"payload": "STOP", "text": "Stop promotions"},
        "reaction": {"message_id": "wamid.OUTBOUND=", "emoji": "\U0001f44d"},
        "order": {"catalog_id": "c1", "product_items": [{"product_retailer_id": "p1"}]},
        "system": {"body": "User changed number", "type": "user_changed_number"},
        "unsupported": {"type": "edit"},
    }
    body: dict[str, Any] = {
        "from": sender,
        "id": wamid or new_wamid(),
        "timestamp": "1749416383",
        "type": message_type,
    }
    if message_type == "contacts":
        body["contacts"] = content or [{"name": {"formatted_name": "Ann"}, "phones": []}]
    else:
        body[message_type] = content if content is not None else defaults.get(message_type, {})
    body.update(extra)
    return body


def change(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
    phone_number_id: str = BUSINESS_NUMBER_ID,
    contacts: list[dict[str, Any]] | None = None,
    field: str = "messages",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": BUSINESS_DISPLAY_NUMBER,
            "phone_number_id": phone_number_id,
        },
    }
    if messages is not None:
        senders = sorted({m.get("from", "") for m in messages})
        value["contacts"] = (
            contacts
            if contacts is not None
            else [{"profile": {"name": f"User {s[-2:]}"}, "wa_id": s} for s in senders]
        )
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    if errors is not None:
        value["errors"] = errors
    return {"field": field, "value": value}


def webhook(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    """A delivery whose changes are spread over `entries` entries (round robin)."""
    grouped: list[list[dict[str, Any]]] = [[] for _ in range(entries)]
    for index, item in enumerate(changes):
        grouped[index % entries].append(item)
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": group} for group in grouped],
    }


def status(
    status_value: str = "delivered", *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": new_wamid(),
        "status": status_value,
        "timestamp": "1750263773",
        "recipient_id": SENDER,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def meta_error(code: int, title: str = "error") -> dict[str, Any]:
    return {"code": code, "title": title, "message": title, "error_data": {"details": title}}


def encode(document: Any, *, ascii_only: bool = True) -> bytes:
    """JSON the way Meta sends it: compact, non-ASCII escaped unless asked otherwise."""
    return json.dumps(document, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8")


def api_event(
    method: str = "POST",
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_encoded: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload 1.0) for /webhook."""
    if body is None:
        event_body: str | None = None
    elif base64_encoded:
        event_body = base64.b64encode(body).decode("ascii")
    else:
        event_body = body.decode("utf-8")
    return {
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in (headers or {}).items()} or None,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/webhook",
            "httpMethod": method,
            "path": "/prod/webhook",
            "stage": "prod",
            "requestId": request_id or str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": event_body,
        "isBase64Encoded": base64_encoded,
    }


def signed_post(
    body: bytes,
    secret: str,
    *,
    header_name: str = "X-Hub-Signature-256",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    return api_event(
        "POST",
        body=body,
        headers={header_name: sign(body, secret), "Content-Type": "application/json"},
        base64_encoded=base64_encoded,
    )
