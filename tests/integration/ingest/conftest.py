"""Ingest handler fixtures: the handler wired to moto's SQS and Secrets Manager."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import FakeLambdaContext, FifoQueues

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def ingest(
    fifo_queues: FifoQueues, whatsapp_secret: str, lambda_context: FakeLambdaContext
) -> Invoke:
    """Call the real ingest handler (with QUEUE_URL / WHATSAPP_SECRET_ID pointing at moto)."""
    from functions.ingest.app import handler

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = handler(event, lambda_context)
        return answer

    return invoke


def emitted_metrics(output: str) -> list[dict[str, Any]]:
    """The EMF documents a run printed, each as {name: value, ..., "dimensions": {...}}."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        directive = document["_aws"]["CloudWatchMetrics"][0]
        dimensions = {name: document[name] for name in directive["Dimensions"][0]}
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            found.append(
                {
                    "name": metric["Name"],
                    "value": sum(value) if isinstance(value, list) else value,
                    "dimensions": dimensions,
                }
            )
    return found


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """What the functions' Powertools logger writes during the test (its JSON lines)."""
    from functions.common.observability import logger

    handler = logger.registered_handler
    stream = io.StringIO()
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
