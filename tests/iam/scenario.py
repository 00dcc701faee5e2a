"""Every path of the handlers that calls AWS, driven through the real entry points with the
environment the synthesized template gives each function, against the template's resources in
moto (tests/iam/emulated_stack.py) and the fake Graph API.

The paths, by the calls they make (functions/adapters/):
- ingest: the handshake and a signed delivery read the secret (GetSecretValue) and queue every
  message (SendMessageBatch);
- consumer, fed from the queue the way its event source mapping feeds it: the ledger's writes
  (UpdateItem, TransactWriteItems), read receipts and replies (the Graph API), events on the bus
  (PutEvents), a burst's first message held back (ChangeMessageVisibilityBatch);
- records written by ingest a minute ago (a burst whose window has closed), an unreadable record
  and a record whose reply keeps failing until its own attempts run out (SendMessage to the DLQ,
  ChangeMessageVisibilityBatch each time before);
- the consumer without QUEUE_URL (the contract allows it): its backoff finds the queue by the
  record's ARN (GetQueueUrl).
What a stack does not configure (no bus, no burst window) is simply not called. A function fed by
another queue of the template gets what ingest queued there.
test_function_roles.py checks that this reaches every AWS call in the code.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.common.names import (
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
    MAX_BURST_WINDOW_SECONDS,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import CONSUMER_HANDLER, INGEST_HANDLER
from local_pipeline.fake_graph import FakeGraphApi, meta_error
from tests.conftest import APP_SECRET, VERIFY_TOKEN, boto_client, frozen_context
from tests.events.builders import api_event, change, encode, message, signed_post, webhook
from tests.events.builders import status as status_update
from tests.iam.emulated_stack import EmulatedStack
from tests.unit.consumer.builders import inbound, queued_body

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Consumer invocations per phase before the scenario says the queue did not drain.
MAX_POLLS = 20
RETRYABLE = 130429  # Meta's throughput limit: retried with backoff (error_policy.py)


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
    with runtime.running(ingest) as handler:
        _ingest(handler)
    for source in event_sources(runtime.stack):
        poller = Poller(runtime.endpoint, source)
        with runtime.running(source.function) as handler:
            # What ingest just queued for it: with a burst window, each conversation's first
            # message is held back for the rest of its burst; without, everything is answered.
            poller.drain(handler)
            if runtime.handler_path(source.function) != CONSUMER_HANDLER:
                continue  # another queue's function: fed by ingest only
            _closed_burst(poller, handler)
            _unreadable_record(poller, handler, runtime)
            _attempts_run_out(poller, handler, runtime, source)
        with runtime.running(source.function, unset=(ENV_QUEUE_URL,)) as handler:
            _retry_without_queue_url(poller, handler, runtime)
    if runtime.graph.pending_answers():
        raise ScenarioFailed("the fake Graph API still holds scripted answers")


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
    answer = handler(signed_post(encode(delivery), APP_SECRET), frozen_context())
    if answer["statusCode"] != 200:
        raise ScenarioFailed(f"the delivery was answered {answer['statusCode']}: {answer}")


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
