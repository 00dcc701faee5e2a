"""Properties 1 and 2 for signed bodies: what a holder of the app secret (Meta) may send.

docs/contract.md, Ingest behaviour: a signed body that is not JSON, or not a JSON object, is a
400 and nothing is queued; otherwise every inbound message of every entry/change is queued (a
malformed piece skipped without costing its neighbours), 200 `{"queued": n}` only once SQS
accepted all of them, 503 `queue_unavailable` when it did not. The queued record: schema v1,
compact ASCII-escaped JSON holding the message exactly as Meta sent it; the deduplication id is
the wamid, so a message is on the queue once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.ingest.signature import sign
from tests.conftest import APP_SECRET
from tests.fuzz.harness import (
    ExpectedMessage,
    InMemoryFifoQueue,
    Invocation,
    check_proxy_response,
    check_queue_matches,
    event_body,
    expected_messages,
    fixture_bodies,
    fuzz_settings,
    invoke,
    is_text,
    proxy_event,
    strict_json,
)
from tests.fuzz.strategies import (
    DEPTHS,
    SIGNATURE_HEADER,
    deep,
    header_layout,
    hostile_bodies,
    mutated_bodies,
    mutated_deliveries,
    synthetic_delivery,
    valid_deliveries,
)

pytestmark = pytest.mark.fuzz


def signed_post(draw: st.DrawFn, body: bytes) -> dict[str, Any]:
    """`body` signed with the app secret, the header in any case and place, the body raw or
    base64-encoded (always base64 when the bytes are not text)."""
    headers, multi = header_layout(draw, [sign(body, APP_SECRET)])
    base64_encoded = draw(st.booleans()) or not is_text(body)
    return proxy_event(
        method=draw(st.sampled_from(("POST", "post"))),
        body=event_body(body, base64_encoded=base64_encoded),
        headers=headers,
        multi_value_headers=multi,
        base64_encoded=base64_encoded,
    )


@st.composite
def signed_posts(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> tuple[bytes, dict[str, Any]]:
    body = draw(bodies)
    return body, signed_post(draw, body)


def _lenient_object(body: bytes) -> Any:
    """What Python's json module makes of the body, or None when it raises."""
    try:
        return json.loads(body)
    except Exception:  # noqa: BLE001 - any failure (RecursionError included) means "not parsed"
        return None


def _strict_object(body: bytes) -> Any:
    try:
        return strict_json(body)
    except Exception:  # noqa: BLE001
        return None


# RFC 8259 lets a parser limit nesting; Python's is its recursion limit (~1,000 levels, less the
# stack in use), Meta's payloads are under 10 levels deep. Below this, a JSON object is accepted.
PARSER_DEPTH_FLOOR = 500


def nesting_depth(body: bytes) -> int:
    """The deepest `[`/`{` nesting outside strings (no recursion, so any depth)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def check_signed_answer(invocation: Invocation, body: bytes) -> int:
    """A signed body: 200 with every expected message queued, or 400 `invalid_payload` with
    nothing queued when the body is not a JSON object. Never a 5xx: this queue never fails."""
    status, document = check_proxy_response(invocation)
    assert status in (200, 400), (status, document)
    strict = _strict_object(body)
    if status == 400:
        assert document["error"] == "invalid_payload", document
        assert invocation.queue.calls == 0
        if nesting_depth(body) < PARSER_DEPTH_FLOOR:
            assert not isinstance(strict, dict), "a valid JSON object was refused"
        return status
    with _room_for(body):  # the test's own parsing must not be what overflows
        parsed = _lenient_object(body)
        assert isinstance(parsed, dict), "a body that is not a JSON object was accepted"
        check_queue_matches(invocation.queue, expected_messages(parsed), document)
    return status


@contextmanager
def _room_for(body: bytes) -> Iterator[None]:
    """A recursion limit the test's checks cannot reach, for a body the ingest accepted near
    its own limit (the checks run a few frames deeper than the ingest did)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * nesting_depth(body) + 1_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


@fuzz_settings(max_examples=200)
@given(signed_posts(hostile_bodies))
def test_any_signed_body_is_200_or_400_and_never_crashes(
    case: tuple[bytes, dict[str, Any]],
) -> None:
    body, event = case
    check_signed_answer(invoke(event), body)


@fuzz_settings(max_examples=200)
@given(signed_posts(mutated_bodies))
def test_mutated_deliveries_queue_every_message_exactly_once(
    case: tuple[bytes, dict[str, Any]],
) -> None:
    body, event = case
    invocation = invoke(event)

    assert check_signed_answer(invocation, body) == 200, "a JSON object was refused"


@pytest.mark.parametrize("body", fixture_bodies(), ids=lambda body: str(len(body)))
def test_every_stored_delivery_is_queued_as_the_contract_says(body: bytes) -> None:
    invocation = invoke(
        proxy_event(body=body.decode("utf-8"), headers={SIGNATURE_HEADER: sign(body, APP_SECRET)})
    )

    assert check_signed_answer(invocation, body) == 200


@pytest.mark.parametrize("kind", ["arrays", "objects", "unbalanced", "in_message", "in_entry"])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("base64_encoded", [False, True], ids=["raw", "base64"])
def test_deep_nesting_signed_is_a_clean_answer(kind: str, depth: int, base64_encoded: bool) -> None:
    body = deep(depth, kind)
    invocation = invoke(
        proxy_event(
            body=event_body(body, base64_encoded=base64_encoded),
            headers={SIGNATURE_HEADER: sign(body, APP_SECRET)},
            base64_encoded=base64_encoded,
        )
    )

    check_signed_answer(invocation, body)


def test_nesting_around_the_parsers_limit_is_a_clean_answer() -> None:
    """Deep enough to parse but near the interpreter's limit: whatever the ingest does with the
    message afterwards (queue it, log it, count it) must not overflow where parsing did not."""
    statuses = set()
    for depth in range(880, 1010, 2):
        body = deep(depth, "in_message")
        statuses.add(
            check_signed_answer(
                invoke(
                    proxy_event(
                        body=body.decode(), headers={SIGNATURE_HEADER: sign(body, APP_SECRET)}
                    )
                ),
                body,
            )
        )
    assert statuses  # both answers are allowed; which depth flips depends on the stack


# --- the queue refusing ------------------------------------------------------------------------


def _conversations_by_bsuid(expected: list[ExpectedMessage]) -> dict[tuple[str, str], list[str]]:
    """Messages that certainly share a conversation (one business number, one `from_user_id`,
    which names the conversation whenever Meta gives it), in delivery order."""
    conversations: dict[tuple[str, str], list[str]] = {}
    for message in expected:
        user_id = message.raw.get("from_user_id")
        if (
            isinstance(user_id, str)
            and user_id
            and message.wamid not in conversations.get((message.phone_number_id, user_id), [])
        ):
            conversations.setdefault((message.phone_number_id, user_id), []).append(message.wamid)
    return conversations


@fuzz_settings(max_examples=150)
@given(
    st.one_of(valid_deliveries, synthetic_delivery(), mutated_deliveries),
    st.sets(st.integers(0, 30), max_size=12),
    st.sampled_from(("ThrottlingException", "InternalError", "ServiceUnavailable")),
)
def test_200_only_when_every_message_was_queued(
    document: Any, refused_positions: set[int], code: str
) -> None:
    body = json.dumps(document).encode()
    queue = InMemoryFifoQueue(refuse=lambda n: code if n in refused_positions else None)
    invocation = invoke(
        proxy_event(body=body.decode(), headers={SIGNATURE_HEADER: sign(body, APP_SECRET)}),
        queue,
    )

    status, answer = check_proxy_response(invocation)
    expected = expected_messages(document)
    queued = [strict_json(m.body)["wamid"] for m in queue.messages]
    assert not queue.invalid_entries
    if status == 200:
        check_queue_matches(queue, expected, answer)
    else:
        assert (status, answer["error"]) == (503, "queue_unavailable"), answer
        assert set(queued) < {m.wamid for m in expected}, "all queued, yet not acknowledged"
    for wamids in _conversations_by_bsuid(expected).values():
        on_queue = [wamid for wamid in queued if wamid in wamids]
        assert on_queue == wamids[: len(on_queue)], "a conversation queued past a gap"


# --- what the properties found, minimized, kept as plain examples -----------------------------

_ONE_MESSAGE = (
    '{"entry":[{"changes":[{"value":{"metadata":{"phone_number_id":%s},'
    '"messages":[{"id":%s,"from":%s}]}}]}]}'
)
MINIMIZED = {
    # RecursionError out of json.loads: a 500 that Meta would redeliver for a week.
    "nested_10000_deep": b"[" * 10_000 + b"]" * 10_000,
    # A lone surrogate (valid JSON escape, not valid Unicode) in the wamid, the sender or the
    # business number: UnicodeEncodeError while hashing the group or deduplication id.
    "surrogate_in_id": (_ONE_MESSAGE % ('"1"', '"\\ud800"', '"1"')).encode(),
    "surrogate_in_from": (_ONE_MESSAGE % ('"1"', '"w"', '"\\ud800"')).encode(),
    "surrogate_in_number": (_ONE_MESSAGE % ('"\\ud800"', '"w"', '"1"')).encode(),
    # `$` matches before a final newline: the wamid went to SQS as the deduplication id, which
    # SQS refuses (newline is not ASCII 33-126) on every redelivery: 503 for a week.
    "newline_ending_id": (_ONE_MESSAGE % ('"1"', '"wamid.X\\n"', '"1"')).encode(),
    # Python reads NaN and 1e400 (as inf); the record then carried NaN/Infinity: not JSON.
    "nan_in_message": (_ONE_MESSAGE % ('"1"', '"w"', "NaN")).encode(),
    "overflowing_number_in_message": (_ONE_MESSAGE % ('"1"', '"w"', "1e400")).encode(),
}


@pytest.mark.parametrize("body", MINIMIZED.values(), ids=MINIMIZED.keys())
def test_minimized_findings(body: bytes) -> None:
    invocation = invoke(
        proxy_event(
            body=body.decode("utf-8", "surrogatepass"),
            headers={SIGNATURE_HEADER: sign(body, APP_SECRET)},
        )
    )

    check_signed_answer(invocation, body)


def _large_delivery(messages: int, text_length: int) -> bytes:
    """Meta's largest: up to 1,000 updates in one POST, up to about 3 MB, several numbers."""
    changes = [
        {
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "1555", "phone_number_id": f"10654{n % 3}"},
                "contacts": [{"profile": {"name": "Ann"}, "wa_id": f"1650555{n % 50:04d}"}],
                "messages": [
                    {
                        "from": f"1650555{n % 50:04d}",
                        "id": f"wamid.LARGE{n:05d}=",
                        "timestamp": "1749416383",
                        "type": "text",
                        "text": {"body": "\u00e9\u4e2d\U0001f600a" * (text_length // 4)},
                    }
                ],
            },
        }
        for n in range(messages)
    ]
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"waba{e}", "changes": changes[e::10]} for e in range(10)],
    }
    return json.dumps(document, separators=(",", ":")).encode()


@pytest.mark.parametrize(("messages", "text_length"), [(1_000, 16), (1_000, 400)])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
def test_the_largest_deliveries(messages: int, text_length: int, signed: bool) -> None:
    body = _large_delivery(messages, text_length)
    signature = sign(body, APP_SECRET if signed else APP_SECRET + "x")
    invocation = invoke(
        proxy_event(
            body=event_body(body, base64_encoded=True),
            headers={SIGNATURE_HEADER: signature},
            base64_encoded=True,
        )
    )

    if signed:
        assert check_signed_answer(invocation, body) == 200
    else:
        status, _ = check_proxy_response(invocation)
        assert status == 401
        assert invocation.queue.calls == 0
