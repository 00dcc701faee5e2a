"""The CDK context keys of this app (`-c key=value`, or `context` in cdk.json), checked at synth.

Every key is known, every value parsed and range-checked here, so a typo or a malformed value
stops `make synth` / `make deploy` with one line naming the key and what it takes, before anything
is built. Keys that belong to CDK itself (feature flags `@aws-cdk/...:...`, the `aws:cdk:...` keys
the CLI passes, lookup caches `<provider>:account=...`) are left to CDK.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from functions.common.names import (
    EVENT_DETAIL_FULL,
    EVENT_DETAIL_MINIMAL,
    MAX_BURST_WINDOW_SECONDS,
)
from infra.constants import (
    ALARM_EMAIL_NONE,
    DATA_REMOVAL_DESTROY,
    DATA_REMOVAL_RETAIN,
    EMAIL_ADDRESS,
    INBOUND_RETENTION_DAYS,
)
from infra.function_factory import LOG_LEVELS
from infra.reply_handler_check import ReplyHandlerSpecError, locate_handler
from infra.reply_rules_check import ReplyRulesFileError, repository_relative
from infra.stack import LOG_RETENTIONS

# Context keys CDK's CLI writes itself without a colon (`cdk acknowledge` puts this one in
# cdk.context.json); every other key of CDK's has a colon in it.
CDK_KEYS_WITHOUT_COLON: Final = frozenset({"acknowledged-issue-numbers"})

# SQS: maxReceiveCount 1..1000; an event source mapping runs 2..1000 concurrent batches.
MAX_RECEIVE_COUNT_RANGE: Final = (1, 1000)
MAX_CONCURRENCY_RANGE: Final = (2, 1000)
# A message's own attempts before the consumer dead-letters it; maxReceiveCount must stay at or
# above 10 x this ("Retry budgets are the message's own; SQS redrive is the backstop" in
# docs/decisions.md).
MAX_ATTEMPTS_RANGE: Final = (1, 100)
# The alarm's metric has one-minute periods; a threshold past the queue's retention never fires.
OLDEST_MESSAGE_ALARM_RANGE: Final = (60, INBOUND_RETENTION_DAYS * 86_400 - 1)

_GRAPH_API_VERSION = re.compile(r"v\d+\.\d+")
_REGIONAL_WEB_ACL_ARN = re.compile(
    r"arn:aws[a-z-]*:wafv2:[a-z0-9-]+:\d{12}:regional/webacl/[A-Za-z0-9_-]+/[A-Za-z0-9-]+"
)
_WHOLE_NUMBER = re.compile(r"\d+")
# An EventBridge bus by name (partner buses have a slash) or by ARN (another account's bus).
_EVENT_BUS = re.compile(
    r"[/.\-_A-Za-z0-9]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[/.\-_A-Za-z0-9]{1,256}"
)


class ContextError(ValueError):
    """A context key or value this app does not accept; the message is one line for the user."""


class _Invalid(ValueError):
    """A value a parser refuses (the key's `expected` text says what it takes)."""


@dataclass(frozen=True, slots=True)
class ContextKey:
    name: str  # the key as typed after -c
    field: str  # the RelayProps field it sets
    expected: str  # what it takes, in words, for the error line
    parse: Callable[[object], object]  # raises _Invalid
    required: bool = False


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Invalid
    return raw.strip()


def _whole_number(low: int, high: int | None = None) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise _Invalid
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and _WHOLE_NUMBER.fullmatch(raw.strip()):
            value = int(raw.strip())
        else:
            raise _Invalid
        if value < low or (high is not None and value > high):
            raise _Invalid
        return value

    return parse


def _between(low: int, high: int | None = None) -> str:
    return f"a whole number from {low} to {high}" if high else f"a whole number, at least {low}"


def _matching(pattern: re.Pattern[str]) -> Callable[[object], object]:
    def parse(raw: object) -> str:
        text = _text(raw)
        if not pattern.fullmatch(text):
            raise _Invalid
        return text

    return parse


def _alarm_email(raw: object) -> str | None:
    text = _text(raw)
    if text.lower() == ALARM_EMAIL_NONE:
        return None
    if not EMAIL_ADDRESS.fullmatch(text):
        raise _Invalid
    return text


def _log_level(raw: object) -> str:
    text = _text(raw).upper()
    if text not in LOG_LEVELS:
        raise _Invalid
    return text


def _log_retention(raw: object) -> int:
    value = _whole_number(1)(raw)
    if value not in LOG_RETENTIONS:
        raise _Invalid
    return value


def _retain_data(raw: object) -> bool:
    text = _text(raw).lower()
    if text not in {DATA_REMOVAL_RETAIN, DATA_REMOVAL_DESTROY}:
        raise _Invalid
    return text == DATA_REMOVAL_RETAIN


def _rules_file(raw: object) -> str:
    try:
        return repository_relative(_text(raw))
    except ReplyRulesFileError as error:
        raise _Invalid(str(error)) from None


def _event_detail(raw: object) -> str:
    text = _text(raw).lower()
    if text not in (EVENT_DETAIL_MINIMAL, EVENT_DETAIL_FULL):
        raise _Invalid
    return text


def _reply_handler(raw: object) -> str:
    try:
        return locate_handler(_text(raw)).spec
    except ReplyHandlerSpecError as error:
        raise _Invalid(str(error)) from None


CONTEXT_KEYS: Final = (
    ContextKey(
        "alarmEmail",
        "alarm_email",
        f"an e-mail address for the alarms (-c alarmEmail=ops@example.com), or "
        f"-c alarmEmail={ALARM_EMAIL_NONE} to deploy with nobody notified",
        _alarm_email,
        required=True,
    ),
    ContextKey(
        "webAclArn",
        "web_acl_arn",
        "the ARN of a regional WAFv2 web ACL (arn:aws:wafv2:<region>:<account>:regional/webacl/"
        "<name>/<id>)",
        _matching(_REGIONAL_WEB_ACL_ARN),
    ),
    ContextKey(
        "graphApiVersion",
        "graph_api_version",
        "a Graph API version like v25.0",
        _matching(_GRAPH_API_VERSION),
    ),
    ContextKey("logLevel", "log_level", f"one of {', '.join(LOG_LEVELS)}", _log_level),
    ContextKey(
        "maxReceiveCount",
        "max_receive_count",
        _between(*MAX_RECEIVE_COUNT_RANGE),
        _whole_number(*MAX_RECEIVE_COUNT_RANGE),
    ),
    ContextKey(
        "maxAttempts",
        "max_attempts",
        _between(*MAX_ATTEMPTS_RANGE),
        _whole_number(*MAX_ATTEMPTS_RANGE),
    ),
    ContextKey(
        "consumerMaxConcurrency",
        "consumer_max_concurrency",
        _between(*MAX_CONCURRENCY_RANGE),
        _whole_number(*MAX_CONCURRENCY_RANGE),
    ),
    ContextKey("apiRateLimitPerSecond", "api_rate_limit_per_second", _between(1), _whole_number(1)),
    ContextKey("apiBurstLimit", "api_burst_limit", _between(1), _whole_number(1)),
    ContextKey(
        "logRetentionDays",
        "log_retention_days",
        f"one of {', '.join(str(days) for days in LOG_RETENTIONS)} (days)",
        _log_retention,
    ),
    ContextKey(
        "oldestMessageAlarmSeconds",
        "oldest_message_alarm_seconds",
        _between(*OLDEST_MESSAGE_ALARM_RANGE),
        _whole_number(*OLDEST_MESSAGE_ALARM_RANGE),
    ),
    ContextKey(
        "badSignatureAlarmCount", "bad_signature_alarm_count", _between(1), _whole_number(1)
    ),
    ContextKey(
        "dataRemovalPolicy",
        "retain_data",
        f"{DATA_REMOVAL_RETAIN} (keep the queues, table and secret when the stack goes) or "
        f"{DATA_REMOVAL_DESTROY} (a throw-away stack)",
        _retain_data,
    ),
    ContextKey(
        "replyRulesFile",
        "reply_rules_file",
        "a reply rules JSON file inside this repository, as a path relative to it",
        _rules_file,
    ),
    ContextKey(
        "replyHandler",
        "reply_handler",
        "module.path:function, a Python function inside this repository (docs/reply-handler.md)",
        _reply_handler,
    ),
    ContextKey(
        "burstWindowSeconds",
        "burst_window_seconds",
        f"{_between(0, MAX_BURST_WINDOW_SECONDS)} (seconds; 0 answers every message on its own)",
        _whole_number(0, MAX_BURST_WINDOW_SECONDS),
    ),
    ContextKey(
        "eventBusName",
        "event_bus_name",
        "the name or ARN of an existing EventBridge event bus (docs/events.md)",
        _matching(_EVENT_BUS),
    ),
    ContextKey(
        "eventDetail",
        "event_detail",
        f"{EVENT_DETAIL_MINIMAL} (ids, types and times only) or {EVENT_DETAIL_FULL} (also phone "
        "numbers and message content)",
        _event_detail,
    ),
)
_BY_NAME: Final = {key.name: key for key in CONTEXT_KEYS}


def is_cdk_key(name: str) -> bool:
    """Feature flags (`@aws-cdk/core:...`), `aws:cdk:...` and lookup caches all have a colon."""
    return ":" in name or name.startswith("@") or name in CDK_KEYS_WITHOUT_COLON


def settings_from_context(context: Mapping[str, object]) -> dict[str, object]:
    """RelayProps fields from the app's whole context; ContextError lists every problem found."""
    problems: list[str] = []
    for name in context:
        if name not in _BY_NAME and not is_cdk_key(name):
            problems.append(_unknown(name))
    settings: dict[str, object] = {}
    for key in CONTEXT_KEYS:
        raw = context.get(key.name)
        if raw is None or raw == "":
            if key.required:
                problems.append(f"context key {key.name} is required: {key.expected}")
            continue
        try:
            settings[key.field] = key.parse(raw)
        except _Invalid as error:
            why = f" ({error})" if str(error) else ""
            problems.append(f"context key {key.name}: expected {key.expected}, got {raw!r}{why}")
    if problems:
        raise ContextError("; ".join(problems))
    return settings


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
    if close:
        return f"unknown context key {name} (did you mean {close[0]}?)"
    return f"unknown context key {name}: this app takes {', '.join(_BY_NAME)} (docs/deploy.md)"
