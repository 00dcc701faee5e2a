"""Typed configuration, read from the environment and validated on every invocation's entry.

Reading a handful of variables costs microseconds; reading them per invocation (rather than once
at import) means a process whose environment changes - a test, the local pipeline - never runs
with stale settings, and a misconfigured function answers with a clear error, not a KeyError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from functions.common.names import (
    DEFAULT_GRAPH_API_URL,
    DEFAULT_GRAPH_API_VERSION,
    DEFAULT_MAX_ATTEMPTS,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
    ENV_SECRET_ID,
    ENV_STATUS_QUEUE_URL,
)


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
        )


def _fifo_url(environ: Mapping[str, str], name: str) -> str:
    url = _required(environ, name)
    if not url.endswith(".fifo"):
        raise ConfigurationError(f"{name} must be the URL of a FIFO queue (….fifo)")
    return url


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
