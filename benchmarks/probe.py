"""What runs inside a measured process: `python -m benchmarks.probe <what> --result FILE ...`.

The orchestrator (`python -m benchmarks`) starts each probe with the Lambda-like environment of
`benchmarks.lambda_env`, its stdout and stderr sent to the bench log (the handlers' JSON logs
and EMF land there, as they would in CloudWatch), and reads the figures from `--result`.
Before a timed section starts, a probe has imported only what both sides of the comparison
need anyway (a few standard modules), so neither side is handed the other's imports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.calls import AwsCall, count_calls, record_calls, replay
from benchmarks.lambda_env import HANDLER_MODULES, MEMORY_MB, trace_header


@dataclass
class LambdaContext:
    """What the runtime hands a handler, with a real deadline."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float = 30.0
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/bench"
    log_stream_name: str = "bench"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def context_for(function: str) -> LambdaContext:
    return LambdaContext(os.environ["AWS_LAMBDA_FUNCTION_NAME"], MEMORY_MB[function])


def invoke(handler: Callable[..., Any], event: Any, function: str) -> Any:
    os.environ["_X_AMZN_TRACE_ID"] = trace_header()  # the runtime's, per invocation
    return handler(event, context_for(function))


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not `ru_maxrss`: Linux carries that across exec, so
    a child would report its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def check_answer(function: str, answer: Any) -> None:
    if function == "ingest" and answer.get("statusCode") != 200:
        raise RuntimeError(f"the ingest handler answered {answer}")
    if function == "consumer" and answer.get("batchItemFailures"):
        raise RuntimeError(f"the consumer handler failed records: {answer}")


# --- cold start --------------------------------------------------------------------------------


def first_call(function: str, event_path: Path, record_path: Path | None) -> dict[str, Any]:
    """Import the handler module and invoke it once: the cold start Lambda bills."""
    import pickle

    event = json.loads(event_path.read_text(encoding="utf-8"))
    calls: list[AwsCall] = []
    if record_path is not None:  # a recording run is never a timed one
        record_calls(calls)
    started = time.perf_counter()
    module = importlib.import_module(HANDLER_MODULES[function])
    imported = time.perf_counter()
    answer = invoke(module.handler, event, function)
    finished = time.perf_counter()
    check_answer(function, answer)
    if record_path is not None:
        record_path.write_bytes(pickle.dumps(calls))
    return {
        "ms": (finished - started) * 1000,
        "import_ms": (imported - started) * 1000,
        "rss_mb": peak_rss_mb(),
        "aws_calls": len(calls),
    }


def floor(calls_path: Path) -> dict[str, Any]:
    """The same AWS calls from a botocore-only script: import botocore, one client per service."""
    import pickle

    # The bench's own file, written by its recording run moments ago.
    calls: list[AwsCall] = pickle.loads(calls_path.read_bytes())  # noqa: S301
    started = time.perf_counter()
    refused = replay(calls)
    finished = time.perf_counter()
    return {"ms": (finished - started) * 1000, "rss_mb": peak_rss_mb(), "refused": refused}


# --- warm ingest next to pywa ------------------------------------------------------------------


def webhook_vs_pywa(rounds: int, app_secret: str) -> dict[str, Any]:
    """Per 1-message webhook, interleaved in one loop: the ingest use case, pywa, the handler."""
    from benchmarks import targets
    from benchmarks.webhooks import delivery, new_wamid, sender_number, signature
    from local_pipeline.gateway import build_proxy_event

    credentials = targets.FixedCredentials(targets.Credentials(app_secret, "v", "t"))
    accept = targets.accept_delivery()
    use_case_queue, handler_queue = targets.InMemoryQueue(), targets.InMemoryQueue()

    def use_case(body: bytes, header: str) -> None:
        accept(
            body,
            header,
            credentials=credentials,
            publisher=use_case_queue,
            now=lambda: datetime.now(UTC),
        )

    pywa_run, pywa_handed_on = _pywa(app_secret)
    module = importlib.import_module(HANDLER_MODULES["ingest"])
    targets.use_in_memory_queue(handler_queue)

    def handler(event: dict[str, Any]) -> None:
        check_answer("ingest", invoke(module.handler, event, "ingest"))

    samples: dict[str, list[float]] = {"use_case": [], "pywa": [], "handler": []}
    for index in range(rounds + 1):  # round 0 warms all three (secret fetched, caches filled)
        body = delivery([(new_wamid("pywa"), sender_number(index % 200))])
        header = signature(body, app_secret)
        event = build_proxy_event(
            method="POST",
            raw_path="/webhook",
            headers=[("Content-Type", "application/json"), ("X-Hub-Signature-256", header)],
            body=body,
        )
        runs: list[tuple[str, Callable[[], None]]] = [
            ("use_case", partial(use_case, body, header)),
            ("pywa", partial(pywa_run, body, header)),
            ("handler", partial(handler, event)),
        ]
        shift = index % 3  # each goes first, second and third in turn
        for name, run in runs[shift:] + runs[:shift]:
            started = time.perf_counter()
            run()
            elapsed = time.perf_counter() - started
            if index:
                samples[name].append(elapsed * 1e6)
    expected = rounds + 1
    handed_on = (len(use_case_queue.records), pywa_handed_on(), len(handler_queue.records))
    if handed_on != (expected, expected, expected):
        raise RuntimeError(f"messages handed on (use case, pywa, handler): {handed_on}")
    large = _large_delivery(app_secret, handler, pywa_run, pywa_handed_on)
    return {"samples_us": samples, "large_delivery": large}


def _large_delivery(
    app_secret: str,
    handler: Callable[[dict[str, Any]], None],
    pywa_run: Callable[[bytes, str], None],
    pywa_handed_on: Callable[[], int],
) -> dict[str, Any]:
    """A 1,000-message delivery (50 changes of 20 messages): the whole handler's time for it
    (median of 5), and how many of the messages each side hands on."""
    import statistics

    from benchmarks import targets
    from benchmarks.webhooks import delivery_of_changes, new_wamid, sender_number, signature
    from local_pipeline.gateway import build_proxy_event

    timings, handed_on = [], 0
    for _ in range(5):
        changes = [[(new_wamid("big"), sender_number(c)) for _ in range(20)] for c in range(50)]
        body = delivery_of_changes(changes)
        header = signature(body, app_secret)
        queue = targets.InMemoryQueue()
        targets.use_in_memory_queue(queue)
        event = build_proxy_event(
            method="POST",
            raw_path="/webhook",
            headers=[("Content-Type", "application/json"), ("X-Hub-Signature-256", header)],
            body=body,
        )
        started = time.perf_counter()
        handler(event)
        timings.append((time.perf_counter() - started) * 1000)
        handed_on = len(queue.records)
    before = pywa_handed_on()
    pywa_run(body, header)
    return {
        "messages": 1000,
        "body_bytes": len(body),
        "handler_median_ms": round(statistics.median(timings), 1),
        "handed_on_by_handler": handed_on,
        "handed_on_by_pywa": pywa_handed_on() - before,
    }


def _pywa(app_secret: str) -> tuple[Callable[[bytes, str], None], Callable[[], int]]:
    """pywa 4.5 doing the same job: check the signature, parse, call the message handler."""
    import logging

    from pywa.client import WhatsApp

    logging.getLogger("pywa").setLevel(logging.CRITICAL)
    client: Any = WhatsApp(
        phone_id="106540352242922",
        token="x",
        server=None,
        verify_token="v",
        app_secret=app_secret,
        validate_updates=True,
    )
    handed_on: list[str] = []
    client.on_message()(lambda _client, message: handed_on.append(message.id))

    def run(body: bytes, header: str) -> None:
        if client.webhook_update_validator(body, header) is not None:
            raise RuntimeError("pywa rejected a valid signature")
        client.webhook_update_handler(body)

    return run, lambda: len(handed_on)


# --- consumer batch ----------------------------------------------------------------------------


def consumer_batch(template_path: Path, batches: int, conversations: int) -> dict[str, Any]:
    """Batches of `conversations` records (one per conversation) through the consumer handler;
    the first warms it up. DynamoDB calls are counted at the botocore level."""
    import statistics

    from local_pipeline.poller import sqs_event

    template = json.loads(template_path.read_text(encoding="utf-8"))
    counts: Counter[str] = Counter()
    count_calls(counts)
    module = importlib.import_module(HANDLER_MODULES["consumer"])
    batch_ms: list[float] = []
    batch_cpu_ms: list[float] = []  # the handler's process, all threads
    measured_wamids: list[str] = []
    before: Counter[str] = Counter()
    for batch in range(batches + 1):
        wamids: list[str] = []
        messages: list[Mapping[str, Any]] = []
        for slot in range(conversations):
            wamid, sender = f"wamid.batch.{uuid.uuid4().hex}", f"1650666{batch:02d}{slot:02d}"
            wamids.append(wamid)
            messages.append(queued_message(template, wamid, sender))
        event = sqs_event(
            messages, queue_arn=template["queue_arn"], region=os.environ["AWS_REGION"]
        )
        if batch == 1:
            before = Counter(counts)
        started, cpu_started = time.perf_counter(), time.process_time()
        answer = invoke(module.handler, event, "consumer")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        check_answer("consumer", answer)
        if batch:
            batch_ms.append(elapsed * 1000)
            batch_cpu_ms.append(cpu * 1000)
            measured_wamids.extend(wamids)
    during = counts - before
    return {
        "batch_ms": batch_ms,
        "median_batch_ms": statistics.median(batch_ms),
        "median_batch_cpu_ms": statistics.median(batch_cpu_ms),
        "wamids": measured_wamids,
        "calls": dict(during),
    }


def queued_message(template: dict[str, Any], wamid: str, sender: str) -> dict[str, Any]:
    """An SQS message as `receive_message` returns it: the record the ingest queued (recorded
    in a real run) for another wamid and sender."""
    replace = {template["wamid"]: wamid, template["sender"]: sender}

    def swapped(text: str) -> str:
        for old, new in replace.items():
            text = text.replace(old, new)
        return text

    now = str(int(time.time() * 1000))
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": uuid.uuid4().hex,
        "Body": swapped(template["body"]),
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": now,
            "ApproximateFirstReceiveTimestamp": now,
            # The ingest hashes the sender into the group id: one group per sender, as there.
            "MessageGroupId": f"{template['group'][:64]}-{sender}",
            "MessageDeduplicationId": uuid.uuid4().hex,
            "SequenceNumber": "1",
            "SenderId": "AIDABENCH",
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "what", choices=["first-call", "floor", "webhook-vs-pywa", "consumer-batch"]
    )
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--function", choices=sorted(HANDLER_MODULES))
    parser.add_argument("--event", type=Path)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--calls", type=Path)
    parser.add_argument("--template", type=Path)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--app-secret", default="")
    args = parser.parse_args(argv)
    if args.what == "first-call":
        result = first_call(args.function, args.event, args.record)
    elif args.what == "floor":
        result = floor(args.calls)
    elif args.what == "webhook-vs-pywa":
        result = webhook_vs_pywa(args.rounds, args.app_secret)
    else:
        result = consumer_batch(args.template, args.batches, args.conversations)
    sys.stdout.flush()
    args.result.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
