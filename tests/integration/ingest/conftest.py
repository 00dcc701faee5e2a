"""Ingest handler fixtures: the handler wired to moto's SQS and Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from functions.common.lambda_context import StandInContext
from tests.conftest import FifoQueues

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def ingest(fifo_queues: FifoQueues, whatsapp_secret: str, lambda_context: StandInContext) -> Invoke:
    """Call the real ingest handler (with QUEUE_URL / WHATSAPP_SECRET_ID pointing at moto)."""
    from functions.ingest.app import handler

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = handler(event, lambda_context)
        return answer

    return invoke
