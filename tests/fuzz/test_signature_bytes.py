"""Property 4: the signature is checked over the exact bytes sent, whatever the header's case
or place and the body's encoding.

docs/contract.md, Ingest behaviour 1-2, and Meta (whatsapp-cloud-api.md): HMAC-SHA256 of the raw
body bytes under the app secret; never re-serialised JSON; header names in any case; an
`isBase64Encoded` body is decoded before hashing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.ingest.signature import sign
from tests.conftest import APP_SECRET
from tests.fuzz.harness import (
    Invocation,
    canonical,
    check_proxy_response,
    event_body,
    expected_messages,
    fuzz_settings,
    invoke,
    proxy_event,
    real_delivery,
)
from tests.fuzz.strategies import (
    SIGNATURE_HEADER,
    header_layout,
    serialize,
    valid_bodies,
    valid_deliveries,
)

pytestmark = pytest.mark.fuzz


def _post(body: bytes, signature: str, *, base64_encoded: bool, layout: Any = None) -> Any:
    headers, multi = layout if layout is not None else ({SIGNATURE_HEADER: signature}, None)
    return proxy_event(
        body=event_body(body, base64_encoded=base64_encoded),
        headers=headers,
        multi_value_headers=multi,
        base64_encoded=base64_encoded,
    )


def _accepted(event: dict[str, Any], body: bytes, app_secret: str = APP_SECRET) -> None:
    invocation = invoke(event, app_secret=app_secret)
    status, document = check_proxy_response(invocation)
    assert status == 200, document
    assert document["queued"] == len(expected_messages(json.loads(body)))


def _refused(event: dict[str, Any], app_secret: str = APP_SECRET) -> None:
    invocation = invoke(event, app_secret=app_secret)
    status, document = check_proxy_response(invocation)
    assert (status, document["error"]) == (401, "invalid_signature"), document
    assert invocation.queue.calls == 0


@st.composite
def deliveries_written_two_ways(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """One document as two different byte strings (spacing, escaping, key order, indent)."""
    document = draw(valid_deliveries)
    first = serialize(draw, document)
    second = draw(
        st.sampled_from(
            (
                json.dumps(document, separators=(",", ":")).encode(),
                json.dumps(document).encode(),
                json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                json.dumps(document, sort_keys=True, separators=(",", ":")).encode(),
                json.dumps(document, indent=1).encode(),
                first + b"\n",
                b" " + first,
                first.replace(b":", b": ", 1),
            )
        )
    )
    return first, second


@fuzz_settings(max_examples=100)
@given(deliveries_written_two_ways(), st.data())
def test_signature_is_over_the_bytes_not_the_json(
    pair: tuple[bytes, bytes], data: st.DataObject
) -> None:
    sent, other = pair
    signature = sign(sent, APP_SECRET)
    layout = header_layout(data.draw, [signature])
    base64_encoded = data.draw(st.booleans())

    _accepted(_post(sent, signature, base64_encoded=base64_encoded, layout=layout), sent)
    if other != sent:  # the same JSON in other bytes: what a re-serialising verifier would pass
        _refused(_post(other, signature, base64_encoded=base64_encoded, layout=layout))


@fuzz_settings(max_examples=100)
@given(valid_bodies, st.data())
def test_any_changed_byte_is_refused_raw_or_base64(body: bytes, data: st.DataObject) -> None:
    signature = sign(body, APP_SECRET)
    at = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    changed = body[:at] + bytes([body[at] ^ (1 << bit)]) + body[at + 1 :]

    # Changed bytes that are not text can reach the function only base64-encoded.
    _refused(_post(changed, signature, base64_encoded=True))
    try:
        changed.decode("utf-8")
    except UnicodeDecodeError:
        return
    _refused(_post(changed, signature, base64_encoded=False))


@fuzz_settings(max_examples=60)
@given(valid_bodies)
def test_the_same_bytes_pass_raw_and_base64_with_the_same_result(body: bytes) -> None:
    signature = sign(body, APP_SECRET)
    raw = invoke(_post(body, signature, base64_encoded=False))
    encoded = invoke(_post(body, signature, base64_encoded=True))

    assert check_proxy_response(raw) == check_proxy_response(encoded)
    assert _records(raw) == _records(encoded)
    assert len(_records(raw)) == len({m.wamid for m in expected_messages(json.loads(body))})


def _records(invocation: Invocation) -> list[tuple[str, str, str]]:
    """What was queued, less the time it was received."""
    return [
        (m.deduplication_id, m.group_id, canonical(json.loads(m.body)["message"]))
        for m in invocation.queue.messages
    ]


@pytest.mark.skipif(real_delivery() is None, reason="/work/shared/fixtures/real is not here")
class TestTheDeliveryMetaSigned:
    """The captured delivery, with the secret it was signed with and Meta's own header."""

    @fuzz_settings(max_examples=60)
    @given(st.data())
    def test_accepted_byte_for_byte_in_any_header_case_and_encoding(
        self, data: st.DataObject
    ) -> None:
        body, secret, header = real_delivery()  # type: ignore[misc]
        layout = header_layout(data.draw, [header])
        base64_encoded = data.draw(st.booleans())

        _accepted(_post(body, header, base64_encoded=base64_encoded, layout=layout), body, secret)

    @fuzz_settings(max_examples=60)
    @given(st.data())
    def test_refused_with_any_byte_changed(self, data: st.DataObject) -> None:
        body, secret, header = real_delivery()  # type: ignore[misc]
        at = data.draw(st.integers(0, len(body) - 1))
        changed = body[:at] + bytes([(body[at] + data.draw(st.integers(1, 255))) % 256])
        changed += body[at + 1 :]

        _refused(_post(changed, header, base64_encoded=True), secret)

    def test_refused_re_serialised(self) -> None:
        body, secret, header = real_delivery()  # type: ignore[misc]
        document = json.loads(body)
        for other in (
            json.dumps(document).encode(),
            json.dumps(document, separators=(",", ":"), sort_keys=True).encode(),
            base64.b64encode(body),  # the base64 text itself, sent as the raw body
        ):
            assert other != body
            _refused(_post(other, header, base64_encoded=False), secret)
