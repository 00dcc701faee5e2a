"""Every path of the handlers that calls AWS, driven through the real entry points with the
environment the synthesized template gives each function, against the template's resources in
moto (tests/iam/emulated_stack.py) and the fake Graph API.

The paths, by the calls they make (functions/adapters/):
- ingest: the handshake and a signed delivery read the secret (GetSecretValue) and queue every
  message and every status (SendMessageBatch, on the inbound and the status queue);
- consumer, fed from the queue the way its event source mapping feeds it: the ledger's writes
  (UpdateItem, TransactWriteItems), read receipts and replies (the Graph API), events on the bus
  (PutEvents), a burst's first message held back (ChangeMessageVisibilityBatch);
- records written by ingest a minute ago (a burst whose window has closed), an unreadable record
  and a record whose reply keeps failing until its own attempts run out (SendMessage to the DLQ,
  ChangeMessageVisibilityBatch each time before);
- statuses of the replies sent, through ingest and the status queue: a lifecycle, a late 131047
  (the fallback template), a transient late failure (a resend), statuses of unknown replies
  (looked at again: ChangeMessageVisibilityBatch on the status queue);
- the consumer without QUEUE_URL and STATUS_QUEUE_URL (the contract allows it): its backoff finds
  each record's queue by the record's ARN (GetQueueUrl).
What a stack does not configure (no bus, no burst window) is simply not called. A function fed by
yet another queue of the template gets what ingest queued there.
test_function_roles.py checks that this reaches every AWS call in the code.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.common.names import (
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
    ENV_STATUS_QUEUE_URL,
    MAX_BURST_WINDOW_SECONDS,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import CONSUMER_HANDLER, INGEST_HANDLER
from local_pipeline.fake_graph import FakeGraphApi, meta_error, status_webhook
from tests.conftest import APP_SECRET, VERIFY_TOKEN, boto_client, frozen_context
from tests.events.builders import (
    BUSINESS_NUMBER_ID,
    api_event,
    change,
    encode,
    message,
    signed_post,
    webhook,
)
from tests.events.builders import status as status_update
from tests.iam.emulated_stack import EmulatedStack
from tests.unit.consumer.builders import inbound, queued_body

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Consumer invocations per phase before the scenario says the queue did not drain.
MAX_POLLS = 20
RETRYABLE = 130429  # Meta's throughput limit: retried with backoff (error_policy.py)
WINDOW_CLOSED = 131047  # as a late failure: the fallback template follows
TRANSIENT_LATE_FAILURE = 131000  # as a late failure: the reply is sent again


class ScenarioFailed(AssertionError):
    """The scenario did not do what it says: its calls would not prove anything."""


@dataclass
class Lambda:
    """Runs the template's functions as Lambda would: each with its own environment (the
    template's, resolved; the Graph API is the fake's), through the entry point its Handler
    names."""

    stack: EmulatedStack
    graph: FakeGraphApi
    endpoint: str  # moto's server

    def environment(self, function_id: str) -> dict[str, str]:
        environment = self.stack.function_environment(function_id)
        if ENV_GRAPH_API_URL in environment:
            environment[ENV_GRAPH_API_URL] = self.graph.url
        return environment

    @contextmanager
    def running(self, function_id: str, *, unset: tuple[str, ...] = ()) -> Iterator[Handler]:
        """The function's handler, with only its own variables of all the stack's set."""
        every_function = {
            name
            for other in self.stack.of_type("AWS::Lambda::Function")
            for name in self.environment(other)
        }
        saved = {name: os.environ.get(name) for name in every_function}
        for name in every_function:
            os.environ.pop(name, None)
        os.environ.update(
            {k: v for k, v in self.environment(function_id).items() if k not in unset}
        )
        try:
            module, _, attribute = self.handler_path(function_id).rpartition(".")
            yield getattr(importlib.import_module(module), attribute)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def handler_path(self, function_id: str) -> str:
        return str(self.stack.resources[function_id]["Properties"]["Handler"])

    def function(self, handler_path: str) -> str:
        found = [
            f
            for f in self.stack.of_type("AWS::Lambda::Function")
            if self.handler_path(f) == handler_path
        ]
        if len(found) != 1:
            raise ScenarioFailed(f"expected one function running {handler_path}, found {found}")
        return found[0]


@dataclass(frozen=True)
class EventSource:
    """An SQS event source mapping of the template: its queue and the function it feeds."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int


def event_sources(stack: EmulatedStack) -> list[EventSource]:
    sources = []
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        properties = mapping["Properties"]
        queue_id = properties["EventSourceArn"]["Fn::GetAtt"][0]
        sources.append(
            EventSource(
                function=properties["FunctionName"]["Ref"],
                queue_url=stack.refs[queue_id],
                queue_arn=stack.attributes[f"{queue_id}.Arn"],
                batch_size=int(properties.get("BatchSize", 10)),
            )
        )
    return sources


class Poller:
    """What Lambda's event source mapping does: receive a batch, invoke, delete what succeeded
    (the partial batch response). Its own SQS calls are not the functions': they are made with
    a client of the test (authorization.py counts the mapping's actions from the template)."""

    def __init__(self, endpoint: str, source: EventSource) -> None:
        self.sqs = boto_client("sqs", endpoint)
        self.source = source

    def receive(self, *, group: str | None = None) -> dict[str, Any]:
        """A batch as the mapping would hand it over; with `group`, only that conversation's
        records (others received meanwhile - a burst's first message whose wait is over - stay
        in flight, as after a crashed invocation)."""
        messages = self.sqs.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=self.source.batch_size,
            MessageSystemAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if group is not None:
            messages = [m for m in messages if m["Attributes"]["MessageGroupId"] == group]
        return {"Records": [self._record(m) for m in messages]}

    def invoke(self, handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
        answer = handler(event, frozen_context())
        failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.source.queue_url, ReceiptHandle=record["receiptHandle"]
                )
        return answer

    def drain(self, handler: Handler) -> int:
        """Invoke until the queue hands out nothing more; the number of records seen."""
        seen = 0
        for _ in range(MAX_POLLS):
            event = self.receive()
            if not event["Records"]:
                return seen
            seen += len(event["Records"])
            self.invoke(handler, event)
        raise ScenarioFailed(f"{self.source.queue_url} still hands out records")

    def put(self, body: str, group: str) -> None:
        """A record on a FIFO queue in conversation `group`, as ingest would put it."""
        self.sqs.send_message(
            QueueUrl=self.source.queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
        )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.source.queue_arn,
            "awsRegion": self.source.queue_arn.split(":")[3],
        }


def secret_document(access_token: str) -> str:
    return json.dumps(
        {
            SECRET_KEY_APP_SECRET: APP_SECRET,
            SECRET_KEY_VERIFY_TOKEN: VERIFY_TOKEN,
            "accessToken": access_token,
        }
    )


def drive_every_path(runtime: Lambda) -> None:
    """Run every AWS-calling path of every function of the stack once (at least)."""
    ingest = runtime.function(INGEST_HANDLER)
    consumer = runtime.function(CONSUMER_HANDLER)
    consumer_environment = runtime.environment(consumer)
    with runtime.running(ingest) as handler:
        _ingest(handler)
    sources = event_sources(runtime.stack)
    inbound = _source_of(sources, consumer_environment.get(ENV_QUEUE_URL))
    statuses = _source_of(sources, consumer_environment.get(ENV_STATUS_QUEUE_URL))
    if inbound is None:
        raise ScenarioFailed("the consumer is fed by no queue of the stack")
    messages = Poller(runtime.endpoint, inbound)
    with runtime.running(consumer) as handler:
        # What ingest just queued: with a burst window, each conversation's first message is
        # held back for the rest of its burst; without, everything is answered.
        messages.drain(handler)
        _closed_burst(messages, handler)
        _unreadable_record(messages, handler, runtime)
        _attempts_run_out(messages, handler, runtime, inbound)
    status_poller = None if statuses is None else Poller(runtime.endpoint, statuses)
    if status_poller is not None:
        _statuses_of_the_replies(runtime, ingest, status_poller)
    for other in sources:
        if other not in (inbound, statuses):  # another queue of the stack: what ingest put there
            with runtime.running(other.function) as handler:
                Poller(runtime.endpoint, other).drain(handler)
    # The contract lets the consumer run without its queues' URLs: it finds each record's queue
    # by the record's ARN (GetQueueUrl).
    with runtime.running(consumer, unset=(ENV_QUEUE_URL, ENV_STATUS_QUEUE_URL)) as handler:
        _retry_without_queue_url(messages, handler, runtime)
    if status_poller is not None:
        with runtime.running(ingest) as handler:
            _post(handler, _fresh_status_of_an_unknown_reply())
        with runtime.running(consumer, unset=(ENV_QUEUE_URL, ENV_STATUS_QUEUE_URL)) as handler:
            answer = status_poller.invoke(handler, status_poller.receive())
            if not answer["batchItemFailures"]:
                raise ScenarioFailed("the status of an unknown reply was not looked at again")
    if runtime.graph.pending_answers():
        raise ScenarioFailed("the fake Graph API still holds scripted answers")


def _source_of(sources: list[EventSource], queue_url: str | None) -> EventSource | None:
    return next((source for source in sources if source.queue_url == queue_url), None)


def _statuses_of_the_replies(runtime: Lambda, ingest: str, poller: Poller) -> None:
    """Meta's status webhooks for the replies sent so far, through ingest onto the status queue
    and from there to the consumer: a closed window (131047: the fallback template) on one, a
    lifecycle and then a transient late failure (a resend) on another."""
    replies = _replies(runtime)
    free_form = [reply for reply in replies if reply["type"] != "template"]
    if len(replies) < 2 or not free_form:
        raise ScenarioFailed(f"{len(replies)} replies to follow, expected 2, one not a template")
    closed = free_form[0]  # a template is the answer to 131047 on a free-form reply only
    resent = next(reply for reply in replies if reply is not closed)
    plan = [
        (resent, "sent", None),
        (resent, "delivered", None),
        (closed, "failed", WINDOW_CLOSED),
        (resent, "failed", TRANSIENT_LATE_FAILURE),
    ]
    with runtime.running(ingest) as handler:
        for reply, status, code in plan:
            _post(
                handler,
                status_webhook(
                    reply["wamid"],
                    status,
                    phone_number_id=reply["phone_number_id"],
                    recipient=reply["recipient"],
                    timestamp=int(time.time()),
                    error_code=code,
                ),
            )
    sent_before = len(runtime.graph.sent_messages())
    with runtime.running(poller.source.function) as handler:
        poller.drain(handler)
    # The resend at least (a template follows 131047 only where the rules name one).
    if len(runtime.graph.sent_messages()) <= sent_before:
        raise ScenarioFailed("the transient late failure was not followed by a resend")


def _replies(runtime: Lambda) -> list[dict[str, Any]]:
    """The `reply#` items of the ledger (read by the test, not by the functions)."""
    table = runtime.environment(runtime.function(CONSUMER_HANDLER))[ENV_IDEMPOTENCY_TABLE]
    items = boto_client("dynamodb", runtime.endpoint).scan(TableName=table)["Items"]
    return [
        {
            "wamid": item["id"]["S"].removeprefix("reply#"),
            "phone_number_id": item["phone_number_id"]["S"],
            "recipient": {k: v["S"] for k, v in item["recipient"]["M"].items()},
            "type": json.loads(item["message"]["S"]).get("type"),
        }
        for item in sorted(items, key=lambda item: item["id"]["S"])
        if item["id"]["S"].startswith("reply#")
    ]


def _fresh_status_of_an_unknown_reply() -> dict[str, Any]:
    return status_webhook(
        "wamid.NOT-OURS-YET",
        "delivered",
        phone_number_id=BUSINESS_NUMBER_ID,
        recipient={"to": "16505550040"},
        timestamp=int(time.time()),
    )


def _post(handler: Handler, delivery: dict[str, Any]) -> None:
    answer = handler(signed_post(encode(delivery), APP_SECRET), frozen_context())
    if answer["statusCode"] != 200:
        raise ScenarioFailed(f"a delivery was answered {answer['statusCode']}: {answer}")


def _ingest(handler: Handler) -> None:
    handshake = api_event(
        "GET",
        query={
            "hub.mode": "subscribe",
            "hub.challenge": "1158201444",
            "hub.verify_token": VERIFY_TOKEN,
        },
    )
    answer = handler(handshake, frozen_context())
    if answer["statusCode"] != 200:
        raise ScenarioFailed(f"the handshake was answered {answer['statusCode']}")
    delivery = webhook(
        change(
            messages=[
                message("text", sender="16505550001", content={"body": "where is A-1001"}),
                message("text", sender="16505550002", content={"body": "hi"}),
                message("text", sender="16505550002", content={"body": "my order"}),
                message("interactive", sender="16505550003"),
                message("image", sender="16505550004"),
            ],
            statuses=[status_update("delivered"), status_update("read")],
        )
    )
    _post(handler, delivery)


def _earlier_body(text: str, sender: str) -> str:
    """A record as ingest wrote it a while ago: whatever the burst window, it has closed."""
    return queued_body(
        inbound("text", sender=sender, text=text),
        received_at=datetime.now(UTC) - timedelta(seconds=MAX_BURST_WINDOW_SECONDS + 60),
    )


def _closed_burst(poller: Poller, handler: Handler) -> None:
    sender = "16505550010"
    for text in ("hello", "I ordered a lamp", "order A-1002"):
        poller.put(_earlier_body(text, sender), group="closed-burst")
    if poller.drain(handler) < 3:
        raise ScenarioFailed("the closed burst was not handed out")


def _unreadable_record(poller: Poller, handler: Handler, runtime: Lambda) -> None:
    poller.put('{"schemaVersion": 99, "not": "a record"}', group="unreadable")
    poller.drain(handler)
    _expect_dead_letters(runtime, poller.source, at_least=1)


def _attempts_run_out(
    poller: Poller, handler: Handler, runtime: Lambda, source: EventSource
) -> None:
    """A reply refused every time: retried by visibility until its own attempts run out, then
    dead-lettered. The same delivery is invoked again at once (its backoff is SQS's business)."""
    attempts = int(runtime.environment(source.function)[ENV_MAX_ATTEMPTS])
    runtime.graph.enqueue(*(meta_error(RETRYABLE) for _ in range(attempts)), kind="send")
    poller.put(_earlier_body("still there?", "16505550020"), group="refused")
    event = poller.receive(group="refused")
    if len(event["Records"]) != 1:
        raise ScenarioFailed("the refused record was not handed out")
    for _ in range(attempts):
        poller.invoke(handler, event)
    _expect_dead_letters(runtime, source, at_least=2)


def _retry_without_queue_url(poller: Poller, handler: Handler, runtime: Lambda) -> None:
    runtime.graph.enqueue(meta_error(RETRYABLE), kind="send")
    poller.put(_earlier_body("anyone?", "16505550030"), group="no-queue-url")
    event = poller.receive(group="no-queue-url")
    if len(event["Records"]) != 1:
        raise ScenarioFailed("the record for the QUEUE_URL-less consumer was not handed out")
    answer = poller.invoke(handler, event)
    if not answer["batchItemFailures"]:
        raise ScenarioFailed("the refused reply was not retried")


def _expect_dead_letters(runtime: Lambda, source: EventSource, *, at_least: int) -> None:
    dlq = runtime.environment(source.function).get(ENV_DEAD_LETTER_QUEUE_URL)
    if dlq is None:
        raise ScenarioFailed(f"{source.function} has no dead-letter queue")
    sqs = boto_client("sqs", runtime.endpoint)
    count = int(
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
    )
    if count < at_least:
        raise ScenarioFailed(f"{count} dead letters, expected at least {at_least}")
