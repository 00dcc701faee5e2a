"""Events through the real consumer handler to moto's EventBridge, read back from an SQS queue
a rule on the bus targets — what a subscriber sees."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters import aws
from functions.common.names import (
    DIM_ERROR_CODE,
    ENV_EVENT_BUS_NAME,
    ENV_MAX_ATTEMPTS,
    METRIC_EVENTS_NOT_PUBLISHED,
    METRIC_EVENTS_PUBLISHED,
)
from functions.consumer.app import handler
from functions.domain.consumer.ports import RelayEvent
from local_pipeline.fake_graph import FakeGraphApi, meta_error
from tests.conftest import boto_client
from tests.integration.consumer.conftest import Inbox, context
from tests.telemetry import emitted_metrics, log_lines, metric_total
from tests.unit.consumer.builders import SENDER, inbound, queued_body, wamid_of
from tests.unit.consumer.test_relay_events import conforms

pytestmark = pytest.mark.integration

Subscriber = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def subscriber(aws: str, monkeypatch: pytest.MonkeyPatch) -> Subscriber:
    """A bus (EVENT_BUS_NAME names it) with one rule, everything from whatsapp-relay, targeting
    a queue; returns a function that drains the events delivered so far."""
    events = boto_client("events", aws)
    sqs = boto_client("sqs", aws)
    name = f"relay-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    queue = sqs.create_queue(QueueName=f"{name}-crm")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="crm", EventBusName=name, EventPattern=json.dumps({"source": ["whatsapp-relay"]})
    )
    events.put_targets(Rule="crm", EventBusName=name, Targets=[{"Id": "crm", "Arn": arn}])
    monkeypatch.setenv(ENV_EVENT_BUS_NAME, name)

    def drain() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            found += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        return found

    return drain


def body(message: dict[str, Any] | None = None) -> str:
    return queued_body(message, received_at=datetime.now(UTC))


def test_a_subscriber_sees_the_message_and_the_reply_without_phone_numbers(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    subscriber: Subscriber,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = body(inbound(text="where is my parcel"))
    inbox.put(record)

    assert handler(inbox.event(), context()) == {"batchItemFailures": []}

    delivered = subscriber()
    assert [(e["source"], e["detail-type"]) for e in delivered] == [
        ("whatsapp-relay", "message.received"),
        ("whatsapp-relay", "reply.sent"),
    ]
    received, sent = (e["detail"] for e in delivered)
    assert received["wamid"] == wamid_of(record)
    assert sent["answers"] == [wamid_of(record)]
    assert sent["replyWamid"].startswith("wamid.fake.")  # Meta's id of the reply
    for event in delivered:
        conforms(RelayEvent(event["detail-type"], event["detail"]))
        assert SENDER not in json.dumps(event)
        assert "parcel" not in json.dumps(event)
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_EVENTS_PUBLISHED) == 2


def test_a_dead_letter_reaches_the_subscriber(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    subscriber: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_MAX_ATTEMPTS, "1")
    consumer_env.enqueue(meta_error(131000), kind="send")
    record = body()
    inbox.put(record)

    handler(inbox.event(), context())

    types = [e["detail-type"] for e in subscriber()]
    assert types == ["message.received", "message.dead_lettered"]


def test_a_bus_that_is_not_there_costs_no_reply_and_is_counted(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV_EVENT_BUS_NAME, f"no-such-bus-{uuid.uuid4().hex[:6]}")
    inbox.put(body())

    response = handler(inbox.event(), context())

    assert response == {"batchItemFailures": []}
    assert len(consumer_env.sent_messages()) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    counted = [m for m in metrics if m["name"] == METRIC_EVENTS_NOT_PUBLISHED]
    # Once plain (what the alarm watches), once by the bus's error code.
    assert [m["value"] for m in counted if DIM_ERROR_CODE not in m["dimensions"]] == [2]
    assert {m["dimensions"].get(DIM_ERROR_CODE) for m in counted} == {
        None,
        "ResourceNotFoundException",
    }
    assert metric_total(metrics, METRIC_EVENTS_PUBLISHED) == 0
    warning = next(
        line for line in log_lines(captured_logs) if line["message"].startswith("events not")
    )
    assert len(warning["event_ids"]) == 2
    assert aws.events() is aws.events()  # one cached client
