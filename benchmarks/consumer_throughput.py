"""Consumer: one batch of 10 conversations next to one conversation, against the fake Graph API
answering in 50 ms (each record costs a read receipt and a reply: two calls, ~100 ms).

The real handler runs against moto's server on loopback (DynamoDB for idempotency and the reply
ledger, Secrets Manager for the token) and `local_pipeline.fake_graph` with 50 ms latency. Every
measured record is new (a fresh wamid), so nothing is skipped as a duplicate. Medians of several
runs after a warm-up invocation; also shown: 10 records of ONE conversation, which must run in
order and so take ~10x.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

GRAPH_LATENCY_SECONDS = 0.05
RUNS = 5
TOKEN = "bench-access-token"


def _record(group: str, sender: str) -> dict[str, Any]:
    wamid = f"wamid.BENCH{uuid.uuid4().hex}="
    body = {
        "schemaVersion": 1,
        "wamid": wamid,
        "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "business": {"phoneNumberId": "106540352242922", "displayPhoneNumber": "15550783881"},
        "contact": {"waId": sender, "name": "Bench", "userId": None},
        "message": {
            "from": sender,
            "id": wamid,
            "timestamp": "1764061200",
            "type": "text",
            "text": {"body": "hello"},
        },
    }
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": f"rh-{uuid.uuid4().hex}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": group},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bench.fifo",
    }


def _event(conversations: int, per_conversation: int) -> dict[str, Any]:
    records = []
    for c in range(conversations):
        sender = f"1650555{c:04d}"
        records.extend(_record(f"g{c}", sender) for _ in range(per_conversation))
    return {"Records": records}


def _setup(endpoint: str) -> None:
    import boto3

    region = "eu-west-1"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_METRICS_NAMESPACE": "WhatsAppRelayBench",
            "POWERTOOLS_SERVICE_NAME": "bench",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
        }
    )
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    dynamodb.create_table(
        TableName="bench-idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
    secrets.create_secret(
        Name="bench-secret",
        SecretString=json.dumps({"appSecret": "a", "verifyToken": "v", "accessToken": TOKEN}),
    )
    os.environ["IDEMPOTENCY_TABLE"] = "bench-idempotency"
    os.environ["WHATSAPP_SECRET_ID"] = "bench-secret"
    os.environ.pop("QUEUE_URL", None)


def measure() -> dict[str, float]:
    """Median seconds per batch: 1 conversation, 10 conversations, 10 records of 1."""
    import contextlib
    import io
    import logging

    from moto.server import ThreadedMotoServer

    from benchmarks.fake_context import FakeContext
    from local_pipeline.fake_graph import FakeGraphApi

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        _setup(f"http://{host}:{port}")
        with FakeGraphApi(latency_seconds=GRAPH_LATENCY_SECONDS, expected_token=TOKEN) as graph:
            os.environ["GRAPH_API_URL"] = graph.url
            os.environ["GRAPH_API_VERSION"] = "v25.0"
            from functions.consumer.app import handler

            context: Any = FakeContext()
            shapes = {"one conversation": (1, 1), "10 conversations": (10, 1), "10 in one": (1, 10)}
            timings: dict[str, list[float]] = {name: [] for name in shapes}
            with contextlib.redirect_stdout(io.StringIO()):  # EMF lines
                handler(_event(10, 1), context)  # warm-up: imports, clients, pools
                for _ in range(RUNS):
                    for name, (conversations, per) in shapes.items():
                        event = _event(conversations, per)
                        started = time.perf_counter()
                        answer = handler(event, context)
                        timings[name].append(time.perf_counter() - started)
                        if answer["batchItemFailures"]:
                            raise RuntimeError(f"benchmark batch failed: {answer}")
            expected_sends = 10 + RUNS * 21
            if len(graph.sent_messages()) != expected_sends:
                raise RuntimeError("not every record was answered exactly once")
        return {name: statistics.median(samples) for name, samples in timings.items()}
    finally:
        server.stop()


def measure_without_emulator() -> dict[str, float]:
    """The use case alone: real Graph client to the fake Graph API (50 ms), stores in memory.
    Separates what concurrency buys from the emulator's own cost on a 2-core machine."""
    from functions.adapters.graph_client import GraphClient
    from functions.consumer.events import inbox_records
    from functions.consumer.wiring import reply_rules
    from functions.domain.consumer.consume import Consumer, consume_batch
    from functions.domain.whatsapp.credentials import WhatsAppCredentials
    from local_pipeline.fake_graph import FakeGraphApi

    class _Token:
        def current(self) -> WhatsAppCredentials:
            return WhatsAppCredentials("a", "v", TOKEN)

        def refreshed(self) -> WhatsAppCredentials | None:
            return None

    class _Once:
        def run(self, key: str, work: Any) -> Any:
            from functions.domain.consumer.ports import OnceResult

            return OnceResult(work(), replayed=False)

    class _Ledger:
        def claim(self, wamid: str) -> bool:
            return True

        def release(self, wamid: str) -> None:
            return None

    class _Visibility:
        def change(self, changes: Any) -> list[str]:
            return []

    with FakeGraphApi(latency_seconds=GRAPH_LATENCY_SECONDS) as graph:
        consumer = Consumer(
            graph=GraphClient(base_url=graph.url, version="v25.0", credentials=_Token()),
            once=_Once(),
            ledger=_Ledger(),
            visibility=_Visibility(),
            rules=reply_rules(),
            clock=lambda: datetime.now(UTC),
        )
        consume_batch(inbox_records(_event(10, 1)), consumer)  # warm the pool
        timings: dict[str, list[float]] = {"one conversation": [], "10 conversations": []}
        for _ in range(RUNS):
            for name, conversations in (("one conversation", 1), ("10 conversations", 10)):
                records = inbox_records(_event(conversations, 1))
                started = time.perf_counter()
                consume_batch(records, consumer)
                timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(samples) for name, samples in timings.items()}


def main() -> None:
    result = measure()
    one, ten, serial = (result[k] for k in ("one conversation", "10 conversations", "10 in one"))
    bare = measure_without_emulator()
    bare_one, bare_ten = bare["one conversation"], bare["10 conversations"]
    ms = GRAPH_LATENCY_SECONDS * 1000
    print(f"consumer, fake Graph API at {ms:.0f} ms per call, median of {RUNS} runs")
    print("handler + moto (DynamoDB, Secrets Manager) in-process on loopback:")
    print(f"  1 record, 1 conversation              : {one * 1000:7.1f} ms")
    print(f"  10 records, 10 conversations (1 batch): {ten * 1000:7.1f} ms  ({ten / one:.2f}x)")
    print(
        f"  10 records, 1 conversation (in order) : {serial * 1000:7.1f} ms  ({serial / one:.2f}x)"
    )
    print("use case with in-memory stores (no emulator), real Graph client:")
    print(f"  1 record, 1 conversation              : {bare_one * 1000:7.1f} ms")
    print(
        f"  10 records, 10 conversations (1 batch): {bare_ten * 1000:7.1f} ms  "
        f"({bare_ten / bare_one:.2f}x)"
    )


if __name__ == "__main__":
    main()
