"""Builders and in-memory fakes for the consumer's tests (unit and integration)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.domain.consumer.consume import Consumer, InboxRecord
from functions.domain.consumer.ports import (
    AlreadyInProgress,
    GraphApiError,
    OnceResult,
    StoreUnavailable,
    VisibilityChange,
)
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
        "timestamp": "1764061200",
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


def wamid_of(body: str) -> str:
    return str(json.loads(body)["wamid"])


def record(
    body: str | None = None,
    *,
    group: str = "g1",
    receive_count: int = 1,
    message_id: str | None = None,
) -> InboxRecord:
    return InboxRecord(
        message_id=message_id or f"msg-{next(_ids)}",
        body=body if body is not None else queued_body(),
        group_id=group,
        receive_count=receive_count,
        receipt_handle=f"rh-{uuid.uuid4().hex[:8]}",
        event_source_arn="arn:aws:sqs:eu-west-1:123456789012:inbound.fifo",
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

    def mark_read(self, phone_number_id: str, body: Mapping[str, Any]) -> None:
        self.calls.append(Call("read", phone_number_id, body))
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
class MemoryOnce:
    """`OncePerMessage` in memory, with Powertools' semantics (exception -> no record)."""

    done: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    in_progress: set[str] = field(default_factory=set)
    unavailable: bool = False

    def run(self, key: str, work: Callable[[], Mapping[str, Any]]) -> OnceResult:
        if self.unavailable:
            raise StoreUnavailable("store down")
        if key in self.done:
            return OnceResult(self.done[key], replayed=True)
        if key in self.in_progress:
            raise AlreadyInProgress(key)
        self.in_progress.add(key)
        try:
            value = work()
        finally:
            self.in_progress.discard(key)
        self.done[key] = value
        return OnceResult(value, replayed=False)


@dataclass
class MemoryLedger:
    claims: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)
    fail_release: bool = False
    fail_claim: bool = False

    def claim(self, wamid: str) -> bool:
        if self.fail_claim:
            raise StoreUnavailable("ledger down")
        if wamid in self.claims:
            return False
        self.claims.add(wamid)
        return True

    def release(self, wamid: str) -> None:
        if self.fail_release:
            raise StoreUnavailable("ledger down")
        self.claims.discard(wamid)
        self.released.append(wamid)


@dataclass
class RecordingVisibility:
    changes: list[VisibilityChange] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    def change(self, changes: Sequence[VisibilityChange]) -> list[str]:
        self.changes.extend(changes)
        return [c.message_id for c in changes if c.message_id in self.refuse]

    def timeouts(self) -> dict[str, int]:
        return {c.message_id: c.timeout_seconds for c in self.changes}


def consumer(
    graph: ScriptedGraph | None = None,
    *,
    once: MemoryOnce | None = None,
    ledger: MemoryLedger | None = None,
    visibility: RecordingVisibility | None = None,
    reply_rules: ReplyRules | None = None,
    remaining_seconds: Callable[[], float] = lambda: 30.0,
    random_unit: Callable[[], float] = lambda: 0.5,
    max_workers: int = 10,
) -> Consumer:
    return Consumer(
        graph=graph or ScriptedGraph(),
        once=once or MemoryOnce(),
        ledger=ledger or MemoryLedger(),
        visibility=visibility or RecordingVisibility(),
        rules=reply_rules or rules(),
        clock=lambda: NOW,
        remaining_seconds=remaining_seconds,
        random_unit=random_unit,
        max_workers=max_workers,
        min_seconds_to_start=5.0,
    )
