"""Builds the ingest's adapters from the current settings; one instance per configuration."""

from __future__ import annotations

from functools import lru_cache

from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_publisher import SqsFifoPublisher
from functions.common import aws_clients
from functions.common.settings import IngestSettings


def credentials() -> SecretsManagerCredentials:
    return _credentials(IngestSettings.from_env().secret_id)


def publisher() -> SqsFifoPublisher:
    return SqsFifoPublisher(aws_clients.client("sqs"), IngestSettings.from_env().queue_url)


@lru_cache(maxsize=4)
def _credentials(secret_id: str) -> SecretsManagerCredentials:
    # Cached so the forced-refresh rate limit holds across invocations.
    return SecretsManagerCredentials(secret_id)
