"""Builds the ingest's adapters from the current settings: the one place that creates its AWS
clients. Adapters live as long as the execution environment, one per configuration."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from functions.adapters import aws
from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_publisher import SqsFifoPublisher, SqsStatusPublisher
from functions.common.settings import IngestSettings


def credentials() -> SecretsManagerCredentials:
    return _credentials(aws.secretsmanager(), IngestSettings.from_env().secret_id)


def publisher() -> SqsFifoPublisher:
    return SqsFifoPublisher(aws.sqs(), IngestSettings.from_env().queue_url)


def status_publisher() -> SqsStatusPublisher | None:
    """The status queue's publisher, or None when no status queue is configured."""
    url = IngestSettings.from_env().status_queue_url
    return SqsStatusPublisher(aws.sqs(), url) if url else None


@lru_cache(maxsize=4)
def _credentials(secrets_client: Any, secret_id: str) -> SecretsManagerCredentials:
    # Cached so the secret's cache and the forced-refresh rate limit hold across invocations.
    return SecretsManagerCredentials(secrets_client, secret_id)
