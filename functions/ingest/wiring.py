"""Builds the ingest's adapters from the current settings: the one place that creates its AWS
clients. Adapters live as long as the execution environment, one per configuration."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters import aws
from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_publisher import SqsFifoPublisher, SqsStatusPublisher
from functions.common.settings import IngestSettings, status_queue_url

# Left of the invocation for answering once the queue gave up: the response, the log lines, the
# metrics flush.
ANSWER_MARGIN_SECONDS: Final = 0.5


def credentials() -> SecretsManagerCredentials:
    return _credentials(aws.secretsmanager(aws.INGEST_LIMITS), IngestSettings.from_env().secret_id)


def publisher() -> SqsFifoPublisher:
    return SqsFifoPublisher(
        aws.sqs(aws.INGEST_LIMITS),
        IngestSettings.from_env().queue_url,
        longest_call_seconds=aws.INGEST_LIMITS.longest_call_seconds,
    )


def remaining_seconds(context: LambdaContext) -> Callable[[], float]:
    """The time the use case may spend: what the invocation has left, less the answer's share."""
    return lambda: context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS


def status_publisher() -> SqsStatusPublisher | None:
    """The status queue's publisher, or None when no status queue is configured."""
    url = status_queue_url()
    if not url:
        return None
    return SqsStatusPublisher(
        aws.sqs(aws.INGEST_LIMITS),
        url,
        longest_call_seconds=aws.INGEST_LIMITS.longest_call_seconds,
    )


@lru_cache(maxsize=4)
def _credentials(secrets_client: Any, secret_id: str) -> SecretsManagerCredentials:
    # Cached so the secret's cache and the forced-refresh rate limit hold across invocations.
    return SecretsManagerCredentials(secrets_client, secret_id)
