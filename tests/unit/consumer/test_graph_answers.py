"""Any answer Meta gives is read as an answer: `meta_error`, `parse_retry_after` and the answer
reader of the Graph client never raise anything but `GraphApiError`, whatever the status, body
or headers. Property tests with a fixed seed; no socket (urllib3 reads from memory here)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters.graph_client import (
    MAX_ANSWER_BYTES,
    answer_for_status,
    meta_error,
    parse_retry_after,
    read_answer,
)
from functions.domain.consumer.error_policy import MAX_VISIBILITY_SECONDS, classify
from functions.domain.consumer.ports import GraphApiError

pytestmark = pytest.mark.unit

# derandomize: the same examples on every run and every machine (a fixed seed).
PROPERTIES = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

META_ERROR = {
    "error": {
        "message": "(#130429) Rate limit hit",
        "type": "OAuthException",
        "code": 130429,
        "error_data": {"messaging_product": "whatsapp", "details": "Cloud API throughput hit"},
        "fbtrace_id": "AbCdEf",
    }
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from([10**20, -1, 131056.0, "131056", "\uff11\uff13\uff11", "\u00b2", "1e9"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
error_documents = st.fixed_dictionaries(
    {},
    optional={
        "message": json_values,
        "type": json_values,
        "code": json_values,
        "error_subcode": json_values,
        "error_data": json_values | st.fixed_dictionaries({"details": json_values}),
        "is_transient": json_values,
        "fbtrace_id": json_values,
    },
)
documents = (
    st.none()
    | st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    | (st.builds(lambda error: {"error": error}, error_documents | json_values))
)
header_texts = (
    st.none()
    | st.text()
    | st.sampled_from(
        [
            "120",
            "\u0661\u0662\u0660",  # Arabic-Indic digits: isdigit() says yes
            "\u00b2",  # superscript two: isdigit() says yes, float() says no
            "\uff11\uff12\uff10",  # fullwidth digits
            "9" * 400,  # float() makes it infinity
            "9" * 5000,  # int() refuses it
            "-5",
            "1.5",
            "nan",
            "Wed, 21 Oct 99999 07:28:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 -0000",
            "Mon, 99 Foo 2026 99:99:99 GMT",
            " 30 ",
        ]
    )
)
bodies = st.binary(max_size=512) | st.sampled_from(
    [
        b"[" * 100_000,  # nested past the recursion limit
        b'{"error":' * 50_000 + b"1" + b"}" * 50_000,
        b"\xff\xfe\x00{",  # not UTF-8
        b'{"error": {"code": 131056}}\xc3\x28',  # valid JSON, then an invalid byte
        b"x" * (MAX_ANSWER_BYTES + 10),  # too big to be Meta's
        json.dumps(META_ERROR).encode(),
        b'{"error": {"code": ' + b"9" * 5000 + b"}}",  # past Python's digit limit
        b"<html><body>502 Bad Gateway</body></html>",
    ]
)


def answer(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Any:
    """What the reader makes of an answer, read from memory as urllib3 reads a socket."""
    response = urllib3.HTTPResponse(
        body=io.BytesIO(body),
        headers=headers or {},
        status=status,
        preload_content=False,
    )
    return read_answer(response)


@PROPERTIES
@given(status=st.integers(100, 999), document=documents, retry_after=header_texts)
def test_meta_error_reads_anything_into_a_usable_code(
    status: int, document: Any, retry_after: str | None
) -> None:
    error = meta_error(status, document, retry_after)

    assert isinstance(error, GraphApiError)
    assert error.code == f"http_{status}" or (error.code.isascii() and error.code.isdigit())
    assert len(error.code) <= 9
    assert error.http_status == status
    assert len(error.message) <= 300
    assert len(error.details) <= 300
    classify(error.code, is_transient=error.is_transient)  # a class for every code
    if error.retry_after_seconds is not None:
        assert 0 <= error.retry_after_seconds <= MAX_VISIBILITY_SECONDS


@PROPERTIES
@given(value=header_texts)
def test_retry_after_is_seconds_within_sqs_limits_or_none(value: str | None) -> None:
    seconds = parse_retry_after(value, now=1_795_597_200.0)

    assert seconds is None or 0 <= seconds <= MAX_VISIBILITY_SECONDS


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        (" 30 ", 30),
        ("\u0661\u0662\u0660", None),  # isdigit() accepts them; HTTP does not
        ("\u00b2", None),
        ("9" * 400, MAX_VISIBILITY_SECONDS),
        ("9" * 5000, MAX_VISIBILITY_SECONDS),  # int() would refuse it
        ("-5", None),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),
        ("Wed, 25 Nov 2026 09:00:30 GMT", 30),
        ("Wed, 25 Nov 2026 08:00:00 GMT", 0),  # in the past: retry now
    ],
)
def test_retry_after_edge_cases(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1_795_597_200.0) == seconds


@PROPERTIES
@given(status=st.integers(100, 999), body=bodies, retry_after=header_texts)
def test_the_reader_answers_or_raises_a_graph_api_error_and_nothing_else(
    status: int, body: bytes, retry_after: str | None
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    if 200 <= status < 300:
        assert isinstance(answer(status, body, headers), Mapping)
        return
    with pytest.raises(GraphApiError) as raised:
        answer(status, body, headers)
    assert raised.value.http_status == status
    assert raised.value.code


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (503, b"[" * 100_000, "http_503"),
        (500, b"\xff\xfe\x00{", "http_500"),
        (400, json.dumps(META_ERROR).encode() + b" " * MAX_ANSWER_BYTES, "http_400"),  # huge
        (400, json.dumps(META_ERROR).encode(), "130429"),
        (429, b'{"error": {"code": "\\u0661\\u0662"}}', "http_429"),
    ],
)
def test_unreadable_refusals_are_refusals_by_their_status(
    status: int, body: bytes, code: str
) -> None:
    with pytest.raises(GraphApiError) as raised:
        answer(status, body)

    assert raised.value.code == code


def test_a_2xx_is_an_accepted_send_whatever_its_body() -> None:
    assert answer(200, b"[" * 100_000) == {}
    assert answer(200, b"x" * (MAX_ANSWER_BYTES + 1)) == {}
    assert answer(200, b'{"messages": [{"id": "wamid.OUT"}]}') == {
        "messages": [{"id": "wamid.OUT"}]
    }
    # A status that arrived without its body (headers dripped past the deadline) decides alone.
    assert answer_for_status(201) == {}
    with pytest.raises(GraphApiError):
        answer_for_status(503)
