"""Builders and in-memory fakes for the consumer's tests (unit and integration)."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.domain.consumer.consume import Consumer, InboxRecord
from functions.domain.consumer.ports import (
    IN_BURST,
    BeginResult,
    Begun,
    DeadLetter,
    DeadLetterFailed,
    FailedAttempt,
    Finished,
    FollowUp,
    GraphApiError,
    MessageHistory,
    MessageStatus,
    RelayEvent,
    ReplyHandler,
    ReplyRecord,
    SentReply,
    StatusWrite,
    StoreUnavailable,
    Unpublished,
    VisibilityChange,
)
from functions.domain.consumer.relay_events import RelayEvents
from functions.domain.consumer.reply_rules import ReplyRules, parse_rules

BUSINESS_NUMBER_ID = "106540352242922"
BUSINESS_DISPLAY_NUMBER = "15550783881"
WABA_ID = "102290129340398"
SENDER = "16505551234"
NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)

_ids = itertools.count(1)

DEFAULT_CONTENT: Mapping[str, Any] = {
    "text": {"body": "hello"},
    "image": {"id": "1003383421387256", "mime_type": "image/jpeg", "sha256": "abc="},
    "document": {"id": "4", "mime_type": "application/pdf", "filename": "invoice.pdf"},
    "location": {"latitude": 38.9, "longitude": -77.03},
    "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
    "button": {"payload": "STOP", "text": "Stop promotions"},
    "reaction": {"message_id": "wamid.OUTBOUND=", "emoji": "\U0001f44d"},
    "system": {"body": "User changed number", "type": "user_changed_number"},
    "unsupported": {"type": "edit"},
}

RULES_DOCUMENT: dict[str, Any] = {
    "version": 1,
    "fallbackTemplate": {"name": "hello_world", "language": "en_US"},
    "rules": [
        {
            "name": "greeting",
            "match": {"types": ["text"], "keywords": ["hi", "hello"]},
            "reply": {"type": "text", "text": "Hello {contact_name}!"},
        },
        {
            "name": "yes",
            "match": {"replyIds": ["yes"]},
            "reply": {"type": "text", "text": "Great, done."},
        },
    ],
    "default": {"type": "text", "text": "Thanks for your message."},
}


def new_wamid() -> str:
    return f"wamid.C{next(_ids):06d}{uuid.uuid4().hex[:12]}="


def inbound(
    message_type: str = "text",
    *,
    wamid: str | None = None,
    sender: str = SENDER,
    content: Mapping[str, Any] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A raw `messages[]` object as Meta sends it."""
    body = dict(content if content is not None else DEFAULT_CONTENT.get(message_type, {}))
    if text is not None:
        body = {"body": text}
    return {
        "from": sender,
        "id": wamid or new_wamid(),
        # Sent a moment ago by the real clock: inside the 24-hour window for the handler (real
        # clock) and for the use case (clock stopped at NOW, before it).
        "timestamp": str(int(time.time()) - 1),
        "type": message_type,
        message_type: body,
    }


def queued_body(
    message: Mapping[str, Any] | None = None,
    *,
    phone_number_id: str = BUSINESS_NUMBER_ID,
    display_phone_number: str = BUSINESS_DISPLAY_NUMBER,
    contact_name: str | None = "Sheena",
    received_at: datetime = NOW - timedelta(milliseconds=250),
) -> str:
    """An SQS body as ingest writes it (schema version 1)."""
    raw = dict(message) if message is not None else inbound()
    return json.dumps(
        {
            "schemaVersion": 1,
            "wamid": raw["id"],
            "receivedAt": received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "business": {
                "phoneNumberId": phone_number_id,
                "displayPhoneNumber": display_phone_number,
                "wabaId": WABA_ID,
            },
            "contact": {"waId": raw.get("from", ""), "name": contact_name, "userId": None},
            "message": raw,
        }
    )


def status_body(
    reply_wamid: str,
    status: str = "delivered",
    *,
    at: float | None = None,
    error_code: int | None = None,
    received_at: datetime = NOW,
) -> str:
    """A status record as ingest writes it (kind "status"; without Meta's `recipient_id`)."""
    raw: dict[str, Any] = {
        "id": reply_wamid,
        "status": status,
        "timestamp": str(int(at if at is not None else received_at.timestamp())),
    }
    if error_code is not None:
        raw["errors"] = [
            {
                "code": error_code,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "More than 24 hours have passed."},
            }
        ]
    return json.dumps(
        {
            "schemaVersion": 1,
            "kind": "status",
            "receivedAt": received_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "business": {
                "phoneNumberId": BUSINESS_NUMBER_ID,
                "displayPhoneNumber": BUSINESS_DISPLAY_NUMBER,
                "wabaId": WABA_ID,
            },
            "status": raw,
        }
    )


def wamid_of(body: str) -> str:
    return str(json.loads(body)["wamid"])


def record(
    body: str | None = None,
    *,
    group: str = "g1",
    receive_count: int = 1,
    message_id: str | None = None,
    enqueued_at: float | None = None,
) -> InboxRecord:
    return InboxRecord(
        message_id=message_id or f"msg-{next(_ids)}",
        body=body if body is not None else queued_body(),
        group_id=group,
        receive_count=receive_count,
        receipt_handle=f"rh-{uuid.uuid4().hex[:8]}",
        event_source_arn="arn:aws:sqs:eu-west-1:123456789012:inbound.fifo",
        enqueued_at=enqueued_at,
    )


def rules(**overrides: Any) -> ReplyRules:
    return parse_rules(RULES_DOCUMENT | overrides)


# --- fakes --------------------------------------------------------------------------------------


@dataclass
class Call:
    kind: str  # "read" or "send"
    phone_number_id: str
    body: Mapping[str, Any]


@dataclass
class ScriptedGraph:
    """A `GraphApi` answering from per-kind scripts of errors (None = success)."""

    reads: list[GraphApiError | None] = field(default_factory=list)
    sends: list[GraphApiError | None] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    on_send: Callable[[], object] | None = None
    on_read: Callable[[], object] | None = None

    def mark_read(self, phone_number_id: str, body: Mapping[str, Any]) -> None:
        self.calls.append(Call("read", phone_number_id, body))
        if self.on_read is not None:
            self.on_read()
        answer = self.reads.pop(0) if self.reads else None
        if answer is not None:
            raise answer

    def send(self, phone_number_id: str, body: Mapping[str, Any]) -> str:
        self.calls.append(Call("send", phone_number_id, body))
        if self.on_send is not None:
            self.on_send()
        answer = self.sends.pop(0) if self.sends else None
        if answer is not None:
            raise answer
        return f"wamid.OUT{len(self.calls)}"

    def sent(self) -> list[Mapping[str, Any]]:
        return [call.body for call in self.calls if call.kind == "send"]

    def read(self) -> list[Mapping[str, Any]]:
        return [call.body for call in self.calls if call.kind == "read"]


@dataclass
class _Item:
    status: MessageStatus = MessageStatus.ACTIVE
    lease_until: float = 0.0
    attempts: int = 0
    claims: set[int] = field(default_factory=set)
    sent: dict[int, str] = field(default_factory=dict)
    outcome: str | None = None
    error_code: str | None = None
    dead_lettered_at: float | None = None
    members: tuple[str, ...] | None = None
    burst_head: str | None = None

    def history(self) -> MessageHistory:
        return MessageHistory(
            status=self.status,
            attempts=self.attempts,
            sent=dict(self.sent),
            claimed=frozenset(self.claims - set(self.sent)),
            outcome=self.outcome,
            dead_lettered_at=self.dead_lettered_at,
            members=self.members,
            burst_head=self.burst_head,
        )


@dataclass
class _ReplyItem:
    reply: SentReply
    statuses: dict[str, float] = field(default_factory=dict)
    failed_code: str | None = None
    failed_class: str | None = None
    follow_up: FollowUp = field(default_factory=FollowUp)

    def record(self) -> ReplyRecord:
        return ReplyRecord(
            reply=self.reply,
            statuses=dict(self.statuses),
            failed_code=self.failed_code,
            failed_class=self.failed_class,
            follow_up=self.follow_up,
        )


REPLY_STATUSES = frozenset({"sent", "delivered", "read", "played", "failed"})


@dataclass
class MemoryLedger:
    """`Ledger` in memory, with the DynamoDB adapter's semantics (the same contract tests run
    against both: tests/integration/consumer/test_ledger_contract.py)."""

    items: dict[str, _Item] = field(default_factory=dict)
    replies: dict[str, SentReply] = field(default_factory=dict)
    reply_items: dict[str, _ReplyItem] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # methods that raise StoreUnavailable
    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        with self._lock:
            self._enter("begin")
            item = self.items.get(wamid)
            old = item.history() if item else MessageHistory()
            free = item is None or (item.status is MessageStatus.ACTIVE and item.lease_until < now)
            redrive = (
                item is not None
                and item.status is MessageStatus.DEAD_LETTERED
                and enqueued_at is not None
                and (item.dead_lettered_at or 0) < enqueued_at
            )
            if not (free or redrive):
                assert item is not None
                if item.status is MessageStatus.DONE:
                    return Begun(BeginResult.ALREADY_DONE, old)
                if item.status is MessageStatus.DEAD_LETTERED:
                    return Begun(BeginResult.ALREADY_DEAD_LETTERED, old)
                return Begun(BeginResult.BUSY, old)
            item = self.items.setdefault(wamid, _Item())
            item.status = MessageStatus.ACTIVE
            item.lease_until = lease_until
            if claim_slot is not None:
                item.claims.add(claim_slot)
            if burst_head is not None:
                item.burst_head = burst_head
            return Begun(BeginResult.STARTED, old)

    def claim(self, wamid: str, slot: int, *, now: float, members: Sequence[str] = ()) -> None:
        with self._lock:
            self._enter("claim")
            item = self.items.setdefault(wamid, _Item())
            item.claims.add(slot)
            if members and item.members is None:
                item.members = tuple(members)

    def record_sent(
        self, reply: SentReply, *, claim_next: int | None, finished: Finished | None
    ) -> None:
        with self._lock:
            self._enter("record_sent")
            item = self.items.setdefault(reply.inbound_wamid, _Item())
            item.sent[reply.slot] = reply.reply_wamid
            if claim_next is not None:
                item.claims.add(claim_next)
            if finished is not None:
                item.status, item.outcome, item.lease_until = (
                    MessageStatus.DONE,
                    finished.outcome,
                    0.0,
                )
                self._members_done(reply.inbound_wamid, finished.members)
            if reply.reply_wamid:
                self.replies[reply.reply_wamid] = reply
                self.reply_items[reply.reply_wamid] = _ReplyItem(reply)

    def finish(self, wamid: str, finished: Finished, *, release_slot: int | None) -> None:
        with self._lock:
            self._enter("finish")
            item = self.items.setdefault(wamid, _Item())
            item.status, item.outcome, item.lease_until = MessageStatus.DONE, finished.outcome, 0.0
            item.error_code = finished.error_code or item.error_code
            if release_slot is not None:
                item.claims.discard(release_slot)
            self._members_done(wamid, finished.members)

    def record_failure(self, wamid: str, failure: FailedAttempt) -> None:
        with self._lock:
            self._enter("record_failure")
            item = self.items.setdefault(wamid, _Item())
            item.attempts = failure.attempts
            item.error_code = failure.error_code
            item.lease_until = 0.0
            if failure.release_slot is not None:
                item.claims.discard(failure.release_slot)
            if failure.dead_lettered:
                item.status, item.dead_lettered_at = MessageStatus.DEAD_LETTERED, failure.at
                for member in failure.members:
                    other = self.items.setdefault(member, _Item())
                    other.status, other.dead_lettered_at = MessageStatus.DEAD_LETTERED, failure.at
                    other.error_code, other.burst_head, other.lease_until = (
                        failure.error_code,
                        wamid,
                        0.0,
                    )
            else:
                item.status = MessageStatus.ACTIVE
                for member in failure.members:
                    self.items.setdefault(member, _Item()).lease_until = 0.0

    def _members_done(self, head: str, members: Sequence[str]) -> None:
        for member in members:
            other = self.items.setdefault(member, _Item())
            other.status, other.outcome = MessageStatus.DONE, IN_BURST
            other.burst_head, other.lease_until = head, 0.0

    def record_status(self, write: StatusWrite) -> ReplyRecord | None:
        if write.status not in REPLY_STATUSES:
            raise ValueError(f"not a status a reply keeps: {write.status!r}")
        with self._lock:
            self._enter("record_status")
            item = self.reply_items.get(write.reply_wamid)
            if item is None:
                return None
            before = item.record()
            item.statuses.setdefault(write.status, write.at)
            item.failed_code = item.failed_code or write.error_code
            item.failed_class = item.failed_class or write.error_class
            follow_up = item.follow_up
            if write.follow_up_owner is not None and follow_up.owner is None:
                follow_up = replace(follow_up, owner=write.follow_up_owner)
            if write.claim_first_attempt and follow_up.attempts == 0:
                follow_up = replace(follow_up, attempts=1)
            item.follow_up = follow_up
            return before

    def claim_follow_up(self, reply_wamid: str, *, owner: str, attempt: int, now: float) -> bool:
        with self._lock:
            self._enter("claim_follow_up")
            item = self.reply_items.get(reply_wamid)
            follow_up = item.follow_up if item else None
            if (
                item is None
                or follow_up is None
                or follow_up.owner != owner
                or follow_up.reply_wamid is not None
                or follow_up.gave_up
                or follow_up.attempts != attempt - 1
                or follow_up.refused != attempt - 1
            ):
                return False
            item.follow_up = replace(follow_up, attempts=attempt)
            return True

    def record_follow_up(self, follow_up: SentReply) -> None:
        if follow_up.original is None:
            raise ValueError("a follow-up names the reply it follows up")
        with self._lock:
            self._enter("record_follow_up")
            original = self.reply_items.get(follow_up.original)
            if original is not None:  # DynamoDB's update would create it; no test needs that
                original.follow_up = replace(
                    original.follow_up, reply_wamid=follow_up.reply_wamid, kind=follow_up.kind
                )
            if follow_up.reply_wamid:
                self.replies[follow_up.reply_wamid] = follow_up
                self.reply_items[follow_up.reply_wamid] = _ReplyItem(follow_up)

    def settle_follow_up(
        self, reply_wamid: str, *, refused: int, error_code: str, gave_up: bool
    ) -> None:
        with self._lock:
            self._enter("settle_follow_up")
            item = self.reply_items.get(reply_wamid)
            if item is not None:
                item.follow_up = replace(
                    item.follow_up,
                    refused=refused,
                    error_code=error_code,
                    gave_up=item.follow_up.gave_up or gave_up,
                )

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if method in self.down:
            raise StoreUnavailable("store down")


@dataclass
class MemoryDeadLetters:
    letters: list[tuple[str, str, DeadLetter]] = field(default_factory=list)
    refuse: bool = False

    def send(self, body: str, group_id: str, letter: DeadLetter) -> None:
        if self.refuse:
            raise DeadLetterFailed("dead-letter queue: unavailable")
        self.letters.append((body, group_id, letter))


@dataclass
class RecordingVisibility:
    changes: list[VisibilityChange] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def change(self, changes: Sequence[VisibilityChange]) -> list[str]:
        self.changes.extend(changes)
        return [c.message_id for c in changes if c.message_id in self.refuse]

    def timeouts(self) -> dict[str, int]:
        return {c.message_id: c.timeout_seconds for c in self.changes}


@dataclass
class MemoryBus:
    """An `EventPublisher` that keeps what it was given, or refuses it with `refuse`."""

    published: list[RelayEvent] = field(default_factory=list)
    refuse: str | None = None  # an error code
    calls: int = 0

    def publish(self, events: Sequence[RelayEvent]) -> list[Unpublished]:
        self.calls += 1
        if self.refuse is not None:
            return [Unpublished(event, self.refuse) for event in events]
        self.published.extend(events)
        return []

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [dict(e.detail) for e in self.published if e.detail_type == detail_type]


def consumer(
    graph: ScriptedGraph | None = None,
    *,
    ledger: MemoryLedger | None = None,
    dead_letters: MemoryDeadLetters | None = None,
    visibility: RecordingVisibility | None = None,
    reply_rules: ReplyRules | None = None,
    remaining_seconds: Callable[[], float] = lambda: 30.0,
    random_unit: Callable[[], float] = lambda: 0.5,
    max_workers: int = 10,
    max_attempts: int = 8,
    clock: Callable[[], datetime] = lambda: NOW,
    reply_handler: ReplyHandler | None = None,
    handler_reserve_seconds: float = 5.0,
    bus: MemoryBus | None = None,
    event_content: bool = False,
    burst_window_seconds: float = 0.0,
) -> Consumer:
    return Consumer(
        graph=graph or ScriptedGraph(),
        ledger=ledger if ledger is not None else MemoryLedger(),
        dead_letters=dead_letters if dead_letters is not None else MemoryDeadLetters(),
        visibility=visibility or RecordingVisibility(),
        rules=reply_rules or rules(),
        clock=clock,
        remaining_seconds=remaining_seconds,
        random_unit=random_unit,
        max_workers=max_workers,
        min_seconds_to_start=5.0,
        max_attempts=max_attempts,
        reply_handler=reply_handler,
        handler_reserve_seconds=handler_reserve_seconds,
        events=None if bus is None else RelayEvents(bus, include_content=event_content),
        burst_window_seconds=burst_window_seconds,
    )
