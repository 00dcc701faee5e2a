"""The consumer's ports: the Graph API, the once-per-message guard, the reply ledger and the
queue's visibility control, with the one exception type each of them raises.

Adapters implement these (`functions/adapters/`); tests use in-memory fakes or the loopback fake
Graph API. Nothing here imports boto3 or urllib3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class GraphApiError(Exception):
    """A Graph API call that did not succeed, with everything Meta said about it.

    `code` is the `ErrorCode` metric dimension: Meta's `error.code` as text, or `http_<status>`
    for a non-JSON error body, `timeout` for a connect/read timeout, `network` for a refused or
    reset connection, `invalid_response` for a read receipt Meta answered `success: false`.
    """

    def __init__(
        self,
        code: str,
        *,
        message: str = "",
        http_status: int | None = None,
        meta_code: int | None = None,
        subcode: int | None = None,
        details: str = "",
        fbtrace_id: str | None = None,
        is_transient: bool | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(f"Graph API error {code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.meta_code = meta_code
        self.subcode = subcode
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.is_transient = is_transient
        self.retry_after_seconds = retry_after_seconds


class GraphApi(Protocol):
    def mark_read(self, phone_number_id: str, body: Mapping[str, Any]) -> None:
        """Post a read receipt (body from `outbound.mark_read_body`). Raises `GraphApiError`."""
        ...

    def send(self, phone_number_id: str, body: Mapping[str, Any]) -> str | None:
        """Send a message (body from `outbound.send_body`); returns the new message's wamid
        when the answer carries one. Raises `GraphApiError`."""
        ...


class StoreUnavailable(Exception):
    """The idempotency/ledger store could not be read or written."""


class AlreadyInProgress(Exception):
    """Another execution is handling the same wamid right now."""


@dataclass(frozen=True, slots=True)
class OnceResult:
    value: Mapping[str, Any]
    replayed: bool  # True: the work was done before; `value` is what it returned then


class OncePerMessage(Protocol):
    def run(self, key: str, work: Callable[[], Mapping[str, Any]]) -> OnceResult:
        """Run `work` unless it already completed for `key` (then replay its result).

        An exception from `work` is re-raised and leaves no record (a later attempt runs it
        again). Raises `AlreadyInProgress` or `StoreUnavailable`.
        """
        ...


class ReplyLedger(Protocol):
    def claim(self, wamid: str) -> bool:
        """Record that a reply to `wamid` is about to be sent. False if a claim already exists
        (an earlier attempt may have sent it). Raises `StoreUnavailable`."""
        ...

    def release(self, wamid: str) -> None:
        """Drop the claim: the Graph API refused the send, so a retry may send. Raises
        `StoreUnavailable`."""
        ...


@dataclass(frozen=True, slots=True)
class VisibilityChange:
    message_id: str
    receipt_handle: str
    event_source_arn: str
    timeout_seconds: int


class VisibilityControl(Protocol):
    def change(self, changes: Sequence[VisibilityChange]) -> list[str]:
        """Set each message's visibility timeout; returns the message ids that could not be
        changed (they reappear after the queue's default visibility timeout)."""
        ...
