"""In-memory stand-ins for the domain's ports: they record what happened."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.credentials import CredentialsUnavailable, WhatsAppCredentials
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass
class FakeCredentials:
    """A `CredentialSource`: `stored` is what the secret holds now, `cached` what was read."""

    stored: WhatsAppCredentials
    cached: WhatsAppCredentials | None = None
    refresh_allowed: bool = True
    unavailable: bool = False
    reads: int = 0

    def current(self) -> WhatsAppCredentials:
        if self.unavailable:
            raise CredentialsUnavailable("secret store down")
        if self.cached is None:
            self.reads += 1
            self.cached = self.stored
        return self.cached

    def refreshed(self) -> WhatsAppCredentials | None:
        if not self.refresh_allowed:
            return None
        self.reads += 1
        self.cached = self.stored
        return self.cached


@dataclass
class FakePublisher:
    """A `MessagePublisher` that keeps what it was given, or fails when told to."""

    published: list[QueuedRecord] = field(default_factory=list)
    fail_with: str | None = None
    deadlines: list[float] = field(default_factory=list)  # remaining seconds at each publish

    def publish(
        self,
        records: Sequence[QueuedRecord],
        *,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self.deadlines.append(remaining_seconds())
        if self.fail_with:
            raise PublishFailed("queue down", accepted=0, error_code=self.fail_with)
        self.published.extend(records)


@dataclass
class FakeStatusPublisher:
    """A `StatusPublisher` that keeps what it was given, or fails when told to."""

    published: list[QueuedStatus] = field(default_factory=list)
    fail_with: str | None = None
    deadlines: list[float] = field(default_factory=list)  # remaining seconds at each publish

    def publish(
        self,
        statuses: Sequence[QueuedStatus],
        *,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
    ) -> None:
        self.deadlines.append(remaining_seconds())
        if self.fail_with:
            raise PublishFailed("status queue down", accepted=0, error_code=self.fail_with)
        self.published.extend(statuses)


@dataclass
class ScriptedSqs:
    """A boto3 SQS client stand-in for `send_message_batch` that behaves like a FIFO queue
    judging each entry on its own: it fails chosen entries a set number of times (whatever their
    neighbours in the batch do), then accepts them; `accepted` is the queue's order. Every call
    is recorded; `on_call` runs before each (e.g. to move a fake clock)."""

    # deduplication id (a standard queue's entries: the body) -> failures left
    fail_times: dict[str, int] = field(default_factory=dict)
    sender_fault: bool = False
    raise_error: Exception | None = None
    on_call: Callable[[], None] | None = None
    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.on_call is not None:
            self.on_call()
        with self._lock:
            self.calls.append(Entries)
            if self.raise_error is not None:
                raise self.raise_error
            failed: list[dict[str, Any]] = []
            for entry in Entries:
                key = entry.get("MessageDeduplicationId", entry["MessageBody"])
                left = self.fail_times.get(key, 0)
                if left > 0:
                    self.fail_times[key] = left - 1
                    failed.append(
                        {
                            "Id": entry["Id"],
                            "Code": "InternalError",
                            "SenderFault": self.sender_fault,
                        }
                    )
                else:
                    self.accepted.append(entry)
            return {"Successful": [], "Failed": failed}

    def queued_order(self, group_id: str) -> list[str]:
        """The deduplication ids (wamids) of one conversation, in the order the queue holds them."""
        return [
            e["MessageDeduplicationId"] for e in self.accepted if e["MessageGroupId"] == group_id
        ]


def as_sqs(fake: ScriptedSqs) -> SQSClient:
    """The fake where a typed boto3 SQS client is expected (it implements what the code calls)."""
    return cast("SQSClient", fake)
