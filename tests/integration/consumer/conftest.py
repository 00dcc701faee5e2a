"""Fixtures for the consumer against moto's server (SQS, DynamoDB, Secrets Manager) and the
fake Graph API on loopback."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.names import (
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_REPLY_RULES_PATH,
)
from infra.constants import IDEMPOTENCY_PARTITION_KEY, IDEMPOTENCY_TTL_ATTRIBUTE
from local_pipeline.fake_graph import FakeGraphApi
from tests.conftest import ACCESS_TOKEN, FifoQueues, boto_client, frozen_context

GRAPH_VERSION = "v25.0"


@pytest.fixture
def fake_graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraphApi]:
    with FakeGraphApi(expected_token=ACCESS_TOKEN) as graph:
        monkeypatch.setenv(ENV_GRAPH_API_URL, graph.url)
        monkeypatch.setenv(ENV_GRAPH_API_VERSION, GRAPH_VERSION)
        yield graph


@pytest.fixture
def idempotency_table(aws: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The contract's table (partition key `id`, TTL `expiration`); IDEMPOTENCY_TABLE names it."""
    dynamodb = boto_client("dynamodb", aws)
    name = f"idempotency-{uuid.uuid4().hex[:12]}"
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
    )
    monkeypatch.setenv(ENV_IDEMPOTENCY_TABLE, name)
    monkeypatch.delenv(ENV_REPLY_RULES_PATH, raising=False)
    return name


@dataclass
class Inbox:
    """Puts records on the moto FIFO queue and receives them as Lambda's poller would."""

    queues: FifoQueues
    arn: str

    def put(self, body: str, *, group: str = "conversation-1", dedup: str | None = None) -> None:
        self.queues.sqs.send_message(
            QueueUrl=self.queues.queue_url,
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=dedup or hashlib.sha256(body.encode()).hexdigest(),
        )

    def event(self, *, max_records: int = 10) -> dict[str, Any]:
        received: list[dict[str, Any]] = []
        while len(received) < max_records:
            batch = self.queues.sqs.receive_message(
                QueueUrl=self.queues.queue_url,
                MaxNumberOfMessages=max_records - len(received),
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                break
            received.extend(batch)
        return {"Records": [self._lambda_record(m) for m in received]}

    def delete_succeeded(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        """What Lambda's event source mapping does with a partial batch response."""
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for item in event["Records"]:
            if item["messageId"] not in failed:
                self.queues.sqs.delete_message(
                    QueueUrl=self.queues.queue_url, ReceiptHandle=item["receiptHandle"]
                )

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": "eu-west-1",
        }


@pytest.fixture
def inbox(fifo_queues: FifoQueues) -> Inbox:
    arn = fifo_queues.sqs.get_queue_attributes(
        QueueUrl=fifo_queues.queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    return Inbox(queues=fifo_queues, arn=arn)


@pytest.fixture
def consumer_env(
    fake_graph: FakeGraphApi,
    idempotency_table: str,
    whatsapp_secret: str,
    inbox: Inbox,
) -> FakeGraphApi:
    """Everything the consumer handler needs; returns the fake Graph API."""
    return fake_graph


def context(remaining_ms: int = 30_000) -> LambdaContext:
    """A fresh Lambda context (the handler's type; the fake quacks like it)."""
    return cast(LambdaContext, frozen_context(remaining_ms))


def dumps(document: Any) -> str:
    return json.dumps(document)
