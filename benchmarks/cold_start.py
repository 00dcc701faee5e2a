"""Cold starts, in fresh processes with the Lambda-like environment (tracing as deployed).

Imports: each round imports `boto3`, the ingest handler module and the consumer handler module,
each in its own new interpreter, in a rotating order; a function's figure is the median over the
rounds of (handler import ÷ `import boto3` of the same round).

First call: import + the first invocation against moto (its own process, loopback). A recording
run (untimed) notes every AWS call the handler makes at the botocore level; the floor is a
botocore-only script making exactly those calls (same operations, same parameters, fresh
resources) in its own fresh process. Rounds alternate which of the pair goes first; the figure
is the median of the per-round ratios. Peak RSS is each process's `ru_maxrss` (medians). The
consumer's Graph API calls (fake, no latency) are in the handler's time only: the floor is
AWS calls alone, as the issue defines it.
"""

from __future__ import annotations

import json
import pickle
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.aws import Aws
from benchmarks.calls import AwsCall, substituted
from benchmarks.lambda_env import (
    CONSUMER,
    HANDLER_MODULES,
    INGEST,
    REGION,
    lambda_environment,
)
from benchmarks.runner import Runner, median_ratio, rotated
from benchmarks.webhooks import delivery, new_wamid, sender_number, signature

APP_SECRET = "bench-app-secret"
VERIFY_TOKEN = "bench-verify-token"
ACCESS_TOKEN = "bench-access-token"
GRAPH_API_VERSION = "v25.0"


def import_ratios(runner: Runner, rounds: int, xray_port: int) -> dict[str, Any]:
    floor_env = lambda_environment(INGEST, xray_port=xray_port)
    envs = {
        "boto3": ("boto3", floor_env),
        INGEST: (HANDLER_MODULES[INGEST], lambda_environment(INGEST, xray_port=xray_port)),
        CONSUMER: (HANDLER_MODULES[CONSUMER], lambda_environment(CONSUMER, xray_port=xray_port)),
    }
    samples: dict[str, list[float]] = {name: [] for name in envs}
    for index in range(rounds):
        for name in rotated(list(envs), index):
            module, env = envs[name]
            samples[name].append(runner.import_ms(module, env))
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for function in (INGEST, CONSUMER):
        key = f"import_ratio_{function}"
        results[key] = round(median_ratio(samples[function], samples["boto3"]), 3)
        details[key] = {
            "median_ms": round(statistics.median(samples[function]), 1),
            "floor": "import boto3",
            "floor_median_ms": round(statistics.median(samples["boto3"]), 1),
            "ratio_of_medians": round(
                statistics.median(samples[function]) / statistics.median(samples["boto3"]), 3
            ),
            "rounds": rounds,
            "method": "median of per-round ratios; fresh interpreter each; bytecode present",
        }
    results["details"] = details
    return results


def _ingest_event(path: Path) -> tuple[str, str]:
    """A signed 1-message webhook as API Gateway hands it to the function: (wamid, sender)."""
    from local_pipeline.gateway import build_proxy_event

    wamid, sender = new_wamid("cold"), sender_number(1)
    body = delivery([(wamid, sender)])
    event = build_proxy_event(
        method="POST",
        raw_path="/webhook",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", signature(body, APP_SECRET)),
        ],
        body=body,
    )
    path.write_text(json.dumps(event), encoding="utf-8")
    return wamid, sender


def queued_template(
    calls: list[AwsCall], wamid: str, sender: str, queue_arn: str
) -> dict[str, Any]:
    """The SQS record the ingest sent for `wamid`, as a template for consumer events."""
    for call in calls:
        if call.service == "sqs" and call.operation in ("SendMessageBatch", "SendMessage"):
            entry = call.params["Entries"][0] if "Entries" in call.params else call.params
            return {
                "body": entry["MessageBody"],
                "group": entry.get("MessageGroupId", "group"),
                "wamid": wamid,
                "sender": sender,
                "queue_arn": queue_arn,
            }
    raise RuntimeError("the ingest handler queued nothing in its recorded first call")


def _consumer_event(path: Path, template: dict[str, Any]) -> None:
    from benchmarks.probe import queued_message
    from local_pipeline.poller import sqs_event

    message = queued_message(template, new_wamid("cold"), sender_number(2))
    path.write_text(
        json.dumps(sqs_event([message], queue_arn=template["queue_arn"], region=REGION)),
        encoding="utf-8",
    )


def _queue_arn(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:123456789012:{url.rsplit('/', 1)[-1]}"


def function_env(
    function: str, aws: Aws, xray_port: int, *, queue_url: str, table: str, graph_url: str = ""
) -> dict[str, str]:
    """The Lambda-like environment of `function`, its settings pointing at `aws`."""
    settings = {
        "WHATSAPP_SECRET_ID": aws.create_secret(APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN),
        "QUEUE_URL": queue_url,
    }
    if function == CONSUMER:
        settings.update(
            {
                "DEAD_LETTER_QUEUE_URL": aws.create_queue(),
                "IDEMPOTENCY_TABLE": table,
                "GRAPH_API_URL": graph_url,
                "GRAPH_API_VERSION": GRAPH_API_VERSION,
            }
        )
    return lambda_environment(
        function, xray_port=xray_port, endpoint=aws.endpoint, settings=settings
    )


def record_ingest(runner: Runner, aws: Aws, xray_port: int, event_path: Path) -> dict[str, Any]:
    """One recorded (untimed) first call of the ingest handler: the template of the record it
    queued, its AWS `calls` and the `resources` (queue URL, table) it ran against."""
    queue_url, table = aws.create_queue(), aws.create_table()
    wamid, sender = _ingest_event(event_path)
    record = runner.workdir / "ingest-calls.pickle"
    runner.probe(
        "first-call",
        ["--function", INGEST, "--event", str(event_path), "--record", str(record)],
        function_env(INGEST, aws, xray_port, queue_url=queue_url, table=table),
    )
    calls: list[AwsCall] = pickle.loads(record.read_bytes())  # noqa: S301 - our own file
    template = queued_template(calls, wamid, sender, _queue_arn(queue_url))
    return {**template, "calls": calls, "resources": (queue_url, table)}


def first_call_ratios(
    runner: Runner, rounds: int, xray_port: int, graph_url: str, aws: Aws
) -> dict[str, Any]:
    """The first invocation of each handler next to its botocore-only floor."""
    work = runner.workdir

    def env(function: str, queue_url: str, table: str) -> dict[str, str]:
        return function_env(
            function, aws, xray_port, queue_url=queue_url, table=table, graph_url=graph_url
        )

    # Recording runs: what each handler calls on its first invocation.
    events = {function: work / f"{function}-event.json" for function in (INGEST, CONSUMER)}
    template = record_ingest(runner, aws, xray_port, events[INGEST])
    recorded: dict[str, list[AwsCall]] = {}
    resources = {INGEST: template.pop("resources")}
    recorded[INGEST] = template.pop("calls")
    (work / "queued-template.json").write_text(json.dumps(template), encoding="utf-8")
    queue_url, table = aws.create_queue(), aws.create_table()
    resources[CONSUMER] = (queue_url, table)
    _consumer_event(events[CONSUMER], template)
    record = work / "consumer-calls.pickle"
    runner.probe(
        "first-call",
        ["--function", CONSUMER, "--event", str(events[CONSUMER]), "--record", str(record)],
        env(CONSUMER, queue_url, table),
    )
    recorded[CONSUMER] = pickle.loads(record.read_bytes())  # noqa: S301 - our own file

    samples: dict[str, dict[str, list[float]]] = {
        function: {"ms": [], "floor_ms": [], "rss": [], "floor_rss": []}
        for function in (INGEST, CONSUMER)
    }
    refused = 0
    for index in range(rounds):
        for function in (INGEST, CONSUMER):
            # Fresh resources for each side: the floor's replayed writes meet an empty table.
            queue_url, table = aws.create_queue(), aws.create_table()
            floor_queue, floor_table = aws.create_queue(), aws.create_table()
            if function == INGEST:
                _ingest_event(events[INGEST])
            else:
                _consumer_event(
                    events[CONSUMER], json.loads((work / "queued-template.json").read_text())
                )
            old_queue, old_table = resources[function]
            calls = [
                replace(
                    call,
                    params=substituted(
                        call.params, {old_queue: floor_queue, old_table: floor_table}
                    ),
                )
                for call in recorded[function]
            ]
            calls_path = work / f"{function}-floor-calls.pickle"
            calls_path.write_bytes(pickle.dumps(calls))

            sides = {
                "handler": (
                    "first-call",
                    ["--function", function, "--event", str(events[function])],
                    env(function, queue_url, table),
                ),
                "floor": (
                    "floor",
                    ["--calls", str(calls_path)],
                    env(function, floor_queue, floor_table),
                ),
            }
            answers = {name: runner.probe(*sides[name]) for name in rotated(list(sides), index)}
            samples[function]["ms"].append(answers["handler"]["ms"])
            samples[function]["rss"].append(answers["handler"]["rss_mb"])
            samples[function]["floor_ms"].append(answers["floor"]["ms"])
            samples[function]["floor_rss"].append(answers["floor"]["rss_mb"])
            refused += int(answers["floor"]["refused"])
    if refused:
        raise RuntimeError(f"the floor's replayed calls were refused {refused} times")

    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for function in (INGEST, CONSUMER):
        figures = samples[function]
        key = f"first_call_ratio_{function}"
        results[key] = round(median_ratio(figures["ms"], figures["floor_ms"]), 3)
        results[f"peak_rss_mb_{function}"] = round(statistics.median(figures["rss"]), 1)
        results[f"peak_rss_mb_{function}_floor"] = round(statistics.median(figures["floor_rss"]), 1)
        operations = [f"{call.service}.{call.operation}" for call in recorded[function]]
        details[key] = {
            "median_ms": round(statistics.median(figures["ms"]), 1),
            "floor": "botocore-only script making the same AWS calls",
            "floor_median_ms": round(statistics.median(figures["floor_ms"]), 1),
            "aws_calls": operations,
            "rounds": rounds,
            "method": "median of per-round ratios; fresh process each; import + first invocation",
        }
    results["details"] = details
    return results
