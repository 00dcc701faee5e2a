"""The records ingest queues for the consumer: schema version 1, two kinds.

A **message record** goes on the inbound FIFO queue, one per inbound WhatsApp message. Its body is
compact JSON (no `kind` key: message records are byte for byte what they were before statuses
were queued):

    {
      "schemaVersion": 1,
      "wamid": "wamid.HBg…",                     # Meta's message id, also the deduplication id
      "receivedAt": "2026-11-25T08:14:25.123Z",  # when ingest accepted the webhook (UTC)
      "business": {"phoneNumberId": "1065…", "displayPhoneNumber": "1555…", "wabaId": "1022…"},
      "contact": {"waId": "1650…", "name": "Sheena", "userId": "US.13491208655302741918",
                  "username": null, "parentUserId": null},          # or null; waId may be ""
      "metaContact": { …the `contacts[]` object exactly as Meta sent it… },  # optional
      "message": { …the `messages[]` object exactly as Meta sent it… }
    }

A **status record** goes on the status queue (a standard queue), one per `statuses[]` entry
about one of our outbound messages:

    {
      "schemaVersion": 1,
      "kind": "status",
      "receivedAt": "2026-11-25T08:14:26.456Z",
      "business": {"phoneNumberId": "1065…", "displayPhoneNumber": "1555…", "wabaId": "1022…"},
      "status": {"id": "wamid.HBg…", "status": "delivered", "timestamp": "1764058466",
                 "errors": [ …Meta's error objects, failed statuses only… ]}
    }

The status object keeps only `id`, `status`, `timestamp` and `errors`: the recipient
(`recipient_id`, `recipient_user_id`) is a phone number or user id the consumer does not need -
it acts on the recipient it stored with the reply - and `pricing`/`conversation` are billing.

Rules that keep ingest and consumer deployable independently:
- a reader accepts any record whose `schemaVersion` it knows, dispatches on `kind` (absent:
  a message) and ignores keys it does not know;
- a writer adds optional keys freely, but anything that changes the meaning of an existing key
  bumps `schemaVersion` (and the consumer learns the new version before ingest writes it);
- a new `kind` is a change of that sort too: a consumer that does not know it dead-letters the
  record as unreadable. The consumer is deployed with (or before) the ingest that writes it.
The message is kept raw so that a consumer that understands more types than the ingest that
queued it loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.domain.whatsapp.webhook import (
    BusinessNumber,
    Contact,
    InvalidPayload,
    MetaError,
    ReceivedMessage,
    StatusUpdate,
    parse_error,
    parse_message,
)

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
KIND_MESSAGE = "message"  # the default: message records carry no `kind`
KIND_STATUS = "status"
# What a status record keeps of Meta's `statuses[]` object (see the module docstring).
STATUS_KEYS = ("id", "status", "timestamp", "errors")

# SQS allows 1-128 characters of alphanumerics and punctuation in group and deduplication ids.
# Used with fullmatch: `$` would also accept a final newline, which SQS refuses.
_SQS_ID = re.compile(r"[!-~]{1,128}")
# Hashing must take any string JSON can carry: a `\ud800` escape decodes to a lone surrogate,
# which strict UTF-8 cannot encode. For every other string the bytes are plain UTF-8's.
_ANY_STRING = "surrogatepass"


class UnreadableRecord(ValueError):
    """A queue message that is not a record this code can read (a poison message)."""


@dataclass(frozen=True, slots=True, eq=False)
class QueuedRecord:
    received: ReceivedMessage
    received_at: datetime

    @property
    def wamid(self) -> str:
        return self.received.message.wamid

    @property
    def group_id(self) -> str:
        """One FIFO group per conversation: the business number and the sender.

        The sender is `conversation_key` (the BSUID when Meta gives one, else the phone), so a
        user who adopts a username keeps their group when the phone disappears from the payload.
        It is hashed: group ids show up in SQS tooling, and a phone number is personal data. A
        message with no sender at all gets a group of its own.
        """
        sender = self.received.conversation_key or f"wamid:{self.wamid}"
        digest = hashlib.sha256(sender.encode("utf-8", _ANY_STRING)).hexdigest()[:32]
        business = self.received.business.phone_number_id
        candidate = f"{business}:{digest}"
        return (
            candidate
            if _SQS_ID.fullmatch(candidate)
            else hashlib.sha256(candidate.encode("utf-8", _ANY_STRING)).hexdigest()
        )

    @property
    def deduplication_id(self) -> str:
        """The wamid itself when SQS accepts it, so a redelivered webhook is dropped by SQS."""
        if _SQS_ID.fullmatch(self.wamid):
            return self.wamid
        return hashlib.sha256(self.wamid.encode("utf-8", _ANY_STRING)).hexdigest()

    def to_json(self) -> str:
        business = self.received.business
        contact = self.received.contact
        document: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "wamid": self.wamid,
            "receivedAt": _iso(self.received_at),
            "business": {
                "phoneNumberId": business.phone_number_id,
                "displayPhoneNumber": business.display_phone_number,
                "wabaId": self.received.waba_id,
            },
            "contact": None
            if contact is None
            else {
                "waId": contact.wa_id,
                "name": contact.name,
                "userId": contact.user_id,
                "username": contact.username,
                "parentUserId": contact.parent_user_id,
            },
            "message": dict(self.received.message.raw),
        }
        if contact is not None and contact.raw:
            # Optional (added to schema 1 compatibly): what a reply handler gets as `contact`.
            document["metaContact"] = dict(contact.raw)
        # ASCII-escaped, as Meta sends it: SQS refuses (or rewrites) some code points - lone
        # surrogates, U+FFFE, U+FFFF - that JSON escapes carry safely.
        return json.dumps(document, ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> QueuedRecord:
        record = read_record(body)
        if not isinstance(record, QueuedRecord):
            raise UnreadableRecord(f"a {KIND_STATUS} record, not a message record")
        return record

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> QueuedRecord:
        business = document.get("business")
        raw_message = document.get("message")
        if not isinstance(business, Mapping) or not isinstance(raw_message, Mapping):
            raise UnreadableRecord("the record lacks `business` or `message`")
        phone_number_id = business.get("phoneNumberId")
        if not isinstance(phone_number_id, str) or not phone_number_id:
            raise UnreadableRecord("the record lacks business.phoneNumberId")
        try:
            message = parse_message(raw_message)
        except InvalidPayload as error:
            raise UnreadableRecord(str(error)) from None
        contact_doc = document.get("contact")
        meta_contact = document.get("metaContact")
        contact = (
            Contact(
                wa_id=str(contact_doc.get("waId") or ""),
                name=_text(contact_doc, "name"),
                user_id=_text(contact_doc, "userId"),
                username=_text(contact_doc, "username"),
                parent_user_id=_text(contact_doc, "parentUserId"),
                raw=meta_contact if isinstance(meta_contact, Mapping) else {},
            )
            if isinstance(contact_doc, Mapping)
            else None
        )
        received = ReceivedMessage(
            message=message,
            business=BusinessNumber(
                phone_number_id=phone_number_id,
                display_phone_number=str(business.get("displayPhoneNumber") or ""),
            ),
            waba_id=str(business.get("wabaId") or ""),
            contact=contact,
        )
        return cls(received=received, received_at=_parse_iso(document.get("receivedAt")))


@dataclass(frozen=True, slots=True, eq=False)
class QueuedStatus:
    """What Meta said happened to one of our outbound messages, as queued for the consumer."""

    raw: Mapping[str, Any]  # the status object, reduced to STATUS_KEYS
    business: BusinessNumber
    waba_id: str
    received_at: datetime

    @classmethod
    def from_update(cls, update: StatusUpdate, received_at: datetime) -> QueuedStatus:
        return cls(
            raw={key: update.raw[key] for key in STATUS_KEYS if key in update.raw},
            business=update.business,
            waba_id=update.waba_id,
            received_at=received_at,
        )

    @property
    def reply_wamid(self) -> str:
        """The wamid of OUR message the status is about."""
        value = self.raw.get("id")
        return value if isinstance(value, str) else ""

    @property
    def status(self) -> str:
        value = self.raw.get("status")
        return value if isinstance(value, str) and value else "unknown"

    @property
    def at(self) -> float | None:
        """Meta's `timestamp` (epoch seconds), when it is one."""
        value = self.raw.get("timestamp")
        try:
            return float(int(str(value)))
        except ValueError:
            return None

    @property
    def errors(self) -> tuple[MetaError, ...]:
        return tuple(parse_error(item) for item in self.raw_errors)

    @property
    def raw_errors(self) -> tuple[Mapping[str, Any], ...]:
        """Meta's error objects as sent (failed statuses)."""
        raw = self.raw.get("errors")
        if not isinstance(raw, list):
            return ()
        return tuple(item for item in raw if isinstance(item, Mapping))

    def to_json(self) -> str:
        document = {
            "schemaVersion": SCHEMA_VERSION,
            "kind": KIND_STATUS,
            "receivedAt": _iso(self.received_at),
            "business": {
                "phoneNumberId": self.business.phone_number_id,
                "displayPhoneNumber": self.business.display_phone_number,
                "wabaId": self.waba_id,
            },
            "status": dict(self.raw),
        }
        return json.dumps(document, ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> QueuedStatus:
        raw = document.get("status")
        if not isinstance(raw, Mapping):
            raise UnreadableRecord("the status record lacks `status`")
        reply_wamid = raw.get("id")
        if not isinstance(reply_wamid, str) or not reply_wamid:
            raise UnreadableRecord("the status record lacks status.id")
        business = document.get("business")
        business = business if isinstance(business, Mapping) else {}
        return cls(
            raw={key: raw[key] for key in STATUS_KEYS if key in raw},
            business=BusinessNumber(
                phone_number_id=str(business.get("phoneNumberId") or ""),
                display_phone_number=str(business.get("displayPhoneNumber") or ""),
            ),
            waba_id=str(business.get("wabaId") or ""),
            received_at=_parse_iso(document.get("receivedAt")),
        )


def status_reply_wamid(body: str) -> str | None:
    """The reply a status record is about (None for anything else): lets one batch follow one
    reply's statuses in order, one at a time."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(document, Mapping) or document.get("kind") != KIND_STATUS:
        return None
    status = document.get("status")
    reply_wamid = status.get("id") if isinstance(status, Mapping) else None
    return reply_wamid if isinstance(reply_wamid, str) and reply_wamid else None


def read_record(body: str) -> QueuedRecord | QueuedStatus:
    """Any queued record, by its `kind`; `UnreadableRecord` when no code here can read it."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        raise UnreadableRecord("the record is not JSON") from None
    if not isinstance(document, Mapping):
        raise UnreadableRecord("the record is not a JSON object")
    version = document.get("schemaVersion")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnreadableRecord(f"unsupported schemaVersion {version!r}")
    kind = document.get("kind", KIND_MESSAGE)
    if kind == KIND_MESSAGE:
        return QueuedRecord.from_document(document)
    if kind == KIND_STATUS:
        return QueuedStatus.from_document(document)
    raise UnreadableRecord(f"unknown record kind {kind!r}")


def _text(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UnreadableRecord("receivedAt is not an ISO-8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise UnreadableRecord("the record lacks receivedAt")
