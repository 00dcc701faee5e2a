"""Events for other systems (docs/events.md): the facts the relay publishes to an EventBridge bus
so a CRM, an analytics job or a human inbox can follow along without touching this code.

Four detail types, all with `source` `whatsapp-relay`:

| detail type | when |
|---|---|
| `message.received` | an inbound message was first taken by the consumer's ledger |
| `reply.sent` | Meta accepted a reply (and the ledger recorded the send) |
| `reply.status_changed` | Meta reported a reply sent, delivered, read or failed |
| `message.dead_lettered` | the consumer put a message on the dead-letter queue |

Every detail carries `eventId`, deterministic per fact (`<detail type>:<key>`): a subscriber
deduplicates on it. No phone number and no message text unless the deployment opts in
(`eventDetail=full`): by default a conversation is known by `conversationId`, the hashed key of
its FIFO group, which correlates one customer's events and reveals nothing.

Plain Python: `EventPublisher` (ports.py) puts them on the bus; a failed publish never touches
the reply (events are published after the ledger recorded the fact, and a refusal is counted and
alarmed, `EventsNotPublished`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from functions.domain.consumer.ports import (
    DeadLetter,
    EventPublisher,
    RelayEvent,
    SentReply,
    Unpublished,
)
from functions.domain.whatsapp.queued_record import QueuedRecord

SCHEMA_VERSION: Final = 1
MESSAGE_RECEIVED: Final = "message.received"
REPLY_SENT: Final = "reply.sent"
REPLY_STATUS_CHANGED: Final = "reply.status_changed"
MESSAGE_DEAD_LETTERED: Final = "message.dead_lettered"
DETAIL_TYPES: Final = (MESSAGE_RECEIVED, REPLY_SENT, REPLY_STATUS_CHANGED, MESSAGE_DEAD_LETTERED)


@dataclass(frozen=True, slots=True)
class RelayEvents:
    """Builds the relay's events and publishes them through the port.

    Each builder is pure and returns one event; the consumer collects a record's events and
    publishes them in one call once the record is settled (`publish`). Status processing does
    the same, e.g. `outcome.events.append(events.reply_status_changed(...))`.
    """

    publisher: EventPublisher
    include_content: bool = False  # eventDetail=full: phone numbers and message content too

    def publish(self, events: Sequence[RelayEvent]) -> list[Unpublished]:
        return self.publisher.publish(events) if events else []

    def message_received(self, queued: QueuedRecord, *, conversation_id: str) -> RelayEvent:
        received = queued.received
        detail: dict[str, Any] = {
            **_common(MESSAGE_RECEIVED, queued.wamid, queued.received_at.timestamp()),
            "wamid": queued.wamid,
            "phoneNumberId": received.business.phone_number_id,
            "conversationId": conversation_id,
            "messageType": received.message.type,
            "sentAt": _iso_or_none(received.message.sent_at),
        }
        if self.include_content:
            contact = received.contact
            detail["customer"] = {
                "from": received.sender_key,
                "name": contact.name if contact else None,
            }
            detail["message"] = dict(received.message.raw)
        return RelayEvent(MESSAGE_RECEIVED, detail)

    def reply_sent(self, reply: SentReply, *, conversation_id: str) -> RelayEvent:
        detail: dict[str, Any] = {
            **_common(REPLY_SENT, f"{reply.inbound_wamid}:{reply.slot}", reply.sent_at),
            "replyWamid": reply.reply_wamid or None,
            "inReplyTo": reply.in_reply_to or reply.inbound_wamid,
            "answers": list(reply.burst) or [reply.inbound_wamid],
            "slot": reply.slot,
            "kind": reply.kind,
            "messageType": str(reply.message.get("type", "")),
            "decision": reply.decision,
            "phoneNumberId": reply.phone_number_id,
            "conversationId": conversation_id,
        }
        if self.include_content:
            detail["customer"] = dict(reply.recipient)
            detail["message"] = dict(reply.message)
        return RelayEvent(REPLY_SENT, detail)

    def reply_status_changed(
        self,
        *,
        reply_wamid: str,
        status: str,
        at: float,
        phone_number_id: str,
        in_reply_to: str | None = None,
        conversation_id: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        recipient: str | None = None,
    ) -> RelayEvent:
        """For status processing: Meta said `status` (sent, delivered, read, failed, played)
        about the reply `reply_wamid` at `at` (epoch seconds, Meta's `timestamp`). `errors`
        are Meta's error objects; only their `code` and `title` are published."""
        detail: dict[str, Any] = {
            **_common(REPLY_STATUS_CHANGED, f"{reply_wamid}:{status}", at),
            "replyWamid": reply_wamid,
            "status": status,
            "inReplyTo": in_reply_to,
            "phoneNumberId": phone_number_id,
            "conversationId": conversation_id,
            "errors": [{"code": e.get("code"), "title": e.get("title")} for e in errors],
        }
        if self.include_content:
            detail["customer"] = {"recipient": recipient}
        return RelayEvent(REPLY_STATUS_CHANGED, detail)

    def message_dead_lettered(
        self,
        letter: DeadLetter,
        *,
        sqs_message_id: str,
        conversation_id: str,
        queued: QueuedRecord | None,
    ) -> RelayEvent:
        key = f"{letter.wamid or sqs_message_id}:{round(letter.last_attempt_at * 1000)}"
        detail: dict[str, Any] = {
            **_common(MESSAGE_DEAD_LETTERED, key, letter.last_attempt_at),
            "wamid": letter.wamid,
            "sqsMessageId": sqs_message_id,
            "reason": letter.reason,
            "errorCode": letter.error_code,
            "errorClass": letter.error_class,
            "attempts": letter.attempts,
            "phoneNumberId": queued.received.business.phone_number_id if queued else None,
            "conversationId": conversation_id,
        }
        if self.include_content and queued is not None:
            detail["message"] = dict(queued.received.message.raw)
        return RelayEvent(MESSAGE_DEAD_LETTERED, detail)


def _common(detail_type: str, key: str, occurred_at: float) -> dict[str, Any]:
    return {
        "eventId": f"{detail_type}:{key}",
        "schemaVersion": SCHEMA_VERSION,
        "occurredAt": _iso(occurred_at),
    }


def _iso(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else _iso(moment.timestamp())
