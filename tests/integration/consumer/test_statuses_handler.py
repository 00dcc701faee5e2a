"""Statuses of our replies through the real consumer handler: moto's SQS (the inbound FIFO queue
and the standard status queue) and DynamoDB, the fake Graph API on loopback. Given a replied
message and status records on the status queue as ingest writes them, when Lambda would call the
handler, then the Graph API sees exactly the follow-ups the contract names, once."""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.common.names import (
    DIM_ERROR_CLASS,
    DIM_ERROR_CODE,
    ENV_IDEMPOTENCY_TABLE,
    METRIC_LATE_FAILURE_CLASS,
    METRIC_LATE_FAILURES,
    METRIC_LATE_FALLBACKS,
    METRIC_REPLIES_DELIVERED,
    METRIC_REPLIES_READ,
    METRIC_REPLIES_RESENT,
    METRIC_REPLY_DELIVERY_LATENCY,
    METRIC_STATUSES_UNMATCHED,
)
from functions.consumer.app import handler
from local_pipeline.fake_graph import FakeGraphApi, RecordedRequest, meta_error
from tests.conftest import StatusQueue, boto_client
from tests.integration.consumer.conftest import Inbox, context
from tests.telemetry import emitted_metrics, log_lines, metric_total
from tests.unit.consumer.builders import SENDER, inbound, queued_body, status_body, wamid_of

pytestmark = pytest.mark.integration


@dataclass
class StatusInbox:
    """The standard status queue as Lambda's event source mapping reads it."""

    queue: StatusQueue
    backing_off: list[str] = field(default_factory=list)  # receipt handles of failed records

    def put(self, reply_wamid: str, status: str, *, at: float, code: int | None = None) -> None:
        body = status_body(reply_wamid, status, at=at, error_code=code)
        self.queue.sqs.send_message(QueueUrl=self.queue.url, MessageBody=body)

    def event(self) -> dict[str, Any]:
        messages = self.queue.sqs.receive_message(
            QueueUrl=self.queue.url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue.arn,
                    "awsRegion": "eu-west-1",
                }
                for m in messages
            ]
        }

    def run(self) -> dict[str, Any]:
        """One batch through the handler; what succeeded is deleted, as Lambda does."""
        event = self.event()
        response: dict[str, Any] = handler(event, context())
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] in failed:
                self.backing_off.append(record["receiptHandle"])
            else:
                self.queue.sqs.delete_message(
                    QueueUrl=self.queue.url, ReceiptHandle=record["receiptHandle"]
                )
        return response

    def end_backoffs(self) -> None:
        """Time passing: the failed records' visibility timeouts end (moto has no clock to
        advance)."""
        for handle in self.backing_off:
            self.queue.sqs.change_message_visibility(
                QueueUrl=self.queue.url, ReceiptHandle=handle, VisibilityTimeout=0
            )
        self.backing_off.clear()


@pytest.fixture
def statuses(consumer_env: FakeGraphApi, status_queue: StatusQueue) -> StatusInbox:
    return StatusInbox(status_queue)


def reply_to_a_message(inbox: Inbox, *, sent_seconds_ago: float = 60) -> tuple[str, str, float]:
    """A text message answered through the handler: (inbound wamid, reply wamid, Meta's time of
    the customer's message)."""
    message = inbound(text="hello")
    sent_at = float(int(time.time() - sent_seconds_ago))
    message["timestamp"] = str(int(sent_at))
    body = queued_body(message, received_at=datetime.now(UTC))
    inbox.put(body, group=f"conversation-{wamid_of(body)}")
    event = inbox.event()
    assert handler(event, context()) == {"batchItemFailures": []}
    inbox.delete_succeeded(event, {"batchItemFailures": []})
    return wamid_of(body), reply_wamid_of(wamid_of(body)), sent_at


def reply_items() -> dict[str, dict[str, Any]]:
    dynamodb = boto_client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    items = dynamodb.scan(TableName=os.environ[ENV_IDEMPOTENCY_TABLE])["Items"]
    return {i["id"]["S"]: i for i in items if i["id"]["S"].startswith("reply#")}


def reply_wamid_of(inbound_wamid: str) -> str:
    [key] = [
        key
        for key, item in reply_items().items()
        if item["inbound_wamid"]["S"] == inbound_wamid and "original" not in item
    ]
    return key.removeprefix("reply#")


def sends(graph: FakeGraphApi) -> list[RecordedRequest]:
    return graph.sent_messages()


def test_a_late_131047_gets_exactly_one_template_even_twice_and_before_sent(
    statuses: StatusInbox,
    inbox: Inbox,
    consumer_env: FakeGraphApi,
    capsys: pytest.CaptureFixture[str],
    captured_logs: io.StringIO,
) -> None:
    inbound_wamid, reply_wamid, sent_at = reply_to_a_message(inbox)

    statuses.put(reply_wamid, "failed", at=sent_at + 5, code=131047)
    statuses.put(reply_wamid, "failed", at=sent_at + 5, code=131047)  # Meta's duplicate
    statuses.put(reply_wamid, "sent", at=sent_at + 2)  # comes after the failure
    responses = [statuses.run() for _ in range(3)]

    assert all(r == {"batchItemFailures": []} for r in responses)
    reply, template = sends(consumer_env)
    assert template.json["type"] == "template"
    assert template.json["to"] == reply.json["to"] == SENDER
    assert template.json["context"] == {"message_id": inbound_wamid}
    assert template.phone_number_id == reply.phone_number_id
    original = reply_items()[f"reply#{reply_wamid}"]
    assert original["failed_code"] == {"S": "131047"}
    fallback_wamid = original["followup_wamid"]["S"]
    fallback = reply_items()[f"reply#{fallback_wamid}"]
    assert fallback["kind"] == {"S": "fallback"}
    assert fallback["original"] == {"S": reply_wamid}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_LATE_FAILURES, **{DIM_ERROR_CODE: "131047"}) == 1
    assert metric_total(metrics, METRIC_LATE_FAILURE_CLASS, **{DIM_ERROR_CLASS: "recipient"}) == 1
    assert metric_total(metrics, METRIC_LATE_FALLBACKS) == 1
    assert SENDER not in captured_logs.getvalue()
    lines = [line for line in log_lines(captured_logs) if line.get("reply_wamid") == reply_wamid]
    assert {line["wamid"] for line in lines} == {inbound_wamid}  # found by the inbound wamid
    assert any(line.get("follow_up") == "sent" for line in lines)


def test_delivered_and_read_in_reverse_order_end_read_counted_once(
    statuses: StatusInbox,
    inbox: Inbox,
    consumer_env: FakeGraphApi,
    capsys: pytest.CaptureFixture[str],
    captured_logs: io.StringIO,
) -> None:
    _, reply_wamid, sent_at = reply_to_a_message(inbox, sent_seconds_ago=60)

    statuses.put(reply_wamid, "read", at=sent_at + 9)
    assert statuses.run() == {"batchItemFailures": []}
    statuses.put(reply_wamid, "delivered", at=sent_at + 4)
    assert statuses.run() == {"batchItemFailures": []}

    item = reply_items()[f"reply#{reply_wamid}"]
    assert float(item["status_read"]["N"]) == sent_at + 9
    assert float(item["status_delivered"]["N"]) == sent_at + 4
    assert len(sends(consumer_env)) == 1  # statuses are never answered
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_REPLIES_DELIVERED) == 1
    assert metric_total(metrics, METRIC_REPLIES_READ) == 1
    [latency] = [m for m in metrics if m["name"] == METRIC_REPLY_DELIVERY_LATENCY]
    assert latency["value"] == 9000
    assert latency["unit"] == "Milliseconds"
    changes = [
        (line["previous_state"], line["reply_state"])
        for line in log_lines(captured_logs)
        if line.get("message") == "reply status changed"
    ]
    assert changes == [("accepted", "read")]


def test_a_transient_late_failure_is_resent_once(
    statuses: StatusInbox,
    inbox: Inbox,
    consumer_env: FakeGraphApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbound_wamid, reply_wamid, sent_at = reply_to_a_message(inbox)
    consumer_env.enqueue(meta_error(131000, http_status=500), kind="send")  # the first resend

    statuses.put(reply_wamid, "failed", at=sent_at + 5, code=131016)
    refused = statuses.run()
    assert len(refused["batchItemFailures"]) == 1
    assert statuses.event()["Records"] == []  # backing off by its visibility, not sleeping
    statuses.end_backoffs()
    statuses.put(reply_wamid, "failed", at=sent_at + 5, code=131016)  # Meta's duplicate
    assert statuses.run() == {"batchItemFailures": []}
    assert statuses.run() == {"batchItemFailures": []}

    reply, refused_send, resend = sends(consumer_env)
    assert resend.json == reply.json  # what was sent, threaded as it was
    assert resend.json["context"] == {"message_id": inbound_wamid}
    assert refused_send.answer == "meta_error"
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_REPLIES_RESENT) == 1
    resent = reply_items()[f"reply#{reply_items()[f'reply#{reply_wamid}']['followup_wamid']['S']}"]
    assert resent["kind"] == {"S": "resend"}


def test_a_status_of_an_unknown_reply_backs_off_on_the_status_queue_then_is_dropped(
    statuses: StatusInbox,
    consumer_env: FakeGraphApi,
    capsys: pytest.CaptureFixture[str],
    captured_logs: io.StringIO,
) -> None:
    statuses.put("wamid.NOT-OURS", "delivered", at=time.time() - 3600)
    statuses.put("wamid.TOO-EARLY", "sent", at=time.time())

    response = statuses.run()

    [failed] = response["batchItemFailures"]
    # Its visibility was set on the status queue (the queue it came from), to a few seconds.
    assert "visibility timeout not raised" not in captured_logs.getvalue()
    [retry] = [line for line in log_lines(captured_logs) if line.get("result") == "retry"]
    assert 2 <= retry["visibility_timeout_seconds"] <= 30
    assert consumer_env.requests == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_STATUSES_UNMATCHED) == 1
    assert metric_total(metrics, "RetriesScheduled", **{DIM_ERROR_CODE: "reply_unknown"}) == 1
    assert failed["itemIdentifier"]


def test_a_redriven_two_day_old_message_is_answered_with_the_template_directly(
    inbox: Inbox, consumer_env: FakeGraphApi, captured_logs: io.StringIO
) -> None:
    message = inbound(text="hello")
    message["timestamp"] = str(int((datetime.now(UTC) - timedelta(days=2)).timestamp()))
    body = queued_body(message, received_at=datetime.now(UTC) - timedelta(days=2))
    inbox.put(body)

    assert handler(inbox.event(), context()) == {"batchItemFailures": []}

    [sent] = sends(consumer_env)
    assert sent.json["type"] == "template"
    assert sent.json["context"] == {"message_id": wamid_of(body)}
    [line] = [line for line in log_lines(captured_logs) if line.get("wamid") == wamid_of(body)]
    assert line["decision"] == "window-closed"
    item = reply_items()[f"reply#{reply_wamid_of(wamid_of(body))}"]
    assert json.loads(item["message"]["S"])["type"] == "template"
