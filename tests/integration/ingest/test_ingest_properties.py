"""Property-based tests of the ingest handler against moto's server.

- no input, signed or not, makes the handler raise or answer 5xx while the queue is healthy;
- a request without the right signature never queues anything;
- every message of any valid batch is queued exactly once.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.domain.ingest.signature import sign
from functions.domain.whatsapp.queued_record import QueuedRecord
from tests.conftest import APP_SECRET, FifoQueues
from tests.events import builders as b
from tests.integration.ingest.conftest import Invoke

pytestmark = pytest.mark.integration

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MESSAGE_TYPES = [
    "text", "image", "video", "audio", "document", "sticker", "location", "contacts",
    "interactive", "button", "reaction", "order", "system", "unsupported", "ephemeral",
]  # fmt: skip

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
unicode_text = st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=0x1FAFF, exclude_categories=["Cs"]),
    max_size=40,
)


@st.composite
def webhook_like(draw: st.DrawFn) -> Any:
    """Webhook-shaped documents with junk where junk can appear."""
    changes = []
    for _ in range(draw(st.integers(0, 4))):
        messages = [
            b.message(
                draw(st.sampled_from(MESSAGE_TYPES)),
                sender=draw(st.sampled_from(["", "16505551234", "447700900001"])),
                content=draw(st.none() | st.fixed_dictionaries({"body": unicode_text})),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        changes.append(
            b.change(
                messages=messages or None,
                statuses=[b.status(draw(st.sampled_from(["sent", "read", "failed"])))]
                if draw(st.booleans())
                else None,
                errors=[{"code": draw(json_scalars)}] if draw(st.booleans()) else None,
                field=draw(st.sampled_from(["messages", "messages", "account_update", ""])),
            )
        )
    document: Any = b.webhook(*changes, entries=draw(st.integers(1, 3))) if changes else {}
    # Replace one random piece with junk, sometimes.
    if draw(st.booleans()) and changes:
        value = document["entry"][0]["changes"][0]["value"]
        key = draw(st.sampled_from(["messages", "statuses", "metadata", "contacts", "errors"]))
        value[key] = draw(json_values)
    return document


bodies = (
    st.binary(max_size=200)
    | unicode_text.map(lambda t: t.encode("utf-8"))
    | json_values.map(lambda v: json.dumps(v).encode())
    | webhook_like().map(lambda d: b.encode(d, ascii_only=False))
    | webhook_like().map(b.encode)
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """(event, correctly signed?)"""
    body = draw(bodies)
    signing = draw(st.sampled_from(["right", "wrong-secret", "garbage", "none"]))
    headers: dict[str, str] = draw(
        st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3)
    )
    header_name = draw(st.sampled_from(["X-Hub-Signature-256", "x-hub-signature-256"]))
    if signing == "right":
        headers[header_name] = sign(body, APP_SECRET)
    elif signing == "wrong-secret":
        headers[header_name] = sign(body, "not-the-secret")
    elif signing == "garbage":
        headers[header_name] = draw(st.text(max_size=80))
    base64_encoded = draw(st.booleans())
    if not base64_encoded:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            base64_encoded = True
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "HEAD"]))
    event = b.api_event(method, body=body, headers=headers, base64_encoded=base64_encoded)
    if draw(st.booleans()):
        event["headers"] = None  # multiValueHeaders only, as API Gateway may send
    return event, signing == "right" and method == "POST"


@PROPERTY_SETTINGS
@given(request=requests())
def test_no_input_raises_or_gets_a_5xx_and_unsigned_input_is_never_queued(
    ingest: Invoke, fifo_queues: FifoQueues, request: tuple[dict[str, Any], bool]
) -> None:
    event, correctly_signed = request

    answer = ingest(event)

    assert answer["statusCode"] in {200, 400, 401, 403, 405}
    assert isinstance(answer["body"], str)
    queued = fifo_queues.drain()
    if answer["statusCode"] != 200:
        assert queued == []
        if answer["statusCode"] != 403:
            assert "error" in json.loads(answer["body"])
    if not correctly_signed:
        assert answer["statusCode"] != 200 or event["httpMethod"] == "GET"
        assert queued == []


@st.composite
def valid_batches(draw: st.DrawFn) -> dict[str, Any]:
    changes = []
    for _ in range(draw(st.integers(1, 6))):
        senders = draw(
            st.lists(
                st.sampled_from(["4477009001", "4477009002", "16505551234", ""]),
                min_size=1,
                max_size=4,
            )
        )
        changes.append(
            b.change(
                messages=[
                    b.message(draw(st.sampled_from(MESSAGE_TYPES)), sender=sender)
                    for sender in senders
                ],
                statuses=[b.status()] if draw(st.booleans()) else None,
                phone_number_id=draw(st.sampled_from(["111", "222", "333"])),
            )
        )
    return b.webhook(*changes, entries=draw(st.integers(1, 3)))


@settings(PROPERTY_SETTINGS, max_examples=25)
@given(document=valid_batches(), ascii_only=st.booleans(), as_base64=st.booleans())
def test_every_message_of_a_valid_batch_is_queued_exactly_once(
    ingest: Invoke,
    fifo_queues: FifoQueues,
    document: dict[str, Any],
    ascii_only: bool,
    as_base64: bool,
) -> None:
    # Fresh wamids per example: SQS would (rightly) deduplicate hypothesis' replays.
    for entry in document["entry"]:
        for change in entry["changes"]:
            for message in change["value"].get("messages", []):
                message["id"] = f"wamid.{uuid.uuid4().hex}"
    body = b.encode(document, ascii_only=ascii_only)
    expected = sorted(
        m["id"]
        for entry in document["entry"]
        for change in entry["changes"]
        for m in change["value"].get("messages", [])
    )

    answer = ingest(b.signed_post(body, APP_SECRET, base64_encoded=as_base64))

    assert answer["statusCode"] == 200
    queued = [QueuedRecord.from_json(m["Body"]) for m in fifo_queues.drain()]
    assert sorted(r.wamid for r in queued) == expected


def test_base64_strategy_sanity() -> None:
    # The request strategy base64-encodes bodies that are not UTF-8; make sure such an event
    # decodes to the original bytes (the property above relies on it).
    raw = b"\xff\x00"
    event = b.api_event(body=raw, base64_encoded=True)
    assert base64.b64decode(event["body"]) == raw
