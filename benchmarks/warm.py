"""Warm invocations, each measured in its own process with the Lambda-like environment.

Ingest next to pywa: per 1-message webhook, in one loop (rotating order), (a) the ingest use case
(verify + parse + every record serialised and handed to an in-memory queue), (b) pywa 4.5
(verify + parse + its message handler called), (c) the whole ingest handler as deployed: log
level INFO, metrics on, tracing on, the queue port in memory (serialises and keeps the records).
Figures: median over rounds of (a ÷ b) and (c ÷ b).

Consumer: batches of 10 conversations (one record each) through the consumer handler, the fake
Graph API answering in 50 ms, moto (own process) holding every DynamoDB answer until 5 ms after
its request started. Efficiency = ideal (2 Graph calls in sequence: 100 ms) ÷ median batch time.
DynamoDB calls are counted at the botocore level and divided by the messages answered.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any

from benchmarks.aws import Aws
from benchmarks.cold_start import APP_SECRET, function_env, record_ingest
from benchmarks.lambda_env import CONSUMER, INGEST
from benchmarks.runner import Runner, median_ratio

GRAPH_LATENCY_SECONDS = 0.05
STORE_LATENCY_MS = 5.0
CONVERSATIONS = 10
IDEAL_BATCH_MS = 2 * GRAPH_LATENCY_SECONDS * 1000  # read receipt, then the reply


def ingest_vs_pywa(runner: Runner, rounds: int, xray_port: int, aws: Aws) -> dict[str, Any]:
    env = function_env(INGEST, aws, xray_port, queue_url=aws.create_queue(), table="")
    result = runner.probe(
        "webhook-vs-pywa", ["--rounds", str(rounds), "--app-secret", APP_SECRET], env
    )
    samples = result["samples_us"]
    medians = {name: round(statistics.median(values), 1) for name, values in samples.items()}
    return {
        "ingest_usecase_vs_pywa": round(median_ratio(samples["use_case"], samples["pywa"]), 3),
        "ingest_handler_vs_pywa": round(median_ratio(samples["handler"], samples["pywa"]), 3),
        "details": {
            "ingest_usecase_vs_pywa": {
                "median_us": medians["use_case"],
                "floor": "pywa 4.5 verify + parse + on_message handler called",
                "floor_median_us": medians["pywa"],
                "rounds": rounds,
                "method": "median of per-round ratios (ours ÷ pywa), one process, rotating order",
            },
            "ingest_handler_vs_pywa": {
                "median_us": medians["handler"],
                "floor": "pywa 4.5 verify + parse + on_message handler called",
                "floor_median_us": medians["pywa"],
                "rounds": rounds,
                "settings": "LOG_LEVEL INFO, metrics on, tracing on; queue port in memory",
                "delivery_of_1000_messages": result["large_delivery"],
                "method": "median of per-round ratios (ours ÷ pywa), one process, rotating order",
            },
        },
    }


def consumer_batch(
    runner: Runner, batches: int, xray_port: int, aws: Aws, graph: Any
) -> dict[str, Any]:
    """`aws` must delay DynamoDB; `graph` (the fake Graph API) must answer in 50 ms."""
    # The records the consumer reads are the ones the ingest queues: record one, use it as the
    # template of every record in the batches.
    template = record_ingest(runner, aws, xray_port, runner.workdir / "batch-ingest-event.json")
    del template["calls"], template["resources"]
    template_path = runner.workdir / "batch-template.json"
    template_path.write_text(json.dumps(template), encoding="utf-8")
    env = function_env(
        CONSUMER,
        aws,
        xray_port,
        queue_url=aws.create_queue(),
        table=aws.create_table(),
        graph_url=str(graph.url),
    )
    result = runner.probe(
        "consumer-batch",
        [
            "--template",
            str(template_path),
            "--batches",
            str(batches),
            "--conversations",
            str(CONVERSATIONS),
        ],
        env,
    )
    wamids = set(result["wamids"])
    replies: Counter[str] = Counter()
    for call in graph.sent_messages():
        document = call.json if isinstance(call.json, dict) else {}
        wamid = (document.get("context") or {}).get("message_id")
        if isinstance(wamid, str) and wamid in wamids and call.answer == "ok":
            replies[wamid] += 1
    if set(replies) != wamids or any(count != 1 for count in replies.values()):
        raise RuntimeError("the consumer batches did not answer every message exactly once")
    dynamodb = {op: n for op, n in result["calls"].items() if op.startswith("dynamodb.")}
    median_ms = result["median_batch_ms"]
    return {
        "consumer_efficiency": round(IDEAL_BATCH_MS / median_ms, 3),
        "consumer_store_calls_per_message": round(sum(dynamodb.values()) / len(replies), 2),
        "details": {
            "consumer_efficiency": {
                "median_batch_ms": round(median_ms, 1),
                "floor": "ideal: 2 Graph calls of 50 ms in sequence",
                "floor_ms": IDEAL_BATCH_MS,
                "batch_ms": [round(ms, 1) for ms in result["batch_ms"]],
                # CPU the consumer's process spent per batch: what one GIL has to serialise
                "median_batch_cpu_ms": round(result["median_batch_cpu_ms"], 1),
                "conversations_per_batch": CONVERSATIONS,
                "store_latency_ms": STORE_LATENCY_MS,
                "method": "median of warm batches after one warm-up batch",
            },
            "consumer_store_calls_per_message": {
                "dynamodb_calls": dynamodb,
                "answered_messages": len(replies),
                "other_aws_calls": {
                    op: n for op, n in result["calls"].items() if not op.startswith("dynamodb.")
                },
            },
        },
    }
