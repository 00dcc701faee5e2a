"""The consumer's ports: the Graph API, the ledger (what happened to each message and each
reply), the dead-letter queue, the queue's visibility control and the user's reply handler,
with the one exception type each of them raises.

Adapters implement these (`functions/adapters/`); tests use in-memory fakes or the loopback fake
Graph API. Nothing here imports boto3 or urllib3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Protocol


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
    """The ledger's store could not be read or written."""


# --- the ledger: what happened to each inbound message and each reply ------------------------


class MessageStatus(Enum):
    NEW = "new"  # never seen
    ACTIVE = "active"  # being answered, or waiting for its next attempt
    DONE = "done"  # answered, deliberately unanswered, or refused for good
    DEAD_LETTERED = "dead_lettered"  # its own attempts ran out; it went to the DLQ


@dataclass(frozen=True, slots=True)
class MessageHistory:
    """What the ledger knew of a wamid when an attempt began."""

    status: MessageStatus = MessageStatus.NEW
    attempts: int = 0  # the message's own failed attempts (never time spent waiting)
    sent: Mapping[int, str] = field(default_factory=dict)  # reply slot -> reply wamid ("" unknown)
    # Slots claimed before a send whose answer was never recorded: that send may have gone out.
    claimed: frozenset[int] = frozenset()
    outcome: str | None = None  # DONE: what happened ("replied", "no_reply", ...)
    dead_lettered_at: float | None = None
    # The burst this message answers for, fixed when its first reply slot was claimed (its
    # other messages' wamids, oldest first); None while nothing was claimed.
    members: tuple[str, ...] | None = None
    burst_head: str | None = None  # the message whose burst this one belongs to


class BeginResult(Enum):
    STARTED = "started"  # this attempt holds the message until its lease ends
    ALREADY_DONE = "already_done"  # a duplicate: nothing to do
    BUSY = "busy"  # another execution holds it now
    ALREADY_DEAD_LETTERED = "already_dead_lettered"  # a stale copy of a dead-lettered message


@dataclass(frozen=True, slots=True)
class Begun:
    result: BeginResult
    history: MessageHistory


@dataclass(frozen=True, slots=True)
class SentReply:
    """One reply Meta accepted, remembered so its statuses can be followed and acted on."""

    reply_wamid: str
    inbound_wamid: str
    slot: int  # position in the list of replies to the inbound message
    kind: str  # "reply" or "fallback"; a late failure's follow-up: "fallback" or "resend"
    phone_number_id: str
    recipient: Mapping[str, str]  # the send body's addressing: {"to": ...} or {"recipient": ...}
    message: Mapping[str, Any]  # the outbound message as sent (type part of the body)
    decision: str  # why it was chosen ("rule:greeting", "default", "window-closed", ...)
    sent_at: float  # epoch seconds
    inbound_at: float | None  # when the customer sent the message (Meta's timestamp)
    in_reply_to: str | None = None  # the wamid it threads on / answers, when not inbound_wamid
    burst: tuple[str, ...] = ()  # every wamid this reply answers, when more than one
    conversation_id: str = ""  # the conversation's FIFO group id (no phone number in it)
    original: str | None = None  # a follow-up: the reply whose late failure it follows up
    generation: int = 0  # follow-ups in its chain before it (0: the reply itself)


@dataclass(frozen=True, slots=True)
class Finished:
    outcome: str  # "replied", "no_reply", "permanent_failure", "uncertain"
    error_code: str | None = None
    # The burst's other messages: done in the same write, "answered as part of" this one.
    members: tuple[str, ...] = ()


IN_BURST: Final = "in_burst"  # the outcome of a burst's other messages


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    attempts: int  # own failed attempts, this one included
    error_code: str
    error_class: str
    at: float  # epoch seconds
    release_slot: int | None  # the claimed slot whose send Meta refused (may be retried)
    dead_lettered: bool = False
    # The burst's other messages: their leases released with it, or, with `dead_lettered`,
    # those that went to the DLQ with it.
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """One status of one reply, to be remembered once (the first timestamp of each status wins)."""

    reply_wamid: str
    status: str  # sent, delivered, read, played or failed
    at: float  # Meta's timestamp, epoch seconds
    error_code: str | None = None  # failed: Meta's code
    error_class: str | None = None  # failed: its class in the error policy
    # failed: take the follow-up of this reply for `follow_up_owner` unless someone has, and
    # (when a send may follow) claim its first attempt - in the same write.
    follow_up_owner: str | None = None
    claim_first_attempt: bool = False


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What was done about a reply's late failure."""

    owner: str | None = None  # who took it (a status record's SQS message id)
    attempts: int = 0  # sends claimed (started)
    refused: int = 0  # of them, refused by Meta (known not sent)
    reply_wamid: str | None = None  # the follow-up Meta accepted ("" when it gave no wamid)
    kind: str | None = None  # "fallback" or "resend"
    gave_up: bool = False  # refused for good, or attempts ran out
    error_code: str | None = None  # the last refusal's code

    @property
    def in_doubt(self) -> bool:
        """A claimed send whose outcome was never recorded: it may have gone out."""
        return self.reply_wamid is None and not self.gave_up and self.attempts > self.refused


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """What the ledger knows of one reply: what was sent, its statuses, its follow-up."""

    reply: SentReply
    statuses: Mapping[str, float] = field(default_factory=dict)  # status -> Meta's timestamp
    failed_code: str | None = None
    failed_class: str | None = None
    follow_up: FollowUp = field(default_factory=FollowUp)


class Ledger(Protocol):
    """One record per inbound wamid (and one per reply) that makes every send at most once.

    Every method raises `StoreUnavailable` when the store cannot be reached.
    """

    def begin(
        self,
        wamid: str,
        *,
        now: float,
        lease_until: float,
        claim_slot: int | None,
        enqueued_at: float | None,
        burst_head: str | None = None,
    ) -> Begun:
        """Take the message for this attempt (until `lease_until`), claiming `claim_slot` when a
        send will follow. Refused when it is done, held by a live lease, or dead-lettered after
        this copy was enqueued (a copy enqueued later is a redrive and starts a fresh budget).
        `burst_head`: the message is taken as a member of that message's burst."""
        ...

    def claim(self, wamid: str, slot: int, *, now: float, members: Sequence[str] = ()) -> None:
        """Claim a reply slot right before its send (when `begin` could not). `members`: the
        burst this message answers for, remembered with its first claim and never changed."""
        ...

    def record_sent(
        self, reply: SentReply, *, claim_next: int | None, finished: Finished | None
    ) -> None:
        """Remember an accepted send (and the reply itself), in one write: claim the next slot
        or finish the message."""
        ...

    def finish(self, wamid: str, finished: Finished, *, release_slot: int | None) -> None:
        """The message needs nothing more (no reply, refused for good, or uncertain); its
        burst's `finished.members` with it, in the same write."""
        ...

    def record_failure(self, wamid: str, failure: FailedAttempt) -> None:
        """This attempt failed; release its lease (and its refused slot) for the next one. A
        dead-lettered burst's members are marked in the same write."""
        ...

    # --- the statuses of replies (docs/contract.md, "Statuses") -------------------------------

    def record_status(self, write: StatusWrite) -> ReplyRecord | None:
        """Remember one status of a reply in one write: its timestamp unless one is known, and for
        a failure the code, the follow-up's owner and first claim unless already taken. Returns
        the reply as it was BEFORE this write (so the caller sees what this write changed), or
        None when no such reply is remembered (not ours, expired, or not recorded yet)."""
        ...

    def claim_follow_up(self, reply_wamid: str, *, owner: str, attempt: int, now: float) -> bool:
        """Claim the `attempt`-th follow-up send (after `attempt - 1` refusals) for its owner;
        False when the follow-up is not in that state (taken elsewhere, or in doubt)."""
        ...

    def record_follow_up(self, follow_up: SentReply) -> None:
        """Meta accepted a follow-up (`follow_up.original` is the reply it follows up): record it
        on the original and remember it as a reply of its own, in one write."""
        ...

    def settle_follow_up(
        self, reply_wamid: str, *, refused: int, error_code: str, gave_up: bool
    ) -> None:
        """Meta refused the `refused`-th follow-up send: it may be tried again, unless gave_up."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a record left the queue for the dead-letter queue, readable without the logs."""

    reason: str  # "attempts_exhausted" or "unreadable"
    error_code: str
    error_class: str
    attempts: int
    last_attempt_at: float  # epoch seconds
    wamid: str | None = None


class DeadLetterFailed(Exception):
    """The dead-letter queue did not take the record (it stays on the inbound queue)."""


class DeadLetters(Protocol):
    def send(self, body: str, group_id: str, letter: DeadLetter) -> None:
        """Put the record's body on the dead-letter queue with `letter` as its attributes.
        Raises `DeadLetterFailed`."""
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


class ReplyHandler(Protocol):
    """The user's function named by REPLY_HANDLER (docs/reply-handler.md): one mapping in
    (`message`, `contact`, `metadata`, `burst`), None, one message dict or a list of them out.
    Anything it raises is a retry (`handler_error`)."""

    def __call__(self, event: dict[str, Any], /) -> object: ...


# --- events for other systems (relay_events.py builds them) -----------------------------------


@dataclass(frozen=True, slots=True)
class RelayEvent:
    detail_type: str  # "message.received", "reply.sent", ...
    detail: Mapping[str, Any]  # JSON-ready; `eventId` deterministic per fact

    @property
    def event_id(self) -> str:
        return str(self.detail["eventId"])


@dataclass(frozen=True, slots=True)
class Unpublished:
    event: RelayEvent
    error_code: str  # the bus's per-entry code, or the call's error


class EventPublisher(Protocol):
    def publish(self, events: Sequence[RelayEvent]) -> list[Unpublished]:
        """Put the events on the bus (what it refuses is tried once more); the ones still not
        accepted, each with why. Never raises: an event never costs a reply."""
        ...
