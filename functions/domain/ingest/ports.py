"""What the ingest use case needs from outside besides the credentials (those are shared with the
consumer: `functions.domain.whatsapp.credentials`): durable queues for the records - one for
inbound messages, one for the statuses of our own messages.

Each port names the one exception its implementations raise, so callers never catch botocore's
exceptions (or `Exception`).
"""

from collections.abc import Callable, Sequence
from typing import Protocol

from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus


class PublishFailed(Exception):
    """Not every record was accepted by the queue; `accepted` of them were."""

    def __init__(self, message: str, *, accepted: int, error_code: str) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.error_code = error_code


class MessagePublisher(Protocol):
    def publish(
        self, records: Sequence[QueuedRecord], *, remaining_seconds: Callable[[], float]
    ) -> None:
        """Durably queue every record, each conversation's in the order given, or raise
        `PublishFailed`. `remaining_seconds()` is the time left to do it: no call to the queue
        starts that could outlast it."""
        ...


class StatusPublisher(Protocol):
    def publish(
        self, statuses: Sequence[QueuedStatus], *, remaining_seconds: Callable[[], float]
    ) -> None:
        """Durably queue every status record (in no particular order), or raise
        `PublishFailed`; like `MessagePublisher.publish` within `remaining_seconds()`."""
        ...
