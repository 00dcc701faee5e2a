"""Builds the consumer's adapters from the current settings: the one place that creates its AWS
clients.

Settings are read per invocation (tests and the local pipeline change the environment between
runs); adapters, the connection pool and the parsed reply rules are cached per configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters import aws
from functions.adapters.dead_letters import SqsDeadLetters
from functions.adapters.graph_client import DeadlineBoundGraph, GraphClient
from functions.adapters.ledger import DynamoDbLedger
from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_visibility import SqsVisibility
from functions.common.names import ENV_REPLY_RULES_PATH
from functions.common.settings import ConsumerSettings
from functions.domain.consumer.consume import Consumer
from functions.domain.consumer.reply_rules import ReplyRules, load_rules

DEFAULT_RULES_PATH: Final = Path(__file__).with_name("reply_rules.json")
# A conversation's later records start only with this much of the invocation left (see
# `consume._consume_group`: twice the slowest record so far, if that is more).
MIN_SECONDS_TO_START: Final = 1.0
MAX_CONCURRENT_CONVERSATIONS: Final = 10  # an SQS batch holds at most 10 records


def consumer(context: LambdaContext) -> Consumer:
    settings = ConsumerSettings.from_env()
    sqs = aws.sqs()
    return Consumer(
        graph=DeadlineBoundGraph(
            _graph(
                settings.graph_api_url,
                settings.graph_api_version,
                _credentials(aws.secretsmanager(), settings.secret_id),
            ),
            remaining_seconds=_remaining(context),
        ),
        ledger=DynamoDbLedger(aws.dynamodb(), settings.idempotency_table),
        dead_letters=SqsDeadLetters(sqs, settings.dead_letter_queue_url),
        visibility=SqsVisibility(sqs, settings.queue_url, settings.status_queue_url),
        rules=reply_rules(),
        clock=lambda: datetime.now(UTC),
        remaining_seconds=_remaining(context),
        max_workers=MAX_CONCURRENT_CONVERSATIONS,
        min_seconds_to_start=MIN_SECONDS_TO_START,
        max_attempts=settings.max_attempts,
    )


def reply_rules() -> ReplyRules:
    """The rules file named by REPLY_RULES_PATH, else the shipped one; re-read when it changes."""
    path = Path(os.environ.get(ENV_REPLY_RULES_PATH) or DEFAULT_RULES_PATH)
    return _rules(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _rules(path: str, mtime_ns: int) -> ReplyRules:
    return load_rules(Path(path).read_text(encoding="utf-8"))


def _remaining(context: LambdaContext) -> Callable[[], float]:
    return lambda: context.get_remaining_time_in_millis() / 1000


@lru_cache(maxsize=4)
def _graph(base_url: str, version: str, credentials: SecretsManagerCredentials) -> GraphClient:
    return GraphClient(base_url=base_url, version=version, credentials=credentials)


@lru_cache(maxsize=4)
def _credentials(secrets_client: Any, secret_id: str) -> SecretsManagerCredentials:
    # Only Meta's 190 (token expired) forces a refresh here, never a stranger on the internet:
    # re-read the secret on every one, so a rotated token is used at once.
    return SecretsManagerCredentials(secrets_client, secret_id, min_seconds_between_refreshes=0.0)
