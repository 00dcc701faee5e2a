"""Fixtures every suite shares: a fake Lambda context, the AWS environment pointed at moto's
server on loopback, and helpers to make the queue, table and secret there.

Nothing here reaches the network beyond 127.0.0.1: AWS_ENDPOINT_URL is set for the whole test
session and the credentials are fake, so a test that forgot the emulator fails instead of
calling AWS.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.common.lambda_context import StandInContext
from functions.common.names import (
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_METRICS_NAMESPACE,
    ENV_QUEUE_URL,
    ENV_SECRET_ID,
    ENV_SERVICE_NAME,
    ENV_STATUS_QUEUE_URL,
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)

TEST_REGION = "eu-west-1"
APP_SECRET = "test-app-secret-0123456789abcdef"
VERIFY_TOKEN = "test-verify-token"
ACCESS_TOKEN = "test-access-token-EAAG"

# Before any test module imports boto3 or Powertools: no real credentials, no real endpoints.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_REGION": TEST_REGION,
        # Until the moto server fixture starts, an endpoint nobody listens on: fail fast.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        ENV_METRICS_NAMESPACE: "WhatsAppRelayTests",
        ENV_SERVICE_NAME: "whatsapp-relay-tests",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
    }
)
for _name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_name, None)


def frozen_context(remaining_ms: int = 30_000) -> StandInContext:
    """A Lambda context whose remaining time stands still (tests must not depend on speed)."""
    return StandInContext(
        function_name="whatsapp-relay-test",
        timeout_seconds=remaining_ms / 1000,
        invoked_function_arn=f"arn:aws:lambda:{TEST_REGION}:123456789012:function:test",
        clock=lambda: 0.0,
    )


UNIT_TESTS_DIR = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/unit is a unit test, marked or not (so it gets the socket guard)."""
    for item in items:
        if UNIT_TESTS_DIR in item.path.parents:
            item.add_marker(pytest.mark.unit)


def _offline(node: pytest.Item) -> bool:
    """Unit tests, and the fuzz suites that run in-process (not those against moto)."""
    if node.get_closest_marker("unit") is not None:
        return True
    return node.get_closest_marker("fuzz") is not None and (
        node.get_closest_marker("integration") is None
    )


@pytest.fixture(autouse=True)
def _offline_tests_cannot_open_a_socket(request: pytest.FixtureRequest) -> Iterator[None]:
    """A unit test (or an in-process fuzz test) that opens a socket, even to loopback, fails
    with SocketBlockedError: the domain is tested without AWS, HTTP or emulators."""
    if not _offline(request.node):
        yield
        return
    from pytest_socket import disable_socket, enable_socket

    disable_socket(allow_unix_socket=False)
    try:
        yield
    finally:
        enable_socket()


@pytest.fixture
def lambda_context() -> StandInContext:
    return frozen_context()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port, for the whole session (one per xdist worker)."""
    from moto.server import ThreadedMotoServer

    from local_pipeline.emulator import serialize_dynamodb

    serialize_dynamodb()  # moto's DynamoDB races under concurrent writes; AWS's does not
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield endpoint
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and so the handlers) at moto's server for one test."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def boto_client(service: str, endpoint: str) -> Any:
    """An untyped client for any service (the typed ones are in `functions.adapters.aws`)."""
    import boto3

    make_client: Any = boto3.client
    return make_client(service, endpoint_url=endpoint, region_name=TEST_REGION)


@dataclass
class FifoQueues:
    queue_url: str
    dlq_url: str
    sqs: Any

    def drain(self, url: str | None = None, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Receive and delete every message of a queue (default: the inbound queue), in the
        order SQS hands them out. Deleting is what lets a FIFO queue release the next message
        of the same group."""
        queue_url = url or self.queue_url
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                break
            messages.extend(batch)
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        return messages


@pytest.fixture
def fifo_queues(aws: str, monkeypatch: pytest.MonkeyPatch) -> FifoQueues:
    """A fresh inbound FIFO queue with its FIFO DLQ; QUEUE_URL points at it."""
    sqs = boto_client("sqs", aws)
    suffix = uuid.uuid4().hex[:12]
    dlq_url = sqs.create_queue(QueueName=f"dlq-{suffix}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=f"inbound-{suffix}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "180",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        },
    )["QueueUrl"]
    monkeypatch.setenv(ENV_QUEUE_URL, queue_url)
    monkeypatch.setenv(ENV_DEAD_LETTER_QUEUE_URL, dlq_url)
    return FifoQueues(queue_url=queue_url, dlq_url=dlq_url, sqs=sqs)


@dataclass
class StatusQueue:
    url: str
    arn: str
    sqs: Any

    def drain(self) -> list[dict[str, Any]]:
        return FifoQueues(queue_url=self.url, dlq_url="", sqs=self.sqs).drain()


@pytest.fixture
def status_queue(aws: str, monkeypatch: pytest.MonkeyPatch) -> StatusQueue:
    """A fresh standard status queue; STATUS_QUEUE_URL points at it."""
    sqs = boto_client("sqs", aws)
    url = sqs.create_queue(
        QueueName=f"statuses-{uuid.uuid4().hex[:12]}", Attributes={"VisibilityTimeout": "180"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    monkeypatch.setenv(ENV_STATUS_QUEUE_URL, url)
    return StatusQueue(url=url, arn=arn, sqs=sqs)


@pytest.fixture
def whatsapp_secret(aws: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret with the contract's JSON keys; WHATSAPP_SECRET_ID points at it."""
    secrets = boto_client("secretsmanager", aws)
    name = f"whatsapp-relay-test-{uuid.uuid4().hex[:12]}"
    secrets.create_secret(
        Name=name,
        SecretString=json.dumps(
            {
                SECRET_KEY_APP_SECRET: APP_SECRET,
                SECRET_KEY_VERIFY_TOKEN: VERIFY_TOKEN,
                SECRET_KEY_ACCESS_TOKEN: ACCESS_TOKEN,
            }
        ),
    )
    monkeypatch.setenv(ENV_SECRET_ID, name)
    return name


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


# --- figures a suite reports (record_property("fault_suite", text)), shown after the run ------
# Through the reports, so they reach the terminal from pytest-xdist's workers too.
_REPORTED_FIGURES = ("fault_suite",)
_figures: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _figures.extend(
            (report.nodeid, str(value))
            for name, value in report.user_properties
            if name in _REPORTED_FIGURES
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for nodeid, text in _figures:
        terminalreporter.section(f"figures: {nodeid}", sep="-")
        terminalreporter.write_line(text)
