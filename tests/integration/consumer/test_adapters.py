"""The consumer's adapters against real peers on loopback: the Graph client against the fake
Graph API, visibility changes and dead letters against moto's SQS (the ledger has its own
contract tests: test_ledger_contract.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import urllib3

from functions.adapters.aws import client as aws_client
from functions.adapters.dead_letters import SqsDeadLetters
from functions.adapters.graph_client import (
    DeadlineBoundGraph,
    GraphClient,
    parse_retry_after,
    shared_pool,
)
from functions.adapters.sqs_visibility import SqsVisibility
from functions.domain.consumer.ports import (
    DeadLetter,
    DeadLetterFailed,
    GraphApiError,
    VisibilityChange,
)
from functions.domain.whatsapp.credentials import WhatsAppCredentials
from functions.domain.whatsapp.outbound import Text, mark_read_body, send_body
from local_pipeline.fake_graph import FakeGraphApi, hang, http_error, meta_error, reset_connection
from tests.conftest import ACCESS_TOKEN, FifoQueues
from tests.fakes import FakeCredentials
from tests.integration.consumer.conftest import GRAPH_VERSION, Inbox

pytestmark = pytest.mark.integration

PNID = "106540352242922"
SEND = send_body("16505551234", Text("hi"), reply_to="wamid.IN=")


def credentials(token: str = ACCESS_TOKEN) -> FakeCredentials:
    return FakeCredentials(stored=WhatsAppCredentials("s", "v", token))


def client(
    graph: FakeGraphApi | str, creds: FakeCredentials | None = None, **pool: Any
) -> GraphClient:
    url = graph if isinstance(graph, str) else graph.url
    return GraphClient(
        base_url=url,
        version=GRAPH_VERSION,
        credentials=creds or credentials(),
        pool=urllib3.PoolManager(retries=False, **pool) if pool else None,
    )


@pytest.fixture
def graph() -> Any:
    with FakeGraphApi(expected_token=ACCESS_TOKEN) as server:
        yield server


# --- Graph client -----------------------------------------------------------------------------


def test_send_and_read_go_to_the_number_with_the_bearer_token(graph: FakeGraphApi) -> None:
    api = client(graph)

    api.mark_read(PNID, mark_read_body("wamid.IN=", typing_indicator=True))
    reply_id = api.send(PNID, SEND)

    assert reply_id is not None
    assert reply_id.startswith("wamid.fake.")
    assert [r.path for r in graph.requests] == [f"/{GRAPH_VERSION}/{PNID}/messages"] * 2
    assert [r.kind for r in graph.requests] == ["read", "send"]
    assert graph.sent_messages()[0].json == SEND


def test_meta_errors_carry_every_field(graph: FakeGraphApi) -> None:
    graph.enqueue(
        meta_error(
            130429,
            http_status=429,
            details="slow down",
            is_transient=True,
            retry_after=30,
            subcode=2494055,
        )
    )

    with pytest.raises(GraphApiError) as raised:
        client(graph).send(PNID, SEND)

    error = raised.value
    assert (error.code, error.meta_code, error.http_status) == ("130429", 130429, 429)
    assert error.details == "slow down"
    assert error.is_transient is True
    assert error.subcode == 2494055
    assert error.fbtrace_id
    assert error.retry_after_seconds == 30
    assert ACCESS_TOKEN not in str(error)


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (http_error(503), "http_503", 503),
        (http_error(502, body="Bad gateway", content_type="text/plain"), "http_502", 502),
        (reset_connection(), "network", None),
    ],
)
def test_non_json_bodies_and_resets_are_typed_errors(
    graph: FakeGraphApi, answer: Any, code: str, status: int | None
) -> None:
    graph.enqueue(answer)

    with pytest.raises(GraphApiError) as raised:
        client(graph).send(PNID, SEND)

    assert (raised.value.code, raised.value.http_status) == (code, status)


def test_a_hang_is_a_timeout_not_a_hidden_wait(graph: FakeGraphApi) -> None:
    graph.enqueue(hang(5))
    impatient = client(graph, timeout=urllib3.Timeout(connect=1, read=0.3))

    with pytest.raises(GraphApiError) as raised:
        impatient.send(PNID, SEND)

    assert raised.value.code == "timeout"


def test_a_refused_connection_is_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there

    with pytest.raises(GraphApiError) as raised:
        client(f"http://127.0.0.1:{port}").send(PNID, SEND)

    assert raised.value.code == "network"


def test_a_2xx_send_is_accepted_even_when_its_body_is_not_metas(graph: FakeGraphApi) -> None:
    # Retrying an accepted send would reply twice: a 2xx is a sent reply, id or no id.
    graph.enqueue(
        http_error(200, body="<html>ok?</html>"),
        http_error(200, body='{"messages": []}', content_type="application/json"),
        http_error(201, body="", content_type="application/json"),
    )
    api = client(graph)

    assert [api.send(PNID, SEND) for _ in range(3)] == [None, None, None]


def test_a_read_receipt_fails_only_when_meta_says_so(graph: FakeGraphApi) -> None:
    graph.enqueue(
        http_error(200, body="{}", content_type="application/json"),
        http_error(200, body='{"success": false}', content_type="application/json"),
    )
    api = client(graph)
    body = mark_read_body("w", typing_indicator=False)

    api.mark_read(PNID, body)
    with pytest.raises(GraphApiError) as raised:
        api.mark_read(PNID, body)
    assert raised.value.code == "invalid_response"


def test_a_token_rotated_in_the_secret_is_used_at_once_after_a_190(graph: FakeGraphApi) -> None:
    creds = FakeCredentials(
        stored=WhatsAppCredentials("s", "v", ACCESS_TOKEN),
        cached=WhatsAppCredentials("s", "v", "rotated-away"),
    )

    client(graph, creds).send(PNID, SEND)

    assert [r.headers["authorization"] for r in graph.sent_messages()] == [
        "Bearer rotated-away",
        f"Bearer {ACCESS_TOKEN}",
    ]
    assert [r.answer for r in graph.sent_messages()] == ["unauthorized", "ok"]


def test_a_190_with_no_newer_token_is_reported_not_retried(graph: FakeGraphApi) -> None:
    graph.enqueue(meta_error(190, http_status=401), kind="send")

    with pytest.raises(GraphApiError) as raised:
        client(graph).send(PNID, SEND)

    assert raised.value.code == "190"
    assert len(graph.sent_messages()) == 1


def test_no_call_outlasts_the_invocation(graph: FakeGraphApi) -> None:
    graph.enqueue(hang(5))
    bound = DeadlineBoundGraph(client(graph), remaining_seconds=lambda: 1.6)

    with pytest.raises(GraphApiError) as raised:
        bound.send(PNID, SEND)  # 1.6 s left: the call gets 0.6 s

    assert raised.value.code == "timeout"


def test_unreadable_credentials_are_their_own_code(graph: FakeGraphApi) -> None:
    creds = credentials()
    creds.unavailable = True

    with pytest.raises(GraphApiError) as raised:
        client(graph, creds).send(PNID, SEND)

    assert raised.value.code == "credentials_unavailable"
    assert graph.requests == []


def test_one_pool_keeps_the_connection_alive(graph: FakeGraphApi) -> None:
    api = client(graph)

    for _ in range(3):
        api.send(PNID, SEND)

    pool = shared_pool().connection_from_url(graph.url)
    assert pool.num_connections == 1
    assert pool.num_requests >= 3


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 25 Nov 2026 09:00:30 GMT", now=1795597200.0) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- visibility -----------------------------------------------------------------------------------


def _received(inbox: Inbox, count: int) -> list[dict[str, Any]]:
    for index in range(count):
        inbox.put(f"body-{index}", group=f"g{index}")
    return list(inbox.event()["Records"])


def test_visibility_is_raised_by_queue_url_and_by_event_source_arn(
    inbox: Inbox, fifo_queues: FifoQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _received(inbox, 2)
    changes = [
        VisibilityChange(r["messageId"], r["receiptHandle"], r["eventSourceARN"], 600)
        for r in records
    ]

    assert SqsVisibility(aws_client("sqs"), fifo_queues.queue_url).change(changes[:1]) == []
    assert SqsVisibility(aws_client("sqs"), None).change(changes[1:]) == []
    assert inbox.event()["Records"] == []  # both stay invisible

    back = [
        VisibilityChange(c.message_id, c.receipt_handle, c.event_source_arn, 0) for c in changes
    ]
    SqsVisibility(aws_client("sqs"), None).change(back)
    assert len(inbox.event()["Records"]) == 2


def test_refused_visibility_changes_are_reported(inbox: Inbox, fifo_queues: FifoQueues) -> None:
    records = _received(inbox, 1)
    good = VisibilityChange(records[0]["messageId"], records[0]["receiptHandle"], inbox.arn, 60)
    stale = VisibilityChange("m-stale", "not-a-receipt-handle", inbox.arn, 60)
    unknown = VisibilityChange("m-arn", "x", "not-an-arn", 60)

    failed = SqsVisibility(aws_client("sqs"), None).change([good, stale, unknown])

    assert "m-arn" in failed
    assert records[0]["messageId"] not in failed


# --- dead letters ---------------------------------------------------------------------------------


def test_a_dead_letter_carries_its_reason_as_attributes(fifo_queues: FifoQueues) -> None:
    letters = SqsDeadLetters(aws_client("sqs"), fifo_queues.dlq_url)
    letter = DeadLetter(
        reason="attempts_exhausted",
        error_code="131000",
        error_class="transient",
        attempts=8,
        last_attempt_at=1_795_597_200.0,
        wamid="wamid.DEAD=",
    )

    letters.send('{"schemaVersion": 1}', "conversation-7", letter)
    letters.send('{"schemaVersion": 1}', "conversation-7", letter)  # a retry after a crash

    [message] = fifo_queues.drain(fifo_queues.dlq_url)
    assert message["Body"] == '{"schemaVersion": 1}'
    assert message["Attributes"]["MessageGroupId"] == "conversation-7"
    attributes = {
        name: value["StringValue"] for name, value in message["MessageAttributes"].items()
    }
    assert attributes == {
        "DeadLetterReason": "attempts_exhausted",
        "ErrorCode": "131000",
        "ErrorClass": "transient",
        "Attempts": "8",
        "LastAttemptAt": "2026-11-25T09:00:00+00:00",
        "Wamid": "wamid.DEAD=",
    }


def test_a_dead_letter_queue_that_refuses_is_a_typed_failure(aws: str) -> None:
    letters = SqsDeadLetters(aws_client("sqs"), f"{aws}/123456789012/no-such-queue.fifo")
    letter = DeadLetter("unreadable", "poison", "poison", 1, 1_795_597_200.0)

    with pytest.raises(DeadLetterFailed):
        letters.send("not json", "g", letter)
