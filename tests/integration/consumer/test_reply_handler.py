"""The reply handler through the real consumer handler: moto's SQS and DynamoDB, the fake Graph
API on loopback, REPLY_HANDLER naming the shipped examples or the test handlers of
`reply_handlers.py`."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.adapters import aws
from functions.adapters.graph_client import GraphClient
from functions.common.names import (
    DIM_ERROR_CODE,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_REPLY_HANDLER,
    METRIC_DEAD_LETTERED,
    METRIC_HANDLER_LATENCY,
    METRIC_PERMANENT_FAILURE,
    METRIC_REPLY_SENT,
    METRIC_REPLY_UNCERTAIN,
    METRIC_RETRY_SCHEDULED,
)
from functions.common.settings import ConfigurationError
from functions.consumer.app import handler
from local_pipeline.fake_graph import FakeGraphApi
from tests.conftest import boto_client
from tests.integration.consumer import reply_handlers
from tests.integration.consumer.conftest import Inbox, context
from tests.telemetry import emitted_metrics, log_lines, metric_total
from tests.unit.consumer.builders import SENDER, inbound, queued_body, wamid_of

pytestmark = pytest.mark.integration

TEST_HANDLERS = "tests.integration.consumer.reply_handlers"


def body(message: dict[str, Any] | None = None) -> str:
    return queued_body(message, received_at=datetime.now(UTC))


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


@pytest.fixture
def use_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reply_handlers.CALLS.clear()
    reply_handlers.RELEASE.clear()

    def use(spec: str, *, import_from: Path | None = None, **environment: str) -> None:
        monkeypatch.setenv(ENV_REPLY_HANDLER, spec)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        if import_from is not None:
            monkeypatch.syspath_prepend(str(import_from))

    yield use
    reply_handlers.RELEASE.set()


@pytest.fixture
def table_calls() -> Iterator[list[str]]:
    """The operations the consumer's own DynamoDB client calls, in order."""
    calls: list[str] = []
    client = aws.dynamodb()

    def note(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.dynamodb", note)
    yield calls
    client.meta.events.unregister("before-call.dynamodb", note)


# --- the shipped examples ------------------------------------------------------------------


def test_the_echo_example_says_back_what_the_user_wrote(
    consumer_env: FakeGraphApi, inbox: Inbox, use_handler: Any
) -> None:
    use_handler("examples.echo:handle")
    record = body(inbound(text="hello bot"))
    inbox.put(record)

    response = handler(inbox.event(), context())

    assert failures(response) == []
    (sent,) = consumer_env.sent_messages()
    assert sent.json["text"]["body"] == "You said: hello bot"
    assert sent.json["to"] == SENDER
    assert sent.json["context"] == {"message_id": wamid_of(record)}
    assert [r.kind for r in consumer_env.requests] == ["read", "send"]


def test_the_echo_example_leaves_reactions_alone_but_they_are_read(
    consumer_env: FakeGraphApi, inbox: Inbox, use_handler: Any
) -> None:
    use_handler("examples.echo:handle")
    inbox.put(body(inbound("reaction")))

    assert failures(handler(inbox.event(), context())) == []
    assert consumer_env.sent_messages() == []
    assert len(consumer_env.read_receipts()) == 1


def test_the_order_status_example_answers_with_two_messages_in_order(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    table_calls: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_handler("examples.order_status:handle")
    record = body(inbound(text="where is my order a1001?"))
    inbox.put(record)

    response = handler(inbox.event(), context())

    assert failures(response) == []
    status, menu = (r.json for r in consumer_env.sent_messages())
    assert status["text"]["body"] == "Order A-1001 is shipped with DHL (expected Thursday)."
    assert status["context"] == {"message_id": wamid_of(record)}
    assert menu["type"] == "interactive"
    assert [b["reply"]["id"] for b in menu["interactive"]["action"]["buttons"]] == [
        "track-another",
        "talk-to-us",
    ]
    assert "context" not in menu
    # The handler's plan is not known before the ledger: begin, a claim for the first slot,
    # then one write per send (3 for a one-reply message, 2 with the rules).
    assert table_calls == ["UpdateItem", "UpdateItem", "TransactWriteItems", "TransactWriteItems"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_REPLY_SENT) == 2
    latency = [m for m in metrics if m["name"] == METRIC_HANDLER_LATENCY]
    assert len(latency) == 1
    assert latency[0]["unit"] == "Milliseconds"


def test_the_order_status_example_handles_a_tap_and_an_unknown_order(
    consumer_env: FakeGraphApi, inbox: Inbox, use_handler: Any
) -> None:
    use_handler("examples.order_status:handle")
    tap = inbound(
        "interactive",
        content={
            "type": "button_reply",
            "button_reply": {"id": "track-another", "title": "Track another order"},
        },
    )
    inbox.put(body(tap), group="a")
    inbox.put(body(inbound(text="order Z-9999", sender="16505550199")), group="b")

    handler(inbox.event(), context())

    answers = sorted(r.json["text"]["body"] for r in consumer_env.sent_messages())
    assert answers == [
        "I can't find order Z-9999. Is it the number from your confirmation?",
        "Send me the order number, like A-1001.",
    ]


def test_an_order_system_outage_is_retried_then_dead_lettered_with_its_reason(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    down = str(Path(__file__).with_name("orders-db-is-down.json"))  # no such file
    use_handler("examples.order_status:handle", ORDERS_FILE=down, **{ENV_MAX_ATTEMPTS: "2"})
    record = body(inbound(text="status of A-1001 please"))
    inbox.put(record)
    event = inbox.event()

    first = handler(event, context())
    second = handler(event, context())

    assert failures(first) == [event["Records"][0]["messageId"]]
    assert failures(second) == []  # dead-lettered by the consumer, reported done
    assert consumer_env.requests == []  # not even read: nothing was answered
    metrics = emitted_metrics(capsys.readouterr().out)
    # Both attempts failed on it (the second ended in the DLQ, counted like every code's).
    assert metric_total(metrics, METRIC_RETRY_SCHEDULED, **{DIM_ERROR_CODE: "handler_error"}) == 2
    assert metric_total(metrics, METRIC_DEAD_LETTERED, **{DIM_ERROR_CODE: "handler_error"}) == 1
    retry = next(line for line in log_lines(captured_logs) if line.get("result") == "retry")
    assert retry["level"] == "ERROR"
    assert retry["message"] == "the reply handler raised; the message will be retried"
    assert retry["error_code"] == "handler_error"
    assert "FileNotFoundError" in retry["reason"]
    assert "examples/order_status.py" in retry["exception"]  # the traceback, into user code
    [letter] = inbox.queues.drain(inbox.queues.dlq_url)
    attributes = letter["MessageAttributes"]
    assert attributes["ErrorCode"]["StringValue"] == "handler_error"
    assert attributes["ErrorClass"]["StringValue"] == "handler"
    assert attributes["Attempts"]["StringValue"] == "2"
    assert json.loads(letter["Body"])["wamid"] == wamid_of(record)


# --- guarantees ----------------------------------------------------------------------------


def _let_the_function_timeout_pass() -> None:
    """Age the lease a dead execution left, as the clock would after its timeout."""
    dynamodb = boto_client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    table = os.environ[ENV_IDEMPOTENCY_TABLE]
    for item in dynamodb.scan(TableName=table)["Items"]:
        if item.get("status", {}).get("S") == "active":
            dynamodb.update_item(
                TableName=table,
                Key={"id": item["id"]},
                UpdateExpression="SET lease_until = :past",
                ExpressionAttributeValues={":past": {"N": "1"}},
            )


def test_a_run_killed_between_two_sends_never_sends_a_reply_twice(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_handler(f"{TEST_HANDLERS}:three_texts")
    inbox.put(body())
    event = inbox.event()
    original = GraphClient.send

    def die_while_sending_the_second(
        self: GraphClient, phone_number_id: str, payload: Any, **options: Any
    ) -> Any:
        if payload["text"]["body"] == "two":
            original(self, phone_number_id, payload)  # Meta got it ...
            raise SystemExit("the execution environment died")  # ... nobody heard the answer
        return original(self, phone_number_id, payload)

    monkeypatch.setattr(GraphClient, "send", die_while_sending_the_second)
    with pytest.raises(SystemExit):
        handler(event, context())
    monkeypatch.setattr(GraphClient, "send", original)
    _let_the_function_timeout_pass()

    redelivered = handler(event, context())

    assert failures(redelivered) == []
    assert len(reply_handlers.CALLS) == 2  # the handler ran twice for the message ...
    bodies = [r.json["text"]["body"] for r in consumer_env.sent_messages()]
    assert bodies == ["one", "two", "three"]  # ... each reply went out once
    assert metric_total(emitted_metrics(capsys.readouterr().out), METRIC_REPLY_UNCERTAIN) == 1


def test_a_handler_out_of_time_is_retried_and_python_keeps_running_it(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_handler(f"{TEST_HANDLERS}:blocks")
    inbox.put(body())
    event = inbox.event()

    # 5.3 s left in the invocation, 5 s of them kept for the sends: the handler gets 0.3 s.
    response = handler(event, context(remaining_ms=5_300))

    assert failures(response) == [event["Records"][0]["messageId"]]
    assert consumer_env.requests == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_RETRY_SCHEDULED, **{DIM_ERROR_CODE: "handler_timeout"}) == 1
    line = next(line for line in log_lines(captured_logs) if line.get("result") == "retry")
    assert line["level"] == "WARNING"
    assert "Python cannot stop it" in line["reason"]


def test_an_invalid_reply_is_a_permanent_failure_saying_what_is_wrong(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_handler(f"{TEST_HANDLERS}:invalid")
    inbox.put(body())

    response = handler(inbox.event(), context())

    assert failures(response) == []
    assert consumer_env.sent_messages() == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (
        metric_total(metrics, METRIC_PERMANENT_FAILURE, **{DIM_ERROR_CODE: "invalid_outbound"}) == 1
    )
    line = next(line for line in log_lines(captured_logs) if line.get("result"))
    assert line["reason"] == "text.body exceeds 4096 chars"


def test_a_handler_that_cannot_be_imported_fails_the_invocation_with_its_traceback(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    tmp_path: Path,
    captured_logs: io.StringIO,
) -> None:
    module = tmp_path / "broken_bot.py"
    module.write_text("import no_such_library\n\ndef handle(event):\n    return None\n")
    use_handler("broken_bot:handle", import_from=tmp_path)
    inbox.put(body())

    with pytest.raises(ConfigurationError, match="broken_bot cannot be imported"):
        handler(inbox.event(), context())
    use_handler(f"{TEST_HANDLERS}:not_a_function")
    with pytest.raises(ConfigurationError, match="has no function not_a_function"):
        handler(inbox.event(), context())
    assert consumer_env.requests == []
    line = next(line for line in log_lines(captured_logs) if line.get("error_code"))
    assert "No module named 'no_such_library'" in line["exception"]


def test_an_edited_handler_file_is_used_from_the_next_invocation(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    use_handler: Any,
    tmp_path: Path,
) -> None:
    module = tmp_path / "edited_bot.py"
    module.write_text("def handle(event):\n    return {'type': 'text', 'text': {'body': 'v1'}}\n")
    use_handler("edited_bot:handle", import_from=tmp_path)
    inbox.put(body(inbound(sender="16505550001")), group="a")
    handler(inbox.event(), context())

    module.write_text("def handle(event):\n    return {'type': 'text', 'text': {'body': 'v2'}}\n")
    later = time.time() + 5  # a different mtime even on a coarse file system clock
    os.utime(module, (later, later))
    inbox.put(body(inbound(sender="16505550002")), group="b")
    handler(inbox.event(), context())

    assert [r.json["text"]["body"] for r in consumer_env.sent_messages()] == ["v1", "v2"]
