"""Builds the ingest's adapters from the current settings: the one place that creates its AWS
clients. Adapters live as long as the execution environment, one per configuration."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from functions.adapters import aws
from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_publisher import SqsFifoPublisher
from functions.common.settings import IngestSettings


def credentials() -> SecretsManagerCredentials:
    return _credentials(aws.secretsmanager(), IngestSettings.from_env().secret_id)


def publisher() -> SqsFifoPublisher:
    return SqsFifoPublisher(aws.sqs(), IngestSettings.from_env().queue_url)


@lru_cache(maxsize=4)
def _credentials(secrets_client: Any, secret_id: str) -> SecretsManagerCredentials:
    # Cached so the secret's cache and the forced-refresh rate limit hold across invocations.
    return SecretsManagerCredentials(secrets_client, secret_id)
