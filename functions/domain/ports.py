"""What the domain needs from the outside world, as Protocols; adapters implement them.

Each port names the one exception its implementations raise, so callers never catch botocore's
or urllib3's exceptions (or `Exception`).
"""

from collections.abc import Sequence
from typing import Protocol

from functions.domain.credentials import WhatsAppCredentials
from functions.domain.queued_record import QueuedRecord


class CredentialsUnavailable(Exception):
    """The credentials could not be read (secret missing, unreadable, or the store is down)."""


class PublishFailed(Exception):
    """Not every record was accepted by the queue; `accepted` of them were."""

    def __init__(self, message: str, *, accepted: int, error_code: str) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.error_code = error_code


class CredentialSource(Protocol):
    def current(self) -> WhatsAppCredentials:
        """The cached credentials (fetched on first use). Raises `CredentialsUnavailable`."""
        ...

    def refreshed(self) -> WhatsAppCredentials | None:
        """Fresh credentials after a mismatch (the secret may have been rotated), or None when
        a refresh happened too recently to be worth another call."""
        ...


class MessagePublisher(Protocol):
    def publish(self, records: Sequence[QueuedRecord]) -> None:
        """Durably queue every record, or raise `PublishFailed`."""
        ...
