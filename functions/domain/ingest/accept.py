"""The ingest use cases: Meta's subscription handshake, and accepting a webhook delivery.

A delivery is accepted only once its signature holds and every inbound message in it (and, when
a status queue is configured, every status of one of our messages) is durably queued; anything
less raises, so the entry point answers non-200 and Meta redelivers.
"""

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from functions.domain.ingest.ports import MessagePublisher, StatusPublisher
from functions.domain.ingest.signature import is_well_formed, signature_matches
from functions.domain.whatsapp.credentials import CredentialSource, WhatsAppCredentials
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus
from functions.domain.whatsapp.webhook import (
    InvalidPayload,
    ReceivedMessage,
    StatusUpdate,
    WebhookDelivery,
    parse_delivery,
)

SUBSCRIBE_MODE = "subscribe"


class VerificationRejected(Exception):
    """The GET handshake is not Meta subscribing with our verify token."""


class SignatureRejected(Exception):
    """`X-Hub-Signature-256` is missing, malformed or does not match the body."""


class BodyNotJson(InvalidPayload):
    """The signed body is not JSON at all."""


@dataclass(frozen=True, slots=True)
class DeliverySummary:
    """What a delivery held, for metrics: nothing here is personal data."""

    queued: tuple[ReceivedMessage, ...] = ()
    statuses_queued: int = 0  # statuses put on the status queue (0 when there is none)
    failed_statuses: tuple[StatusUpdate, ...] = ()
    statuses: Mapping[str, int] = field(default_factory=dict)  # by status
    delivery_failures: Mapping[str, int] = field(default_factory=dict)  # by ErrorCode
    webhook_errors: Mapping[str, int] = field(default_factory=dict)  # by ErrorCode
    ignored_fields: Mapping[str, int] = field(default_factory=dict)  # by field
    problems: tuple[str, ...] = ()  # malformed pieces skipped, by path (no content)


def verify_subscription(
    mode: str | None, token: str | None, challenge: str | None, credentials: CredentialSource
) -> str:
    """The challenge to echo back, when Meta is subscribing with our verify token."""
    if mode != SUBSCRIBE_MODE or challenge is None or token is None:
        raise VerificationRejected("not a subscription request with a verify token")
    if _with_rotation(credentials, lambda c: c.verify_token_matches(token)):
        return challenge
    raise VerificationRejected("the verify token does not match")


def accept_delivery(
    body: bytes,
    signature_header: str | None,
    *,
    credentials: CredentialSource,
    publisher: MessagePublisher,
    now: Callable[[], datetime],
    remaining_seconds: Callable[[], float] = lambda: math.inf,
    statuses: StatusPublisher | None = None,
) -> DeliverySummary:
    """Verify, parse and queue one webhook POST. Raises before queueing anything if the body is
    not authentic or not a webhook; raises `PublishFailed` if a queue did not take it all in
    the time `remaining_seconds()` leaves (the caller's deadline, less what answering takes).

    Without a status publisher (no status queue configured) statuses are only counted."""
    if not signature_header:
        raise SignatureRejected("the X-Hub-Signature-256 header is missing")
    if not is_well_formed(signature_header):
        # Not even the shape Meta sends: no rotated secret could make it match.
        raise SignatureRejected("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")
    if not _with_rotation(
        credentials, lambda c: signature_matches(body, signature_header, c.app_secret)
    ):
        raise SignatureRejected("X-Hub-Signature-256 does not match the request body")

    delivery = parse_delivery(_decode_json(body))
    received_at = now()
    records = [QueuedRecord(received=m, received_at=received_at) for m in delivery.messages]
    if records:
        publisher.publish(records, remaining_seconds=remaining_seconds)
    followed = [
        QueuedStatus.from_update(update, received_at)
        for update in delivery.statuses
        if update.wamid  # nothing to follow it by
    ]
    if statuses is not None and followed:
        statuses.publish(followed, remaining_seconds=remaining_seconds)
    summary = summarize(delivery)
    if statuses is None:
        return summary
    return replace(summary, statuses_queued=len(followed))


def summarize(delivery: WebhookDelivery) -> DeliverySummary:
    errors = [*delivery.errors, *(e for m in delivery.messages for e in m.message.errors)]
    statuses = delivery.statuses
    # Counted only when there is something to count: most deliveries hold one message and
    # nothing else, and four empty Counters were an eighth of the use case's time.
    return DeliverySummary(
        queued=delivery.messages,
        failed_statuses=tuple(s for s in statuses if s.errors or s.status == "failed"),
        statuses=Counter(status.status for status in statuses) if statuses else {},
        delivery_failures=Counter(e.code_label for s in statuses for e in s.errors)
        if statuses
        else {},
        webhook_errors=Counter(e.code_label for e in errors) if errors else {},
        ignored_fields=Counter(delivery.ignored_fields) if delivery.ignored_fields else {},
        problems=delivery.problems,
    )


def _decode_json(body: bytes) -> object:
    """JSON as RFC 8259 has it: Python's NaN, Infinity and numbers that overflow to infinity
    are refused, since the queued record must be JSON too; so is nesting deeper than the
    interpreter's recursion limit (RecursionError is not a ValueError)."""
    try:
        return json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise BodyNotJson("the body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise BodyNotJson("the body is not valid JSON") from None


def _refuse_constant(literal: str) -> float:
    raise ValueError(f"{literal} is not JSON")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError("a number out of range")
    return number


def _with_rotation(
    credentials: CredentialSource, check: Callable[[WhatsAppCredentials], bool]
) -> bool:
    """Check against the cached credentials; on a mismatch, once against freshly read ones, so a
    rotated secret takes effect at once instead of after the cache expires."""
    if check(credentials.current()):
        return True
    fresh = credentials.refreshed()
    return fresh is not None and check(fresh)
