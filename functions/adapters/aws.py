"""boto3 clients for the wiring modules, which are the only callers: adapters receive the client
they use in their constructor and never build one.

One botocore session serves every client of the execution environment (a session per client would
rescan the service list and reload the endpoint data each time). Clients are cached per service,
endpoint and region, read when asked for, so the standard `AWS_ENDPOINT_URL*` / `AWS_REGION`
variables can point them at an emulator at any time (tests start one per session) and nothing is
built at import time. boto3 is imported lazily: it is most of a cold start.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# Meta waits about 1 s for an ack and retries anything slower: fail fast and let it retry,
# rather than hang on a sick endpoint. botocore's standard mode retries throttling with backoff.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 3


def sqs() -> SQSClient:
    return cast("SQSClient", client("sqs"))


def dynamodb() -> DynamoDBClient:
    return cast("DynamoDBClient", client("dynamodb"))


def secretsmanager() -> SecretsManagerClient:
    return cast("SecretsManagerClient", client("secretsmanager"))


def events() -> EventBridgeClient:
    return cast("EventBridgeClient", client("events"))


def client(service: str) -> Any:
    """A cached boto3 client for `service`, bound to the endpoint configured right now."""
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(service, endpoint, region)


@lru_cache(maxsize=16)
def _client(service: str, endpoint: str | None, region: str | None) -> Any:
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        max_pool_connections=16,
    )
    make_client: Any = _session().client  # typed per service by the accessors above
    return make_client(service, endpoint_url=endpoint, region_name=region, config=config)


@lru_cache(maxsize=1)
def _session() -> Any:
    import boto3

    return boto3.session.Session()
