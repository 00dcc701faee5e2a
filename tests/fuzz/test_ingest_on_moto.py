"""Properties 1 and 2 once more through the ingest's real wiring: Secrets Manager and the FIFO
queue on moto's server (loopback), the app secret read from there. Fewer examples than the
in-process suites (each one is a handful of HTTP calls), the same judgements: nothing unsigned
reaches the queue; a signed delivery puts every message on it exactly once, or is refused."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.common.names import ENV_QUEUE_URL
from functions.domain.ingest.signature import sign
from functions.ingest.app import handler
from tests.conftest import APP_SECRET, FifoQueues, frozen_context
from tests.fuzz.harness import (
    InMemoryFifoQueue,
    Invocation,
    QueuedMessage,
    check_proxy_response,
    check_queue_matches,
    event_body,
    expected_messages,
    fuzz_settings,
    is_text,
    proxy_event,
)
from tests.fuzz.strategies import (
    forged_signature,
    header_layout,
    hostile_bodies,
    mutated_bodies,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]


def _fresh_queue(queues: FifoQueues) -> str:
    """A new FIFO queue per example, so SQS's five-minute deduplication of one example's wamids
    never hides another's."""
    url: str = queues.sqs.create_queue(
        QueueName=f"fuzz-{uuid.uuid4().hex[:16]}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "180"},
    )["QueueUrl"]
    return url


def _invoke_on(
    queues: FifoQueues, event: dict[str, Any]
) -> tuple[Invocation, list[dict[str, Any]]]:
    """The real handler with `QUEUE_URL` at a fresh queue; returns what reached that queue."""
    url = _fresh_queue(queues)
    previous = os.environ.get(ENV_QUEUE_URL)
    os.environ[ENV_QUEUE_URL] = url
    try:
        response = handler(event, frozen_context())
    finally:
        if previous is None:
            os.environ.pop(ENV_QUEUE_URL, None)
        else:
            os.environ[ENV_QUEUE_URL] = previous
    received = queues.drain(url)
    queues.sqs.delete_queue(QueueUrl=url)
    return Invocation(event=event, response=response, queue=InMemoryFifoQueue()), received


def _as_queue(received: list[dict[str, Any]]) -> InMemoryFifoQueue:
    """What moto delivered, in the shape the shared checks read."""
    queue = InMemoryFifoQueue()
    for message in received:
        attributes = message["Attributes"]
        queue.messages.append(
            QueuedMessage(
                body=message["Body"],
                group_id=attributes["MessageGroupId"],
                deduplication_id=attributes["MessageDeduplicationId"],
            )
        )
    return queue


@pytest.fixture
def moto_ingest(fifo_queues: FifoQueues, whatsapp_secret: str) -> FifoQueues:
    """moto's server with the secret; the examples of one test share it (and its queue client)."""
    return fifo_queues


@st.composite
def unsigned_posts(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(hostile_bodies)
    headers, multi = header_layout(
        draw, [forged_signature(draw, body) for _ in range(draw(st.integers(0, 2)))]
    )
    base64_encoded = draw(st.booleans()) or not is_text(body)
    return proxy_event(
        body=event_body(body, base64_encoded=base64_encoded),
        headers=headers,
        multi_value_headers=multi,
        base64_encoded=base64_encoded,
    )


@fuzz_settings(max_examples=40, shares_fixtures=True)
@given(event=unsigned_posts())
def test_nothing_unsigned_reaches_the_queue(moto_ingest: FifoQueues, event: dict[str, Any]) -> None:
    invocation, received = _invoke_on(moto_ingest, event)

    status, document = check_proxy_response(invocation)
    assert (status, document["error"]) == (401, "invalid_signature"), document
    assert received == []


@fuzz_settings(max_examples=40, shares_fixtures=True)
@given(body=mutated_bodies, base64_encoded=st.booleans())
def test_signed_mutated_deliveries_reach_the_queue_once(
    moto_ingest: FifoQueues, body: bytes, base64_encoded: bool
) -> None:
    event = proxy_event(
        body=event_body(body, base64_encoded=base64_encoded),
        headers={"x-hub-signature-256": sign(body, APP_SECRET)},
        base64_encoded=base64_encoded,
    )
    invocation, received = _invoke_on(moto_ingest, event)

    status, document = check_proxy_response(invocation)
    assert status == 200, document
    check_queue_matches(_as_queue(received), expected_messages(json.loads(body)), document)
