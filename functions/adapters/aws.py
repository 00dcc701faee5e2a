"""boto3 clients for the wiring modules, which are the only callers: adapters receive the client
they use in their constructor and never build one.

One botocore session serves every client of the execution environment (a session per client would
rescan the service list and reload the endpoint data each time). Clients are cached per service,
endpoint, region and call limits, read when asked for, so the standard `AWS_ENDPOINT_URL*` /
`AWS_REGION` variables can point them at an emulator at any time (tests start one per session)
and nothing is built at import time. boto3 is imported lazily: it is most of a cold start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# botocore standard mode waits up to rand(0, 1) * 2^(n-1) s before retry n (throttling).
_MAX_BACKOFF_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How long one AWS API call may take: botocore's timeouts and its attempts (standard mode:
    throttling and transient errors are retried with backoff)."""

    connect_timeout_seconds: float
    read_timeout_seconds: float
    total_attempts: int

    @property
    def longest_call_seconds(self) -> float:
        """Every attempt timing out, and the longest backoff before each retry. (A service may
        stretch a backoff with `x-amz-retry-after`; SQS and Secrets Manager do not send it.)"""
        backoff = sum(
            min(2.0 ** (retry - 1), _MAX_BACKOFF_SECONDS) for retry in range(1, self.total_attempts)
        )
        return self.total_attempts * (self.connect_timeout_seconds + self.read_timeout_seconds) + (
            backoff
        )


# The consumer's calls: patient, since SQS redelivers anything its 30 s timeout cuts short.
CONSUMER_LIMITS = CallLimits(connect_timeout_seconds=2, read_timeout_seconds=5, total_attempts=4)
# The ingest must answer within its 10 s timeout (and API Gateway's 29 s): one attempt of at most
# 3 s, and the publisher retries refused records itself while the invocation's time allows. SQS
# answers SendMessageBatch in tens of milliseconds; a sick endpoint costs a 503 that Meta retries.
INGEST_LIMITS = CallLimits(connect_timeout_seconds=1, read_timeout_seconds=2, total_attempts=1)


def sqs(limits: CallLimits = CONSUMER_LIMITS) -> SQSClient:
    return cast("SQSClient", client("sqs", limits))


def dynamodb(limits: CallLimits = CONSUMER_LIMITS) -> DynamoDBClient:
    return cast("DynamoDBClient", client("dynamodb", limits))


def secretsmanager(limits: CallLimits = CONSUMER_LIMITS) -> SecretsManagerClient:
    return cast("SecretsManagerClient", client("secretsmanager", limits))


def events(limits: CallLimits = CONSUMER_LIMITS) -> EventBridgeClient:
    return cast("EventBridgeClient", client("events", limits))


def client(service: str, limits: CallLimits = CONSUMER_LIMITS) -> Any:
    """A cached boto3 client for `service`, bound to the endpoint configured right now."""
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(service, endpoint, region, limits)


@lru_cache(maxsize=16)
def _client(service: str, endpoint: str | None, region: str | None, limits: CallLimits) -> Any:
    from botocore.config import Config

    config = Config(
        connect_timeout=limits.connect_timeout_seconds,
        read_timeout=limits.read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": limits.total_attempts},
        max_pool_connections=16,
    )
    make_client: Any = _session().client  # typed per service by the accessors above
    return make_client(service, endpoint_url=endpoint, region_name=region, config=config)


@lru_cache(maxsize=1)
def _session() -> Any:
    import boto3

    return boto3.session.Session()
