"""Issue-level acceptance of retry budgets: a burst from one user under a strict pair-rate limit,
and a 20-minute Graph API outage, through the real consumer handler and moto's FIFO queue (with
the stack's own redrive policy), the fake Graph API on loopback, and DynamoDB on moto.

Time is virtual: between invocations the harness jumps to the moment the next backed-off record
becomes visible (and makes it visible in moto), as Lambda's event source would find it after
waiting. Everything else — FIFO group locking, receive counts, the redrive to the DLQ after
`maxReceiveCount` — is moto's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.adapters import aws
from functions.common.names import (
    DEFAULT_MAX_ATTEMPTS,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
)
from functions.consumer.app import handler
from infra.constants import (
    CONSUMER_BATCH_SIZE,
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS,
    VISIBILITY_TIMEOUT_SECONDS,
)
from local_pipeline.fake_graph import Answer, FakeGraphApi, RecordedRequest, http_error, meta_error
from tests.conftest import FifoQueues, boto_client
from tests.integration.consumer.conftest import Inbox, context
from tests.unit.consumer.builders import inbound, queued_body, wamid_of

pytestmark = pytest.mark.integration

USER = "16505550123"
OUTAGE_SECONDS = 20 * 60


@pytest.fixture
def stack_like_queues(aws: str, monkeypatch: pytest.MonkeyPatch) -> FifoQueues:
    """The inbound FIFO queue and DLQ with the stack's settings (visibility, maxReceiveCount)."""
    sqs = boto_client("sqs", aws)
    dlq_url = sqs.create_queue(
        QueueName=f"burst-dlq-{id(sqs)}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"burst-{id(sqs)}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": DEFAULT_MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    monkeypatch.setenv(ENV_QUEUE_URL, queue_url)
    monkeypatch.setenv(ENV_DEAD_LETTER_QUEUE_URL, dlq_url)
    monkeypatch.setenv(ENV_MAX_ATTEMPTS, str(DEFAULT_MAX_ATTEMPTS))
    return FifoQueues(queue_url=queue_url, dlq_url=dlq_url, sqs=sqs)


@dataclass
class StrictPairRate:
    """Meta answering 131056 to any second send to the same user within one invocation."""

    accepted: set[str] = field(default_factory=set)

    def __call__(self, request: RecordedRequest) -> Answer | None:
        if request.kind != "send":
            return None
        recipient = str(request.json.get("to"))
        if recipient in self.accepted:
            return meta_error(131056)
        self.accepted.add(recipient)
        return None

    def new_invocation(self) -> None:
        self.accepted.clear()


@dataclass
class Outage:
    """Every call answers a 503 HTML page until the outage is over (virtual time)."""

    until: float
    now: float = 0.0

    def __call__(self, request: RecordedRequest) -> Answer | None:
        return http_error(503) if self.now < self.until else None


@dataclass
class Run:
    """What happened, in virtual seconds from the first enqueue."""

    replied_at: dict[str, float] = field(default_factory=dict)  # inbound wamid -> moment
    first_backoff: dict[str, int] = field(default_factory=dict)  # wamid -> first delay set
    max_receive_count: int = 0
    invocations: int = 0


class EventSourceInVirtualTime:
    """Lambda's SQS event source over moto, with a clock that jumps to the next due record."""

    def __init__(self, inbox: Inbox, graph: FakeGraphApi, monkeypatch: pytest.MonkeyPatch):
        self.inbox = inbox
        self.graph = graph
        self.now = 0.0
        self.due: dict[str, tuple[float, str]] = {}  # receipt handle -> (moment, wamid)
        self.visibility_calls: list[list[dict[str, Any]]] = []
        sqs = aws.sqs()
        real_change = sqs.change_message_visibility_batch

        def recording_change(**request: Any) -> Any:
            self.visibility_calls.append(list(request["Entries"]))
            return real_change(**request)

        # The consumer's own SQS client: record the backoffs it sets (moto applies them too).
        monkeypatch.setattr(sqs, "change_message_visibility_batch", recording_change)

    def drain(self, run: Run, on_invocation: Callable[[float], None], *, limit: int = 200) -> None:
        """Invoke the consumer until the queue is empty and nothing is backing off."""
        for _ in range(limit):
            event = self.inbox.event(max_records=CONSUMER_BATCH_SIZE)
            records = event["Records"]
            if not records:
                if not self.due:
                    return
                self._advance()
                continue
            run.invocations += 1
            run.max_receive_count = max(
                run.max_receive_count,
                *(int(r["attributes"]["ApproximateReceiveCount"]) for r in records),
            )
            on_invocation(self.now)
            self.visibility_calls.clear()
            sent_before = len(self.graph.sent_messages())
            response = handler(event, context())
            self.inbox.delete_succeeded(event, response)
            for request in self.graph.sent_messages()[sent_before:]:
                if request.answer == "ok":
                    run.replied_at[request.json["context"]["message_id"]] = self.now
            by_handle = {r["receiptHandle"]: wamid_of(r["body"]) for r in records}
            for entries in self.visibility_calls:
                for entry in entries:
                    wamid = by_handle[entry["ReceiptHandle"]]
                    seconds = int(entry["VisibilityTimeout"])
                    if seconds > 0:
                        run.first_backoff.setdefault(wamid, seconds)
                        self.due[entry["ReceiptHandle"]] = (self.now + seconds, wamid)
        raise AssertionError("the queue never drained")

    def _advance(self) -> None:
        self.now = min(moment for moment, _ in self.due.values())
        for handle, (moment, _) in list(self.due.items()):
            if moment <= self.now:
                self.inbox.queues.sqs.change_message_visibility(
                    QueueUrl=self.inbox.queues.queue_url,
                    ReceiptHandle=handle,
                    VisibilityTimeout=0,
                )
                del self.due[handle]


def burst(inbox: Inbox, count: int = 10) -> list[str]:
    bodies = [queued_body(inbound(text=f"message {n}", sender=USER)) for n in range(count)]
    for item in bodies:
        inbox.put(item, group="business:user-0123")
    return [wamid_of(item) for item in bodies]


def dead_letters(queues: FifoQueues) -> list[dict[str, Any]]:
    return queues.drain(queues.dlq_url)


@pytest.fixture
def inbox_on_stack_queues(stack_like_queues: FifoQueues) -> Inbox:
    arn = stack_like_queues.sqs.get_queue_attributes(
        QueueUrl=stack_like_queues.queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    return Inbox(queues=stack_like_queues, arn=arn)


def test_a_burst_under_a_strict_pair_rate_is_answered_in_full_with_an_empty_dlq(
    fake_graph: FakeGraphApi,
    idempotency_table: str,
    whatsapp_secret: str,
    inbox_on_stack_queues: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = StrictPairRate()
    fake_graph.rule = limiter
    wamids = burst(inbox_on_stack_queues)
    source = EventSourceInVirtualTime(inbox_on_stack_queues, fake_graph, monkeypatch)
    run = Run()

    source.drain(run, lambda _now: limiter.new_invocation())

    # Every message answered once, in the order sent, and nothing dead-lettered.
    assert sorted(run.replied_at) == sorted(wamids)
    answered = [
        r.json["context"]["message_id"] for r in fake_graph.sent_messages() if r.answer == "ok"
    ]
    assert answered == wamids
    assert dead_letters(inbox_on_stack_queues.queues) == []
    # Messages waited behind their neighbours (received many times)...
    assert run.max_receive_count >= 9
    # ...yet each message's first 131056 backed off by its own attempt count: under a minute.
    assert run.first_backoff
    assert max(run.first_backoff.values()) <= 60
    # The whole burst is answered well inside the oldest-message alarm's threshold.
    assert max(run.replied_at.values()) <= DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS
    print(  # the figures for the closing note (pytest -s)
        f"burst: replies={len(run.replied_at)} dlq=0 "
        f"largest_first_backoff={max(run.first_backoff.values())}s "
        f"last_answered_after={max(run.replied_at.values()):.0f}s "
        f"invocations={run.invocations} max_receive_count={run.max_receive_count}"
    )


def test_a_20_minute_outage_dead_letters_nothing_that_did_not_spend_its_own_attempts(
    fake_graph: FakeGraphApi,
    idempotency_table: str,
    whatsapp_secret: str,
    inbox_on_stack_queues: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outage = Outage(until=OUTAGE_SECONDS)
    fake_graph.rule = outage
    # Ten conversations of three messages each.
    wamids: list[str] = []
    for user in range(10):
        for n in range(3):
            body = queued_body(inbound(text=f"m{n}", sender=f"1650555{user:04d}"))
            inbox_on_stack_queues.put(body, group=f"conversation-{user}")
            wamids.append(wamid_of(body))
    source = EventSourceInVirtualTime(inbox_on_stack_queues, fake_graph, monkeypatch)
    run = Run()

    def tick(now: float) -> None:
        outage.now = now

    source.drain(run, tick)

    letters = dead_letters(inbox_on_stack_queues.queues)
    for letter in letters:  # anything on the DLQ spent every one of its own attempts
        attributes = letter["MessageAttributes"]
        assert attributes["Attempts"]["StringValue"] == str(DEFAULT_MAX_ATTEMPTS)
    assert letters == []  # and with the outage class's patience, none had to
    assert sorted(run.replied_at) == sorted(wamids)
    assert min(run.replied_at.values()) >= OUTAGE_SECONDS
    print(
        f"outage: replies={len(run.replied_at)} dlq={len(letters)} "
        f"last_answered_after={max(run.replied_at.values()):.0f}s invocations={run.invocations}"
    )
