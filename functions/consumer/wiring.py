"""Builds the consumer's adapters from the current settings: the one place that creates its AWS
clients, and that imports the user's reply handler.

Settings are read per invocation (tests and the local pipeline change the environment between
runs); adapters, the connection pool, the parsed reply rules and the reply handler are cached per
configuration, the rules and the handler until their file changes.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters import aws
from functions.adapters.dead_letters import SqsDeadLetters
from functions.adapters.event_bus import EventBridgePublisher
from functions.adapters.graph_client import DeadlineBoundGraph, GraphClient
from functions.adapters.ledger import DynamoDbLedger
from functions.adapters.secrets import SecretsManagerCredentials
from functions.adapters.sqs_visibility import SqsVisibility
from functions.common.names import ENV_REPLY_RULES_PATH
from functions.common.settings import ConfigurationError, ConsumerSettings, split_handler_spec
from functions.domain.consumer.consume import Consumer
from functions.domain.consumer.ports import ReplyHandler
from functions.domain.consumer.relay_events import RelayEvents
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
        reply_handler=reply_handler(settings.reply_handler),
        events=_events(settings),
        burst_window_seconds=settings.burst_window_seconds,
    )


def _events(settings: ConsumerSettings) -> RelayEvents | None:
    if settings.event_bus_name is None:
        return None
    publisher = EventBridgePublisher(aws.events(), settings.event_bus_name)
    return RelayEvents(publisher, include_content=settings.event_content)


def reply_rules() -> ReplyRules:
    """The rules file named by REPLY_RULES_PATH, else the shipped one; re-read when it changes."""
    path = Path(os.environ.get(ENV_REPLY_RULES_PATH) or DEFAULT_RULES_PATH)
    return _rules(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _rules(path: str, mtime_ns: int) -> ReplyRules:
    return load_rules(Path(path).read_text(encoding="utf-8"))


class ReplyHandlerUnavailable(ConfigurationError):
    """REPLY_HANDLER names a module that does not import or a function it lacks."""


_handler_lock = threading.Lock()
_handler_modules: dict[str, tuple[ModuleType, int | None]] = {}  # module -> (module, mtime_ns)


def reply_handler(spec: str | None) -> ReplyHandler | None:
    """The function `module.path:function` names, imported on first use and re-imported when
    its module's file changes (as the rules file is re-read), so `make run` picks up an edit.
    Only that module is re-imported: helpers it imports keep their first version."""
    if spec is None:
        return None
    module_name, function_name = split_handler_spec(spec)
    with _handler_lock:
        module = _current_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ReplyHandlerUnavailable(
            f"REPLY_HANDLER {spec}: module {module_name} has no function {function_name}"
        )
    handler: ReplyHandler = function
    return handler


def _current_module(name: str) -> ModuleType:
    known = _handler_modules.get(name)
    try:
        if known is None:
            module = importlib.import_module(name)
        else:
            module = known[0]
            if _mtime_ns(module) != known[1]:
                module = importlib.reload(module)
    except Exception as error:  # user code: whatever its import raises is a configuration error
        # Until the file changes again, every invocation tries again and fails the same way.
        raise ReplyHandlerUnavailable(
            f"REPLY_HANDLER: module {name} cannot be imported: {type(error).__name__}: {error}"
        ) from error
    _handler_modules[name] = (module, _mtime_ns(module))
    return module


def _mtime_ns(module: ModuleType) -> int | None:
    try:
        return os.stat(module.__file__ or "").st_mtime_ns
    except OSError:
        return None


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
