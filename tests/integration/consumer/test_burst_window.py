"""One answer per burst through the real consumer handler, moto's FIFO queue (stack settings),
DynamoDB on moto and the fake Graph API — in virtual time: messages arrive when the clock says
so, the consumer's own clock is the virtual one, and between invocations the clock jumps to the
next arrival or to the moment a held record becomes visible again (made visible in moto), as
Lambda's event source would find it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters import aws
from functions.common.names import (
    ENV_BURST_WINDOW_SECONDS,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_REPLY_HANDLER,
)
from functions.consumer import wiring
from functions.consumer.app import handler
from infra.constants import CONSUMER_BATCH_SIZE
from local_pipeline.fake_graph import FakeGraphApi, meta_error
from tests.conftest import boto_client
from tests.integration.consumer.conftest import Inbox, context
from tests.integration.consumer.test_bursts_and_outages import (  # noqa: F401 - fixtures
    inbox_on_stack_queues,
    stack_like_queues,
)
from tests.unit.consumer.builders import inbound, queued_body, wamid_of

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
WINDOW = 5
USER = "16505550777"
GROUP = "business:user-0777"


@dataclass
class VirtualTime:
    now: datetime = START

    def seconds(self) -> float:
        return (self.now - START).total_seconds()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    """The consumer's clock (wiring builds it from `datetime.now`) runs on virtual time."""
    time = VirtualTime()

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return time.now

    monkeypatch.setattr(wiring, "datetime", VirtualDatetime)
    monkeypatch.setenv(ENV_BURST_WINDOW_SECONDS, str(WINDOW))
    return time


@dataclass
class Conversation:
    """Messages a user sends at given virtual seconds; what the Graph API saw, and when."""

    inbox: Inbox
    graph: FakeGraphApi
    time: VirtualTime
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (second, queued body)
    due: dict[str, float] = field(default_factory=dict)  # receipt handle -> second visible
    sends_at: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reads_at: list[tuple[float, str]] = field(default_factory=list)
    invocations: int = 0

    def says(self, second: float, text: str, message_type: str = "text") -> str:
        raw = (
            inbound(message_type, text=text, sender=USER)
            if message_type == "text"
            else (inbound(message_type, sender=USER))
        )
        body = queued_body(raw, received_at=START + timedelta(seconds=second))
        self.arrivals.append((second, body))
        self.arrivals.sort(key=lambda arrival: arrival[0])
        return wamid_of(body)

    def run(self, *, until: float = 600) -> None:
        """Invoke the consumer whenever something is visible; jump the clock otherwise."""
        sqs = aws.sqs()
        real_change = sqs.change_message_visibility_batch
        changes: list[dict[str, Any]] = []

        def recording_change(**request: Any) -> Any:
            changes.extend(request["Entries"])
            return real_change(**request)

        sqs.change_message_visibility_batch = recording_change  # type: ignore[method-assign]
        try:
            while self.time.seconds() <= until:
                self._arrive()
                event = self.inbox.event(max_records=CONSUMER_BATCH_SIZE)
                if event["Records"]:
                    self._invoke(event, changes)
                    continue
                upcoming = [s for s, _ in self.arrivals] + list(self.due.values())
                if not upcoming:
                    return
                self._advance(min(upcoming))
        finally:
            del sqs.change_message_visibility_batch
        raise AssertionError("the conversation never settled")

    def _arrive(self) -> None:
        while self.arrivals and self.arrivals[0][0] <= self.time.seconds():
            _, body = self.arrivals.pop(0)
            self.inbox.put(body, group=GROUP, dedup=wamid_of(body).replace("=", ""))

    def _invoke(self, event: dict[str, Any], changes: list[dict[str, Any]]) -> None:
        self.invocations += 1
        changes.clear()
        before = len(self.graph.requests)
        response = handler(event, context())
        self.inbox.delete_succeeded(event, response)
        for request in self.graph.requests[before:]:
            if request.kind == "send" and request.answer == "ok":
                self.sends_at.append((self.time.seconds(), request.json))
            if request.kind == "read":
                self.reads_at.append((self.time.seconds(), request.json["message_id"]))
        for entry in changes:
            if int(entry["VisibilityTimeout"]) > 0:
                self.due[entry["ReceiptHandle"]] = self.time.seconds() + int(
                    entry["VisibilityTimeout"]
                )

    def _advance(self, second: float) -> None:
        self.time.now = START + timedelta(seconds=second)
        for handle, visible_at in list(self.due.items()):
            if visible_at <= second:
                self.inbox.queues.sqs.change_message_visibility(
                    QueueUrl=self.inbox.queues.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                )
                del self.due[handle]


@pytest.fixture
def conversation(
    fake_graph: FakeGraphApi,
    idempotency_table: str,
    whatsapp_secret: str,
    inbox_on_stack_queues: Inbox,  # noqa: F811 - the imported fixture
    clock: VirtualTime,
) -> Conversation:
    return Conversation(inbox_on_stack_queues, fake_graph, clock)


def ledger_item(wamid: str) -> dict[str, Any]:
    dynamodb = boto_client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    item: dict[str, Any] = dynamodb.get_item(
        TableName=os.environ[ENV_IDEMPOTENCY_TABLE], Key={"id": {"S": f"msg#{wamid}"}}
    )["Item"]
    return item


def test_a_burst_gets_one_answer_within_the_window_of_its_first_message(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_REPLY_HANDLER, "examples.echo:handle")
    first = conversation.says(0, "hi")
    second = conversation.says(1.5, "I ordered a lamp")
    third = conversation.says(3, "it has not come")
    later = conversation.says(30, "thanks!")

    conversation.run()

    # Two answers: the burst's (echoing all three, in order) and the later message's.
    (burst_at, burst_reply), (later_at, later_reply) = conversation.sends_at
    assert burst_reply["text"]["body"] == "You said: hi / I ordered a lamp / it has not come"
    assert burst_reply["context"] == {"message_id": third}
    assert later_reply["text"]["body"] == "You said: thanks!"
    assert later_reply["context"] == {"message_id": later}
    # A burst never waits longer than the window after its first message.
    assert burst_at == WINDOW
    assert later_at == 30 + WINDOW
    # Every message of the burst marked read: one receipt on its latest marks the rest.
    assert [wamid for _, wamid in conversation.reads_at] == [third, later]
    # The ledger: each member done "as part of" the first's burst, exactly once.
    for member in (second, third):
        item = ledger_item(member)
        assert item["status"]["S"] == "done"
        assert item["outcome"]["S"] == "in_burst"
        assert item["burst_head"]["S"] == first
    assert ledger_item(first)["outcome"]["S"] == "replied"
    assert conversation.inbox.queues.drain(conversation.inbox.queues.dlq_url) == []


def test_the_rules_answer_a_burst_once_too(conversation: Conversation) -> None:
    conversation.says(0, "hello")
    question = conversation.says(0.5, "are you open on sunday?")
    reaction = conversation.says(1, "", message_type="reaction")

    conversation.run()

    ((at, reply),) = conversation.sends_at
    assert at == WINDOW
    # The latest message the rules answer is the question; the reaction after it is read.
    assert reply["context"] == {"message_id": question}
    assert [wamid for _, wamid in conversation.reads_at] == [reaction]


def test_a_burst_whose_reply_is_refused_is_retried_whole_and_answered_once(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_MAX_ATTEMPTS, "5")
    conversation.graph.enqueue(meta_error(131000), meta_error(131000), kind="send")
    wamids = [conversation.says(second, f"part {second}") for second in (0, 1, 2)]

    conversation.run()

    accepted = [reply for _, reply in conversation.sends_at]
    assert len(accepted) == 1
    assert accepted[0]["context"] == {"message_id": wamids[-1]}
    refused = [r for r in conversation.graph.sent_messages() if r.answer != "ok"]
    assert len(refused) == 2
    for member in wamids[1:]:
        assert ledger_item(member)["outcome"]["S"] == "in_burst"
    assert json.loads(json.dumps(ledger_item(wamids[0])["status"])) == {"S": "done"}
