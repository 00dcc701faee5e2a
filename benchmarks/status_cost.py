"""What following statuses costs: ingest per status (queueing it before the 200) and the consumer
per status (time and DynamoDB calls), next to what a message costs the consumer.

The real handlers run against moto's server on loopback and the fake Graph API (50 ms per call,
as in consumer_throughput). moto answers a call in a few ms on this machine, far slower than
SQS or DynamoDB in a region, so absolute times are moto's; the call counts are exact, and the
ratios say how statuses weigh against messages.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

GRAPH_LATENCY_SECONDS = 0.05
RUNS = 15
TOKEN = "bench-access-token"
APP_SECRET = "bench-app-secret"
REGION = "eu-west-1"
PNID = "106540352242922"


def _env(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_METRICS_NAMESPACE": "WhatsAppRelayBench",
            "POWERTOOLS_SERVICE_NAME": "bench",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
        }
    )


def _resources(endpoint: str) -> dict[str, str]:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    suffix = uuid.uuid4().hex[:8]
    queue = sqs.create_queue(
        QueueName=f"bench-{suffix}.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
    )["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"bench-dlq-{suffix}.fifo", Attributes={"FifoQueue": "true"})
    statuses = sqs.create_queue(QueueName=f"bench-statuses-{suffix}")["QueueUrl"]
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    table = f"bench-ledger-{suffix}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)
    secret = f"bench-secret-{suffix}"
    secrets.create_secret(
        Name=secret,
        SecretString=json.dumps(
            {"appSecret": APP_SECRET, "verifyToken": "v", "accessToken": TOKEN}
        ),
    )
    return {
        "QUEUE_URL": queue,
        "DEAD_LETTER_QUEUE_URL": dlq["QueueUrl"],
        "STATUS_QUEUE_URL": statuses,
        "IDEMPOTENCY_TABLE": table,
        "WHATSAPP_SECRET_ID": secret,
    }


# --- ingest ---------------------------------------------------------------------------------


def _status_delivery(count: int) -> bytes:
    statuses = [
        {
            "id": f"wamid.BENCH{uuid.uuid4().hex}=",
            "status": "delivered",
            "timestamp": str(int(time.time())),
            "recipient_id": "16505551234",
        }
        for _ in range(count)
    ]
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "1", "phone_number_id": PNID},
                            "statuses": statuses,
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def ingest_ms(resources: dict[str, str], *, queued: bool, statuses: int) -> float:
    """Median ms of the ingest handler for a signed delivery of `statuses` statuses."""
    import boto3

    from functions.common.lambda_context import StandInContext
    from functions.domain.ingest.signature import sign
    from functions.ingest.app import handler

    os.environ.pop("STATUS_QUEUE_URL", None)
    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION)
    context: Any = StandInContext(clock=lambda: 0.0)  # a deadline that never comes
    samples = []
    with contextlib.redirect_stdout(io.StringIO()):
        for run in range(RUNS + 2):
            if queued:
                # moto's sends slow down as a queue fills: each run gets an empty queue.
                name = f"bench-statuses-{uuid.uuid4().hex[:12]}"
                os.environ["STATUS_QUEUE_URL"] = sqs.create_queue(QueueName=name)["QueueUrl"]
            body = _status_delivery(statuses)
            event = {
                "httpMethod": "POST",
                "path": "/webhook",
                "resource": "/webhook",
                "headers": {"X-Hub-Signature-256": sign(body, APP_SECRET)},
                "body": body.decode(),
                "isBase64Encoded": False,
                "requestContext": {"requestId": str(uuid.uuid4())},
            }
            started = time.perf_counter()
            answer = handler(event, context)
            elapsed = time.perf_counter() - started
            if answer["statusCode"] != 200:
                raise RuntimeError(f"ingest answered {answer}")
            if run >= 2:  # warm-up: imports, clients
                samples.append(elapsed * 1000)
    return statistics.median(samples)


def ingest_use_case_us_per_status(count: int = 100) -> tuple[float, float]:
    """The ingest use case alone (no AWS): microseconds per status to verify, parse and count a
    delivery, and to also build and hand over its status records (in-memory publisher)."""
    from functions.domain.ingest.accept import accept_delivery
    from functions.domain.ingest.signature import sign
    from functions.domain.whatsapp.credentials import WhatsAppCredentials

    class _Credentials:
        def current(self) -> WhatsAppCredentials:
            return WhatsAppCredentials(APP_SECRET, "v", TOKEN)

        def refreshed(self) -> WhatsAppCredentials | None:
            return None

    class _Publisher:
        def publish(self, records: Any, *, remaining_seconds: Callable[[], float]) -> None:
            for record in records:
                record.to_json()  # what the SQS publisher serialises

    body = _status_delivery(count)
    header = sign(body, APP_SECRET)
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(RUNS * 4):
        for queued in (False, True):
            started = time.perf_counter()
            accept_delivery(
                body,
                header,
                credentials=_Credentials(),
                publisher=_Publisher(),
                now=lambda: datetime.now(UTC),
                statuses=_Publisher() if queued else None,
            )
            timings[queued].append((time.perf_counter() - started) * 1e6 / count)
    return statistics.median(timings[False]), statistics.median(timings[True])


# --- consumer -------------------------------------------------------------------------------


def _message_record(sender: str) -> dict[str, Any]:
    wamid = f"wamid.BENCH{uuid.uuid4().hex}="
    body = {
        "schemaVersion": 1,
        "wamid": wamid,
        "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "business": {"phoneNumberId": PNID, "displayPhoneNumber": "15550783881"},
        "contact": {"waId": sender, "name": "Bench", "userId": None},
        "message": {
            "from": sender,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "hello"},
        },
    }
    return _sqs_record(json.dumps(body), group=f"g-{sender}")


def _status_record(reply_wamid: str, status: str, code: int | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": reply_wamid, "status": status, "timestamp": str(int(time.time()))}
    if code is not None:
        raw["errors"] = [{"code": code, "title": "Re-engagement message"}]
    body = {
        "schemaVersion": 1,
        "kind": "status",
        "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "business": {"phoneNumberId": PNID},
        "status": raw,
    }
    return _sqs_record(json.dumps(body), group=None)


def _sqs_record(body: str, *, group: str | None) -> dict[str, Any]:
    message_id = str(uuid.uuid4())
    attributes = {"ApproximateReceiveCount": "1"}
    if group is not None:
        attributes["MessageGroupId"] = group
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{uuid.uuid4().hex}",
        "body": body,
        "attributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:bench",
    }


class _Calls:
    """DynamoDB calls by operation, counted on the consumer's own client."""

    def __init__(self) -> None:
        from functions.adapters import aws

        self.counts: Counter[str] = Counter()
        aws.dynamodb().meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


def consumer_figures(resources: dict[str, str]) -> dict[str, Any]:
    import boto3

    from functions.common.lambda_context import StandInContext
    from functions.consumer.app import handler
    from local_pipeline.fake_graph import FakeGraphApi, late_failure

    os.environ.update(resources)
    context: Any = StandInContext(clock=lambda: 0.0)
    dynamodb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    with (
        FakeGraphApi(latency_seconds=GRAPH_LATENCY_SECONDS, expected_token=TOKEN) as graph,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        os.environ["GRAPH_API_URL"] = graph.url
        os.environ["GRAPH_API_VERSION"] = "v25.0"
        handler({"Records": [_message_record("16505550000")]}, context)  # warm-up
        calls = _Calls()
        calls.take()
        messages_ms, statuses_ms = [], []
        message_calls: Counter[str] = Counter()
        status_calls: Counter[str] = Counter()
        for run in range(RUNS):
            senders = [f"1650555{run:02d}{n:02d}" for n in range(10)]
            started = time.perf_counter()
            handler({"Records": [_message_record(s) for s in senders]}, context)
            messages_ms.append((time.perf_counter() - started) * 1000)
            message_calls += calls.take()
            replies = [
                item["id"]["S"].removeprefix("reply#")
                for item in dynamodb.scan(TableName=resources["IDEMPOTENCY_TABLE"])["Items"]
                if item["id"]["S"].startswith("reply#")
            ][-10:]
            started = time.perf_counter()
            answer = handler(
                {"Records": [_status_record(wamid, "delivered") for wamid in replies]}, context
            )
            statuses_ms.append((time.perf_counter() - started) * 1000)
            status_calls += calls.take()
            if answer["batchItemFailures"]:
                raise RuntimeError(f"status batch failed: {answer}")
        # A late 131047: the one status that acts (a template follows).
        graph.enqueue(late_failure(131047), kind="send")
        handler({"Records": [_message_record("16505559999")]}, context)
        [failed_reply] = [
            item["id"]["S"].removeprefix("reply#")
            for item in dynamodb.scan(TableName=resources["IDEMPOTENCY_TABLE"])["Items"]
            if item["id"]["S"].startswith("reply#")
            and item["inbound_wamid"]["S"]
            and "failed_code" not in item
            and "status_delivered" not in item
            and "original" not in item
        ][-1:]
        calls.take()
        sends_before = len(graph.sent_messages())
        started = time.perf_counter()
        handler({"Records": [_status_record(failed_reply, "failed", 131047)]}, context)
        late_ms = (time.perf_counter() - started) * 1000
        late_calls = calls.take()
        late_sends = len(graph.sent_messages()) - sends_before
    return {
        "messages_batch_ms": statistics.median(messages_ms),
        "statuses_batch_ms": statistics.median(statuses_ms),
        "message_calls": sum(message_calls.values()) / (10 * RUNS),
        "message_calls_by_op": dict(message_calls),
        "status_calls": sum(status_calls.values()) / (10 * RUNS),
        "status_calls_by_op": dict(status_calls),
        "late_ms": late_ms,
        "late_calls_by_op": dict(late_calls),
        "late_sends": late_sends,
    }


def main() -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        endpoint = f"http://{host}:{port}"
        _env(endpoint)
        resources = _resources(endpoint)
        os.environ.update({k: v for k, v in resources.items() if k != "STATUS_QUEUE_URL"})
        counted_1 = ingest_ms(resources, queued=False, statuses=1)
        queued_1 = ingest_ms(resources, queued=True, statuses=1)
        counted_10 = ingest_ms(resources, queued=False, statuses=10)
        queued_10 = ingest_ms(resources, queued=True, statuses=10)
        consumer = consumer_figures(resources)
    finally:
        server.stop()
    counted_us, queued_us = ingest_use_case_us_per_status()
    print(f"statuses, moto on loopback, median of {RUNS} runs")
    print("ingest handler, signed delivery (counted only -> queued on the status queue):")
    print(
        f"  1 status   : {counted_1:6.1f} ms -> {queued_1:6.1f} ms  (+{queued_1 - counted_1:.1f})"
    )
    print(
        f"  10 statuses: {counted_10:6.1f} ms -> {queued_10:6.1f} ms  "
        f"(+{(queued_10 - counted_10) / 10:.1f} per status; one SendMessageBatch per ten)"
    )
    print(
        f"ingest use case alone, 100-status delivery: {counted_us:.0f} us per status counted, "
        f"{queued_us:.0f} us per status queued (+{queued_us - counted_us:.0f} us: the record)"
    )
    graph_ms = GRAPH_LATENCY_SECONDS * 1000
    print(f"consumer handler, batches of 10 (fake Graph API at {graph_ms:.0f} ms):")
    print(
        f"  10 messages (read receipt + reply each): {consumer['messages_batch_ms']:6.1f} ms, "
        f"{consumer['message_calls']:.1f} DynamoDB calls per message "
        f"{consumer['message_calls_by_op']}"
    )
    print(
        f"  10 statuses (delivered)                : {consumer['statuses_batch_ms']:6.1f} ms, "
        f"{consumer['status_calls']:.1f} DynamoDB calls per status "
        f"{consumer['status_calls_by_op']}  "
        f"({consumer['statuses_batch_ms'] / consumer['messages_batch_ms']:.2f}x a message batch)"
    )
    print(
        f"  1 late 131047 (template follows)       : {consumer['late_ms']:6.1f} ms, "
        f"DynamoDB {consumer['late_calls_by_op']}, {consumer['late_sends']} Graph send"
    )


if __name__ == "__main__":
    main()
