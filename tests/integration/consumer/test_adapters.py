"""The consumer's adapters against real peers on loopback: the Graph client against the fake
Graph API, the idempotency store and reply ledger against moto's DynamoDB, visibility changes
against moto's SQS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import urllib3

from functions.adapters.aws import client as aws_client
from functions.adapters.graph_client import (
    DeadlineBoundGraph,
    GraphClient,
    parse_retry_after,
    shared_pool,
)
from functions.adapters.idempotency import (
    EXPIRES_AFTER_SECONDS,
    DynamoDbReplyLedger,
    PowertoolsOncePerMessage,
    register_lambda_context,
)
from functions.adapters.sqs_visibility import SqsVisibility
from functions.domain.consumer.ports import (
    AlreadyInProgress,
    GraphApiError,
    StoreUnavailable,
    VisibilityChange,
)
from functions.domain.whatsapp.credentials import WhatsAppCredentials
from functions.domain.whatsapp.outbound import Text, mark_read_body, send_body
from local_pipeline.fake_graph import FakeGraphApi, hang, http_error, meta_error, reset_connection
from tests.conftest import ACCESS_TOKEN, FifoQueues, boto_client
from tests.fakes import FakeCredentials
from tests.integration.consumer.conftest import GRAPH_VERSION, Inbox, context

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


# --- idempotency and the reply ledger -----------------------------------------------------------


def test_once_runs_work_once_then_replays(idempotency_table: str, aws: str) -> None:
    register_lambda_context(context())
    once = PowertoolsOncePerMessage(aws_client("dynamodb"), idempotency_table)
    runs: list[int] = []

    def work() -> Mapping[str, Any]:
        runs.append(1)
        return {"result": "replied"}

    first = once.run("wamid.A=", work)
    second = once.run("wamid.A=", work)

    assert (first.replayed, second.replayed) == (False, True)
    assert second.value == {"result": "replied"}
    assert runs == [1]
    items = boto_client("dynamodb", aws).scan(TableName=idempotency_table)["Items"]
    expiration = int(items[0]["expiration"]["N"])
    assert expiration - int(time.time()) >= 7 * 24 * 3600


def test_a_failed_work_leaves_no_record(idempotency_table: str) -> None:
    register_lambda_context(context())
    once = PowertoolsOncePerMessage(aws_client("dynamodb"), idempotency_table)

    def fail() -> Mapping[str, Any]:
        raise LookupError("retry me")

    with pytest.raises(LookupError):
        once.run("wamid.B=", fail)

    assert once.run("wamid.B=", lambda: {"ok": True}).replayed is False


def test_a_concurrent_duplicate_is_in_progress(idempotency_table: str) -> None:
    register_lambda_context(context())
    once = PowertoolsOncePerMessage(aws_client("dynamodb"), idempotency_table)
    started, release = threading.Event(), threading.Event()

    def slow() -> Mapping[str, Any]:
        started.set()
        release.wait(5)
        return {"result": "replied"}

    worker = threading.Thread(target=once.run, args=("wamid.C=", slow))
    worker.start()
    try:
        assert started.wait(5)
        with pytest.raises(AlreadyInProgress):
            once.run("wamid.C=", lambda: {"result": "second"})
    finally:
        release.set()
        worker.join(5)


def test_a_missing_table_is_store_unavailable(aws: str) -> None:
    register_lambda_context(context())

    with pytest.raises(StoreUnavailable):
        PowertoolsOncePerMessage(aws_client("dynamodb"), "no-such-table").run(
            "wamid.D=", lambda: {}
        )
    with pytest.raises(StoreUnavailable):
        DynamoDbReplyLedger(aws_client("dynamodb"), "no-such-table").claim("wamid.D=")
    with pytest.raises(StoreUnavailable):
        DynamoDbReplyLedger(aws_client("dynamodb"), "no-such-table").release("wamid.D=")


def test_ledger_claims_once_until_released_and_ignores_expired_claims(
    idempotency_table: str,
) -> None:
    ledger = DynamoDbReplyLedger(aws_client("dynamodb"), idempotency_table)

    assert ledger.claim("wamid.E=") is True
    assert ledger.claim("wamid.E=") is False
    ledger.release("wamid.E=")
    assert ledger.claim("wamid.E=") is True
    later = DynamoDbReplyLedger(
        aws_client("dynamodb"),
        idempotency_table,
        clock=lambda: time.time() + EXPIRES_AFTER_SECONDS + 60,
    )
    assert later.claim("wamid.E=") is True


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
