"""The Graph client against answers no well-behaved server gives, over real sockets on loopback
(the fake Graph API's raw and dripped answers): an answer is an answer whatever its bytes, and a
call never outlasts its deadline, however slowly the answer arrives."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters.graph_client import DeadlineBoundGraph, GraphClient
from functions.domain.consumer.ports import GraphApiError
from functions.domain.whatsapp.credentials import WhatsAppCredentials
from functions.domain.whatsapp.outbound import Recipient, Text, mark_read_body, send_body
from local_pipeline.fake_graph import FakeGraphApi, drip, ok, raw_answer
from tests.conftest import ACCESS_TOKEN
from tests.fakes import FakeCredentials
from tests.integration.consumer.conftest import GRAPH_VERSION

pytestmark = pytest.mark.integration

PNID = "106540352242922"
SEND = send_body(Recipient.user_id("US.13491208655302741918"), Text("hi"), reply_to="wamid.IN=")
READ = mark_read_body("wamid.IN=", typing_indicator=False)
# A dripped answer takes this long in full: far beyond any budget a test gives a call.
DRIP_SECONDS_PER_BYTE = 0.05
LONG_BODY = b'{"messages": [{"id": "wamid.' + b"A" * 400 + b'"}]}'


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(graph: FakeGraphApi) -> None:
    graph.reset()


def client(graph: FakeGraphApi) -> GraphClient:
    creds = FakeCredentials(stored=WhatsAppCredentials("s", "v", ACCESS_TOKEN))
    return GraphClient(base_url=graph.url, version=GRAPH_VERSION, credentials=creds)


def within(graph: FakeGraphApi, seconds: float) -> DeadlineBoundGraph:
    """The client as the consumer uses it, with `seconds` left for the call."""
    return DeadlineBoundGraph(client(graph), remaining_seconds=lambda: seconds + 1.0)


def http(status: int, headers: bytes, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} Whatever\r\n".encode()
        + headers
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def cut_off(graph: FakeGraphApi) -> bool:
    """The raw answer of the last call did not get out whole: the client hung up first."""
    assert graph.wait_for_raw_answers(1)
    (progress,) = graph.raw_answers
    return not progress.complete


# --- the deadline covers the whole answer ------------------------------------------------------


def test_a_refusal_dripped_one_byte_at_a_time_ends_at_the_deadline_as_that_refusal(
    graph: FakeGraphApi,
) -> None:
    # 450 bytes at 0.05 s each would take 22 s; urllib3's read timeout alone (8 s per recv)
    # would never fire. The call has 1 s.
    graph.enqueue(drip(LONG_BODY, status=503, seconds_per_byte=DRIP_SECONDS_PER_BYTE))

    with pytest.raises(GraphApiError) as raised:
        within(graph, 1.0).send(PNID, SEND)

    assert (raised.value.code, raised.value.http_status) == ("http_503", 503)
    assert cut_off(graph)


def test_an_accepted_send_whose_body_drips_is_still_accepted_never_resent(
    graph: FakeGraphApi,
) -> None:
    # The 200 arrived: Meta took the message. Calling it a timeout would send the reply twice.
    graph.enqueue(drip(LONG_BODY, status=200, seconds_per_byte=DRIP_SECONDS_PER_BYTE))

    assert within(graph, 1.0).send(PNID, SEND) is None

    assert cut_off(graph)
    assert len(graph.sent_messages()) == 1


def test_dripped_headers_after_the_status_line_still_count_as_that_status(
    graph: FakeGraphApi,
) -> None:
    graph.enqueue(
        drip(LONG_BODY, status=200, seconds_per_byte=DRIP_SECONDS_PER_BYTE, headers_too=True),
        drip(LONG_BODY, status=429, seconds_per_byte=DRIP_SECONDS_PER_BYTE, headers_too=True),
    )

    assert within(graph, 1.0).send(PNID, SEND) is None
    with pytest.raises(GraphApiError) as raised:
        within(graph, 1.0).send(PNID, SEND)

    assert raised.value.code == "http_429"


def test_a_status_line_that_never_completes_is_a_timeout(graph: FakeGraphApi) -> None:
    # Only here did no answer arrive: the one case the consumer may not know what happened.
    graph.enqueue(
        raw_answer(http(200, b"", LONG_BODY), seconds_per_byte=DRIP_SECONDS_PER_BYTE),
        kind="read",
    )

    with pytest.raises(GraphApiError) as raised:
        within(graph, 1.0).mark_read(PNID, READ)

    assert raised.value.code == "timeout"
    assert cut_off(graph)


def test_the_pool_is_usable_after_a_call_was_cut_off(graph: FakeGraphApi) -> None:
    graph.enqueue(drip(LONG_BODY, status=200, seconds_per_byte=DRIP_SECONDS_PER_BYTE), ok())
    api = within(graph, 1.0)

    api.send(PNID, SEND)
    reply_id = api.send(PNID, SEND)

    assert reply_id is not None
    assert reply_id.startswith("wamid.fake.")


# --- whatever the bytes, a refusal is a refusal -------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "retry_after"),
    [
        # Meta's error with a Retry-After in Arabic-Indic digits (sent as UTF-8 bytes)
        (
            http(
                429,
                "Retry-After: \u0661\u0662\u0660\r\n".encode(),
                json.dumps({"error": {"code": 130429, "message": "Rate limit hit"}}).encode(),
            ),
            "130429",
            None,
        ),
        (http(429, b"Retry-After: 120\r\n", b""), "http_429", 120),
        (http(503, b"Content-Type: application/json\r\n", b"[" * 100_000), "http_503", None),
        (http(500, b"", b"\xff\xfe\xfd not utf-8 \xc3\x28"), "http_500", None),
        (http(502, b"", b"<html>" + b"x" * 2_000_000 + b"</html>"), "http_502", None),
        (http(400, b"X-Weird: \xff\xfe\r\n", b'{"error": {"code": 131062}}'), "131062", None),
        (http(999, b"", b"{}"), "http_999", None),
    ],
)
def test_unparseable_answers_are_refusals_with_a_code(
    graph: FakeGraphApi, answer: bytes, code: str, retry_after: float | None
) -> None:
    graph.enqueue(raw_answer(answer))

    with pytest.raises(GraphApiError) as raised:
        client(graph).send(PNID, SEND)

    assert raised.value.code == code
    assert raised.value.retry_after_seconds == retry_after


status_lines = st.integers(100, 999).map(lambda status: f"HTTP/1.1 {status} X\r\n".encode())
header_lines = st.lists(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
    | st.sampled_from(
        [
            b"Retry-After: \xd9\xa1\xd9\xa2\xd9\xa0",
            b"Retry-After: \xc2\xb2",
            b"Retry-After: " + b"9" * 500,
            b"Content-Length: 5",
            b"Content-Length: -1",
            b"Content-Length: 99999999",
            b"Transfer-Encoding: chunked",
            b"Content-Encoding: gzip",
        ]
    ),
    max_size=5,
)
bodies = st.binary(max_size=300) | st.sampled_from([b"[" * 50_000, b'{"error":{"code":4}}'])


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    answer=st.builds(
        lambda status, headers, body: (
            status + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
        ),
        status_lines | st.binary(max_size=30),
        header_lines,
        bodies,
    )
)
def test_any_bytes_on_the_wire_end_in_a_return_or_a_graph_api_error(
    graph: FakeGraphApi, answer: bytes
) -> None:
    graph.reset()
    graph.enqueue(raw_answer(answer))

    outcome = outcome_of(lambda: within(graph, 2.0).send(PNID, SEND))

    assert outcome is None or isinstance(outcome, str) or outcome.code


def outcome_of(call: Callable[[], str | None]) -> str | GraphApiError | None:
    """What a call returned, or the `GraphApiError` it raised (anything else fails the test)."""
    try:
        return call()
    except GraphApiError as error:
        return error
