"""moto's server on loopback, holding the queue, dead-letter queue, table and secret the stack
creates, named and sized by the same constants (`infra.constants`) the CDK code uses."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import (
    DEAD_LETTER_QUEUE_NAME,
    DEFAULT_MAX_RECEIVE_COUNT,
    DLQ_RETENTION_DAYS,
    IDEMPOTENCY_PARTITION_KEY,
    IDEMPOTENCY_TABLE_NAME,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    INBOUND_QUEUE_NAME,
    INBOUND_RETENTION_DAYS,
    SECRET_NAME,
    STATUS_DEAD_LETTER_QUEUE_NAME,
    STATUS_QUEUE_NAME,
    STATUS_RETENTION_DAYS,
    VISIBILITY_TIMEOUT_SECONDS,
)
from local_pipeline.config import LOCAL_AWS_ENV, LOCAL_REGION

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class LocalResources:
    endpoint: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    table_name: str
    secret_id: str
    max_receive_count: int
    status_queue_url: str = ""
    status_dlq_url: str = ""


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client for moto's server with the local (fake) credentials."""
    import boto3

    make_client: Any = boto3.session.Session().client  # any service, so untyped
    return make_client(
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_AWS_ENV["AWS_SESSION_TOKEN"],
    )


def create_resources(
    endpoint: str,
    *,
    app_secret: str,
    verify_token: str,
    access_token: str,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    name_suffix: str = "",
) -> LocalResources:
    """Create (or find, if they exist) the stack's queues, table and secret on `endpoint`.

    `name_suffix` lets tests create several independent sets on one server.
    """
    queues = create_queues(
        endpoint,
        max_receive_count=max_receive_count,
        visibility_timeout_seconds=visibility_timeout_seconds,
        name_suffix=name_suffix,
    )

    table_name = _suffixed(IDEMPOTENCY_TABLE_NAME, name_suffix)
    dynamodb = aws_client("dynamodb", endpoint)
    if table_name not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=table_name,
            AttributeDefinitions=[
                {"AttributeName": IDEMPOTENCY_PARTITION_KEY, "AttributeType": "S"}
            ],
            KeySchema=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
        )

    secret_name = _suffixed(SECRET_NAME, name_suffix)
    secret_string = json.dumps(
        {
            SECRET_KEY_APP_SECRET: app_secret,
            SECRET_KEY_VERIFY_TOKEN: verify_token,
            SECRET_KEY_ACCESS_TOKEN: access_token,
        }
    )
    secrets = aws_client("secretsmanager", endpoint)
    existing = secrets.list_secrets(Filters=[{"Key": "name", "Values": [secret_name]}])
    if any(entry["Name"] == secret_name for entry in existing["SecretList"]):
        secrets.put_secret_value(SecretId=secret_name, SecretString=secret_string)
    else:
        secrets.create_secret(Name=secret_name, SecretString=secret_string)

    return LocalResources(
        endpoint=endpoint,
        queue_url=queues.queue_url,
        queue_arn=queues.queue_arn,
        dlq_url=queues.dlq_url,
        table_name=table_name,
        secret_id=secret_name,
        max_receive_count=max_receive_count,
        status_queue_url=queues.status_queue_url,
        status_dlq_url=queues.status_dlq_url,
    )


@dataclass(frozen=True, slots=True)
class Queues:
    queue_url: str
    queue_arn: str
    dlq_url: str
    status_queue_url: str = ""
    status_dlq_url: str = ""


def create_queues(
    endpoint: str,
    *,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    name_suffix: str = "",
    sqs: Any = None,
) -> Queues:
    """The inbound FIFO queue and its FIFO dead-letter queue, with the stack's redrive policy;
    the standard status queue and its dead-letter queue."""
    sqs = sqs or aws_client("sqs", endpoint)
    dlq_name = _suffixed(DEAD_LETTER_QUEUE_NAME, name_suffix)
    queue_name = _suffixed(INBOUND_QUEUE_NAME, name_suffix)
    dlq_url = sqs.create_queue(
        QueueName=dlq_name,
        Attributes={
            "FifoQueue": "true",
            "MessageRetentionPeriod": str(DLQ_RETENTION_DAYS * SECONDS_PER_DAY),
        },
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "MessageRetentionPeriod": str(INBOUND_RETENTION_DAYS * SECONDS_PER_DAY),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    status_dlq_url = sqs.create_queue(
        QueueName=_suffixed(STATUS_DEAD_LETTER_QUEUE_NAME, name_suffix),
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_DAYS * SECONDS_PER_DAY)},
    )["QueueUrl"]
    status_dlq_arn = sqs.get_queue_attributes(QueueUrl=status_dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    status_queue_url = sqs.create_queue(
        QueueName=_suffixed(STATUS_QUEUE_NAME, name_suffix),
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "MessageRetentionPeriod": str(STATUS_RETENTION_DAYS * SECONDS_PER_DAY),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": status_dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]

    return Queues(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        status_queue_url=status_queue_url,
        status_dlq_url=status_dlq_url,
    )


def _suffixed(name: str, suffix: str) -> str:
    if not suffix:
        return name
    if name.endswith(".fifo"):
        return f"{name.removesuffix('.fifo')}-{suffix}.fifo"
    return f"{name}-{suffix}"


class Emulator:
    """moto's threaded server on 127.0.0.1 (a free port); `start()` / `stop()`."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint = ""

    def start(self) -> str:
        from moto.server import ThreadedMotoServer

        # werkzeug logs one line per request to stderr: the console is for pipeline events.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
