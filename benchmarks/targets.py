"""The one place the benchmarks reach inside `functions/` beyond the entry points (the runtime
contract): the ingest use case, and the ingest's queue port for an in-memory queue. Module paths
inside `functions/` move; when they do, this file is the one to edit."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def accept_delivery() -> Callable[..., Any]:
    """`accept_delivery(body, signature_header, *, credentials, publisher, now)`: verify,
    parse and hand every inbound message to `publisher.publish(records)`."""
    for module in ("functions.domain.ingest.accept", "functions.domain.ingest"):
        try:
            found: Callable[..., Any] = importlib.import_module(module).accept_delivery
        except (ImportError, AttributeError):
            continue
        return found
    raise ImportError("accept_delivery is in neither known module: update benchmarks/targets.py")


@dataclass(frozen=True)
class Credentials:
    """Duck-typed like the domain's credentials: what the use case reads."""

    app_secret: str
    verify_token: str
    access_token: str


class FixedCredentials:
    """The credentials port, answering from memory (no rotation)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def current(self) -> Credentials:
        return self._credentials

    def refreshed(self) -> Credentials | None:
        return None


class InMemoryQueue:
    """The queue port in memory: serialises each record as the SQS adapter would and keeps it."""

    def __init__(self) -> None:
        self.records: list[str] = []

    def publish(self, records: Any, *, remaining_seconds: Any = None) -> None:
        """The port's `publish` (its deadline is moot in memory)."""
        self.records.extend(record.to_json() for record in records)


def use_in_memory_queue(queue: InMemoryQueue) -> None:
    """Point the ingest handler's queue port at `queue` (instead of SQS)."""
    wiring = importlib.import_module("functions.ingest.wiring")
    setattr(wiring, "publisher", lambda: queue)  # noqa: B010 - a module found by name
