"""Ingest: cold import time next to `import boto3` alone, and warm time per webhook.

Import times are measured in fresh interpreters (median of several), the handler's warm time
against moto's server on loopback (SQS + Secrets Manager) and, to separate our own code from the
emulator, with an in-memory queue.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

IMPORT_RUNS = 7
WARM_INVOCATIONS = 300

_IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print((time.perf_counter() - t) * 1000)"
)


def import_ms(module: str, env: dict[str, str]) -> float:
    samples = []
    for _ in range(IMPORT_RUNS):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return statistics.median(samples)


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def warm_handler_ms() -> tuple[list[float], list[float]]:
    """(against moto, with an in-memory queue) per-invocation times in ms."""
    import boto3
    from moto.server import ThreadedMotoServer

    from benchmarks.fake_context import FakeContext
    from functions.domain.ingest.signature import sign
    from functions.ingest import app, wiring

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        sqs = boto3.client("sqs")

        def fresh_queue() -> None:
            # moto's FIFO queues slow down as they grow: a new one every hundred webhooks.
            os.environ["QUEUE_URL"] = sqs.create_queue(
                QueueName=f"bench-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
            )["QueueUrl"]

        fresh_queue()
        secret = "bench-secret"
        boto3.client("secretsmanager").create_secret(
            Name="bench",
            SecretString=json.dumps({"appSecret": secret, "verifyToken": "v", "accessToken": "t"}),
        )
        os.environ["WHATSAPP_SECRET_ID"] = "bench"

        def event(index: int) -> dict[str, Any]:
            body = json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "id": "1",
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {
                                        "metadata": {"phone_number_id": "106540352242922"},
                                        "contacts": [{"profile": {"name": "A"}, "wa_id": "1"}],
                                        "messages": [
                                            {
                                                "from": f"1650555{index % 50:04d}",
                                                "id": f"wamid.bench{index}{uuid.uuid4().hex}",
                                                "timestamp": "1749416383",
                                                "type": "text",
                                                "text": {"body": "Olá, tem em azul? 👍"},
                                            }
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                },
                separators=(",", ":"),
            ).encode()
            return {
                "httpMethod": "POST",
                "headers": {"X-Hub-Signature-256": sign(body, secret)},
                "body": body.decode(),
                "isBase64Encoded": False,
                "requestContext": {"requestId": str(index)},
            }

        context = FakeContext()
        app.handler(event(-1), context)  # warm: secret cached, clients built

        def timed(count: int) -> list[float]:
            samples = []
            for index in range(count):
                request = event(index)
                start = time.perf_counter()
                answer = app.handler(request, context)
                samples.append((time.perf_counter() - start) * 1000)
                assert answer["statusCode"] == 200, answer
                if index % 100 == 99:
                    fresh_queue()
            return samples

        against_moto = timed(WARM_INVOCATIONS)

        class InMemoryPublisher:
            def publish(self, records: object, **deadline: object) -> None:
                return None

        original = wiring.publisher
        wiring.publisher = InMemoryPublisher  # type: ignore[assignment]
        try:
            in_memory = timed(WARM_INVOCATIONS)
        finally:
            wiring.publisher = original
        return against_moto, in_memory
    finally:
        server.stop()


def large_delivery_figures() -> tuple[int, float, float]:
    """(body bytes, ms, peak MiB) to verify, parse and build the queue records of a 1,000-message
    delivery spread over 50 changes, with an in-memory queue."""
    import tracemalloc
    from datetime import UTC, datetime

    from functions.domain.ingest.accept import accept_delivery
    from functions.domain.ingest.signature import sign
    from functions.domain.whatsapp.credentials import WhatsAppCredentials

    changes = [
        {
            "field": "messages",
            "value": {
                "metadata": {"phone_number_id": f"10654035224292{c % 3}"},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": f"1650555{c:04d}"}],
                "messages": [
                    {
                        "from": f"1650555{c:04d}",
                        "id": f"wamid.bench-{c}-{m}-{uuid.uuid4().hex}",
                        "timestamp": "1749416383",
                        "type": "text",
                        "text": {"body": "Olá! Tem esse modelo em azul? 👍 " * 4},
                    }
                    for m in range(20)
                ],
            },
        }
        for c in range(50)
    ]
    body = json.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": changes}]}
    ).encode()
    credentials = WhatsAppCredentials(app_secret="s", verify_token="v", access_token="t")

    class Source:
        def current(self) -> WhatsAppCredentials:
            return credentials

        def refreshed(self) -> WhatsAppCredentials | None:
            return None

    class Collector:
        def publish(self, records: Sequence[Any]) -> None:
            for record in records:  # the SQS adapter serialises each record: count that too
                record.to_json()

    header = sign(body, "s")

    def run() -> int:
        summary = accept_delivery(
            body, header, credentials=Source(), publisher=Collector(), now=lambda: datetime.now(UTC)
        )
        return len(summary.queued)

    timings = []
    for _ in range(5):
        start = time.perf_counter()
        assert run() == 1000
        timings.append((time.perf_counter() - start) * 1000)
    tracemalloc.start()  # separately: tracing slows the code it watches
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(body), statistics.median(timings), peak / 2**20


def main() -> None:
    env = {
        **os.environ,
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    boto3_ms = import_ms("boto3", env)
    handler_ms = import_ms("functions.ingest.app", env)
    print(f"import boto3                     median {boto3_ms:7.1f} ms  (x{1:.2f})")
    print(
        f"import functions.ingest.app      median {handler_ms:7.1f} ms  "
        f"(x{handler_ms / boto3_ms:.2f} of boto3)"
    )

    size, elapsed_ms, peak_mib = large_delivery_figures()
    print(
        f"1,000-message delivery ({size / 2**20:.2f} MiB body): verify + parse + serialise, median "
        f"{elapsed_ms:.0f} ms, peak traced memory {peak_mib:.1f} MiB "
        f"(x{peak_mib / (size / 2**20):.1f} the body)"
    )

    # Quiet the handler's own logs and metrics while timing it.
    os.environ.update(
        {
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "LOG_LEVEL": "WARNING",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
    )
    import logging
    import warnings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", "No application metrics to publish")
    against_moto, in_memory = warm_handler_ms()
    runs = (("SQS on moto (loopback)", against_moto), ("in-memory queue", in_memory))
    for label, samples in runs:
        print(
            f"warm POST, 1 message, {label:<24} median {statistics.median(samples):6.2f} ms"
            f"  p99 {percentile(samples, 0.99):6.2f} ms  ({len(samples)} webhooks)"
        )


if __name__ == "__main__":
    main()
