"""Typed configuration, read from the environment and validated on every invocation's entry.

Reading a handful of variables costs microseconds; reading them per invocation (rather than once
at import) means a process whose environment changes - a test, the local pipeline - never runs
with stale settings, and a misconfigured function answers with a clear error, not a KeyError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from functions.common.names import (
    DEFAULT_GRAPH_API_URL,
    DEFAULT_GRAPH_API_VERSION,
    DEFAULT_MAX_ATTEMPTS,
    ENV_BURST_WINDOW_SECONDS,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_EVENT_BUS_NAME,
    ENV_EVENT_DETAIL,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
    ENV_REPLY_HANDLER,
    ENV_SECRET_ID,
    ENV_STATUS_QUEUE_URL,
    EVENT_DETAIL_FULL,
    EVENT_DETAIL_MINIMAL,
    MAX_BURST_WINDOW_SECONDS,
)

# `package.module:function`: dotted Python identifiers, a colon, one identifier.
_HANDLER_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)


class ConfigurationError(Exception):
    """A required setting is missing or malformed; the message names it (never a secret)."""


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@dataclass(frozen=True, slots=True)
class IngestSettings:
    queue_url: str
    secret_id: str
    status_queue_url: str | None = None  # None: statuses are counted, not followed

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IngestSettings:
        return cls(
            queue_url=_fifo_url(environ, ENV_QUEUE_URL),
            secret_id=_required(environ, ENV_SECRET_ID),
            status_queue_url=_standard_url(environ, ENV_STATUS_QUEUE_URL),
        )


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    secret_id: str
    idempotency_table: str
    graph_api_url: str
    graph_api_version: str
    queue_url: str | None
    dead_letter_queue_url: str
    max_attempts: int
    status_queue_url: str | None = None
    reply_handler: str | None = None  # `module.path:function`, validated shape
    event_bus_name: str | None = None  # name or ARN; None: no events
    event_content: bool = False  # EVENT_DETAIL=full
    burst_window_seconds: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ConsumerSettings:
        graph_api_url = (environ.get(ENV_GRAPH_API_URL) or DEFAULT_GRAPH_API_URL).rstrip("/")
        if not graph_api_url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{ENV_GRAPH_API_URL} must be an http(s) URL")
        return cls(
            secret_id=_required(environ, ENV_SECRET_ID),
            idempotency_table=_required(environ, ENV_IDEMPOTENCY_TABLE),
            graph_api_url=graph_api_url,
            graph_api_version=(
                environ.get(ENV_GRAPH_API_VERSION) or DEFAULT_GRAPH_API_VERSION
            ).strip("/"),
            queue_url=environ.get(ENV_QUEUE_URL) or None,
            dead_letter_queue_url=_fifo_url(environ, ENV_DEAD_LETTER_QUEUE_URL),
            max_attempts=_positive_int(environ, ENV_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
            status_queue_url=_standard_url(environ, ENV_STATUS_QUEUE_URL),
            reply_handler=_handler_spec(environ),
            event_bus_name=environ.get(ENV_EVENT_BUS_NAME, "").strip() or None,
            event_content=_event_detail(environ) == EVENT_DETAIL_FULL,
            burst_window_seconds=_burst_window(environ),
        )


def _burst_window(environ: Mapping[str, str]) -> int:
    raw = environ.get(ENV_BURST_WINDOW_SECONDS, "").strip() or "0"
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_BURST_WINDOW_SECONDS:
        raise ConfigurationError(
            f"{ENV_BURST_WINDOW_SECONDS} must be a whole number from 0 to "
            f"{MAX_BURST_WINDOW_SECONDS}"
        )
    return int(raw)


def _event_detail(environ: Mapping[str, str]) -> str:
    detail = environ.get(ENV_EVENT_DETAIL, "").strip().lower() or EVENT_DETAIL_MINIMAL
    if detail not in (EVENT_DETAIL_MINIMAL, EVENT_DETAIL_FULL):
        raise ConfigurationError(
            f"{ENV_EVENT_DETAIL} must be {EVENT_DETAIL_MINIMAL} or {EVENT_DETAIL_FULL}"
        )
    return detail


def split_handler_spec(spec: str) -> tuple[str, str]:
    """`package.module:function` -> (module, function); ValueError on any other shape."""
    if not _HANDLER_SPEC.fullmatch(spec):
        raise ValueError(f"{spec!r} is not module.path:function")
    module, _, function = spec.partition(":")
    return module, function


def _handler_spec(environ: Mapping[str, str]) -> str | None:
    spec = environ.get(ENV_REPLY_HANDLER, "").strip()
    if not spec:
        return None
    try:
        split_handler_spec(spec)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_REPLY_HANDLER} must be module.path:function (e.g. mybot.replies:handle)"
        ) from None
    return spec


def _fifo_url(environ: Mapping[str, str], name: str) -> str:
    url = _required(environ, name)
    if not url.endswith(".fifo"):
        raise ConfigurationError(f"{name} must be the URL of a FIFO queue (….fifo)")
    return url


def status_queue_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """STATUS_QUEUE_URL alone (the ingest's status publisher needs nothing else)."""
    return _standard_url(environ, ENV_STATUS_QUEUE_URL)


def _standard_url(environ: Mapping[str, str], name: str) -> str | None:
    """An optional standard (not FIFO) queue's URL."""
    url = environ.get(name, "").strip()
    if url.endswith(".fifo"):
        raise ConfigurationError(f"{name} must be the URL of a standard queue, not a FIFO one")
    return url or None


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a whole number of at least 1")
    return int(raw)
