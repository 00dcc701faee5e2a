"""Typed models of a WhatsApp Cloud API webhook delivery, and the parser that builds them.

Plain Python: no AWS, no HTTP. The parser walks every entry, every change and every message,
status and error in them (one POST can carry up to 1,000 updates across several business
numbers). Envelope structure that is wrong raises `InvalidPayload` naming where; unknown message
types, unknown fields and extra keys are kept or counted, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WHATSAPP_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"


class InvalidPayload(ValueError):
    """The body is signed but is not a webhook we can read; the message says where."""


# --- building blocks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetaError:
    """An error object as Meta puts it in statuses, messages and `value.errors`."""

    code: int | None
    title: str = ""
    message: str = ""
    details: str = ""

    @property
    def code_label(self) -> str:
        """The `ErrorCode` metric dimension: the numeric code, or `unknown`."""
        return str(self.code) if self.code is not None else "unknown"


@dataclass(frozen=True, slots=True)
class BusinessNumber:
    """The business phone number that received a message: replies go out from it."""

    phone_number_id: str
    display_phone_number: str = ""


@dataclass(frozen=True, slots=True)
class Contact:
    wa_id: str
    name: str | None = None
    user_id: str | None = None  # business-scoped id of a user with a username (2026)


# --- message contents, one type per `messages[].type` -------------------------------------------


@dataclass(frozen=True, slots=True)
class TextContent:
    body: str


@dataclass(frozen=True, slots=True)
class MediaContent:
    """image, video, audio, document or sticker."""

    kind: str
    media_id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class LocationContent:
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class ContactsContent:
    cards: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class InteractiveReply:
    """A tap on a reply button (`button_reply`), a list row (`list_reply`) or a flow
    (`nfm_reply`)."""

    kind: str
    reply_id: str | None = None
    title: str | None = None
    description: str | None = None
    response_json: str | None = None


@dataclass(frozen=True, slots=True)
class ButtonContent:
    """A quick-reply button of a template message."""

    payload: str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ReactionContent:
    message_id: str | None
    emoji: str | None

    @property
    def removed(self) -> bool:
        """Meta sends a reaction without emoji (or with "") when the user takes it back."""
        return not self.emoji


@dataclass(frozen=True, slots=True)
class OrderContent:
    catalog_id: str | None = None
    product_items: tuple[Mapping[str, Any], ...] = ()
    text: str | None = None


@dataclass(frozen=True, slots=True)
class SystemContent:
    kind: str | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class UnsupportedContent:
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownContent:
    """A type this code does not know yet; the raw message is kept on `InboundMessage.raw`."""

    type: str


MessageContent = (
    TextContent
    | MediaContent
    | LocationContent
    | ContactsContent
    | InteractiveReply
    | ButtonContent
    | ReactionContent
    | OrderContent
    | SystemContent
    | UnsupportedContent
    | UnknownContent
)

MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the user replied to, or forwarding flags."""

    message_id: str | None = None
    sender: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class InboundMessage:
    wamid: str
    sender: str  # `from`: may be empty for users with usernames — never assume a phone
    type: str
    timestamp: str
    content: MessageContent
    context: MessageContext | None = None
    referral: Mapping[str, Any] | None = None
    errors: tuple[MetaError, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sent_at(self) -> datetime | None:
        try:
            return datetime.fromtimestamp(int(self.timestamp), tz=UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True, slots=True, eq=False)
class ReceivedMessage:
    """An inbound message with the facts around it that a reply needs."""

    message: InboundMessage
    business: BusinessNumber
    waba_id: str
    contact: Contact | None

    @property
    def sender_key(self) -> str:
        """Who sent it: the phone (`from`), else the username's business-scoped id."""
        user_id = self.contact.user_id if self.contact else None
        from_user_id = _optional_str(self.message.raw.get("from_user_id"))
        return self.message.sender or user_id or from_user_id or ""


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """What happened to one of OUR outbound messages. Never replied to."""

    wamid: str
    status: str
    recipient_id: str
    timestamp: str
    business: BusinessNumber
    errors: tuple[MetaError, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    messages: tuple[ReceivedMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[MetaError, ...] = ()  # value-level (account/app) errors
    ignored_fields: tuple[str, ...] = ()  # changes whose field is not `messages`


# --- parsing --------------------------------------------------------------------------------------


def parse_delivery(document: object) -> WebhookDelivery:
    """Read a decoded webhook body. Raises `InvalidPayload` naming the first misplaced piece."""
    if not isinstance(document, Mapping):
        raise InvalidPayload("the body must be a JSON object")
    object_type = document.get("object")
    if object_type is not None and object_type != WHATSAPP_OBJECT:
        return WebhookDelivery(ignored_fields=(f"object:{object_type}",))

    messages: list[ReceivedMessage] = []
    statuses: list[StatusUpdate] = []
    errors: list[MetaError] = []
    ignored: list[str] = []
    for e, raw_entry in enumerate(_list(document, "entry", "entry")):
        entry_path = f"entry[{e}]"
        entry = _mapping(raw_entry, entry_path)
        waba_id = _optional_str(entry.get("id")) or ""
        for c, raw_change in enumerate(_list(entry, "changes", f"{entry_path}.changes")):
            change_path = f"{entry_path}.changes[{c}]"
            change = _mapping(raw_change, change_path)
            change_field = change.get("field", MESSAGES_FIELD)
            if change_field != MESSAGES_FIELD:
                ignored.append(str(change_field))
                continue
            value = _mapping(change.get("value"), f"{change_path}.value")
            _parse_value(
                value,
                f"{change_path}.value",
                waba_id=waba_id,
                messages=messages,
                statuses=statuses,
                errors=errors,
            )
    return WebhookDelivery(tuple(messages), tuple(statuses), tuple(errors), tuple(ignored))


def _parse_value(
    value: Mapping[str, Any],
    path: str,
    *,
    waba_id: str,
    messages: list[ReceivedMessage],
    statuses: list[StatusUpdate],
    errors: list[MetaError],
) -> None:
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    business = BusinessNumber(
        phone_number_id=_optional_str(metadata.get("phone_number_id")) or "",
        display_phone_number=_optional_str(metadata.get("display_phone_number")) or "",
    )
    contacts = [
        _parse_contact(raw)
        for raw in _list(value, "contacts", f"{path}.contacts")
        if isinstance(raw, Mapping)
    ]
    raw_messages = _list(value, "messages", f"{path}.messages")
    if raw_messages and not business.phone_number_id:
        # Without the receiving number there is no number to reply from.
        raise InvalidPayload(f"{path}.metadata.phone_number_id is missing")
    for m, raw in enumerate(raw_messages):
        message = parse_message(_mapping(raw, f"{path}.messages[{m}]"), f"{path}.messages[{m}]")
        messages.append(
            ReceivedMessage(
                message=message,
                business=business,
                waba_id=waba_id,
                contact=_contact_for(message, contacts),
            )
        )
    for s, raw in enumerate(_list(value, "statuses", f"{path}.statuses")):
        statuses.append(_parse_status(_mapping(raw, f"{path}.statuses[{s}]"), business))
    errors.extend(_parse_errors(value.get("errors")))


def parse_message(raw: Mapping[str, Any], path: str = "message") -> InboundMessage:
    """One `messages[]` object (also used by the consumer to read a queued record)."""
    wamid = raw.get("id")
    if not isinstance(wamid, str) or not wamid:
        raise InvalidPayload(f"{path}.id must be a non-empty string")
    message_type = _optional_str(raw.get("type")) or "unknown"
    return InboundMessage(
        wamid=wamid,
        sender=_optional_str(raw.get("from")) or "",
        type=message_type,
        timestamp=_optional_str(raw.get("timestamp")) or "",
        content=_parse_content(message_type, raw),
        context=_parse_context(raw.get("context")),
        referral=raw["referral"] if isinstance(raw.get("referral"), Mapping) else None,
        errors=tuple(_parse_errors(raw.get("errors"))),
        raw=raw,
    )


def _parse_content(message_type: str, raw: Mapping[str, Any]) -> MessageContent:
    body = raw.get(message_type)
    body = body if isinstance(body, Mapping) else {}
    if message_type in MEDIA_TYPES:
        return MediaContent(
            kind=message_type,
            media_id=_optional_str(body.get("id")),
            mime_type=_optional_str(body.get("mime_type")),
            sha256=_optional_str(body.get("sha256")),
            caption=_optional_str(body.get("caption")),
            filename=_optional_str(body.get("filename")),
        )
    if message_type == "contacts":
        cards = raw.get("contacts")
        return ContactsContent(cards=_mappings(cards))
    parser = _CONTENT_PARSERS.get(message_type)
    return parser(body) if parser else UnknownContent(type=message_type)


def _parse_location(body: Mapping[str, Any]) -> LocationContent:
    return LocationContent(
        latitude=_optional_float(body.get("latitude")),
        longitude=_optional_float(body.get("longitude")),
        name=_optional_str(body.get("name")),
        address=_optional_str(body.get("address")),
    )


def _parse_order(body: Mapping[str, Any]) -> OrderContent:
    return OrderContent(
        catalog_id=_optional_str(body.get("catalog_id")),
        product_items=_mappings(body.get("product_items")),
        text=_optional_str(body.get("text")),
    )


def _parse_interactive(body: Mapping[str, Any]) -> InteractiveReply:
    kind = _optional_str(body.get("type")) or "unknown"
    reply = body.get(kind)
    reply = reply if isinstance(reply, Mapping) else {}
    return InteractiveReply(
        kind=kind,
        reply_id=_optional_str(reply.get("id")),
        title=_optional_str(reply.get("title")) or _optional_str(reply.get("name")),
        description=_optional_str(reply.get("description")),
        response_json=_optional_str(reply.get("response_json")),
    )


_CONTENT_PARSERS: dict[str, Callable[[Mapping[str, Any]], MessageContent]] = {
    "text": lambda body: TextContent(body=_optional_str(body.get("body")) or ""),
    "location": _parse_location,
    "interactive": _parse_interactive,
    "button": lambda body: ButtonContent(
        payload=_optional_str(body.get("payload")), text=_optional_str(body.get("text"))
    ),
    "reaction": lambda body: ReactionContent(
        message_id=_optional_str(body.get("message_id")), emoji=_optional_str(body.get("emoji"))
    ),
    "order": _parse_order,
    "system": lambda body: SystemContent(
        kind=_optional_str(body.get("type")), body=_optional_str(body.get("body"))
    ),
    "unsupported": lambda body: UnsupportedContent(kind=_optional_str(body.get("type"))),
}


def _parse_context(raw: object) -> MessageContext | None:
    if not isinstance(raw, Mapping):
        return None
    return MessageContext(
        message_id=_optional_str(raw.get("id")),
        sender=_optional_str(raw.get("from")),
        forwarded=raw.get("forwarded") is True,
        frequently_forwarded=raw.get("frequently_forwarded") is True,
    )


def _parse_contact(raw: Mapping[str, Any]) -> Contact:
    profile = raw.get("profile")
    profile = profile if isinstance(profile, Mapping) else {}
    return Contact(
        wa_id=_optional_str(raw.get("wa_id")) or "",
        name=_optional_str(profile.get("name")),
        user_id=_optional_str(raw.get("user_id")),
    )


def _contact_for(message: InboundMessage, contacts: Sequence[Contact]) -> Contact | None:
    """The contact entry describing the sender; alone, the only contact is the sender's."""
    for contact in contacts:
        if message.sender and contact.wa_id == message.sender:
            return contact
    if len(contacts) == 1:
        return contacts[0]
    from_user_id = _optional_str(message.raw.get("from_user_id"))
    for contact in contacts:
        if from_user_id and contact.user_id == from_user_id:
            return contact
    return None


def _parse_status(raw: Mapping[str, Any], business: BusinessNumber) -> StatusUpdate:
    return StatusUpdate(
        wamid=_optional_str(raw.get("id")) or "",
        status=_optional_str(raw.get("status")) or "unknown",
        recipient_id=_optional_str(raw.get("recipient_id")) or "",
        timestamp=_optional_str(raw.get("timestamp")) or "",
        business=business,
        errors=tuple(_parse_errors(raw.get("errors"))),
    )


def _parse_errors(raw: object) -> list[MetaError]:
    if not isinstance(raw, list):
        return []
    return [parse_error(item) for item in raw if isinstance(item, Mapping)]


def parse_error(raw: Mapping[str, Any]) -> MetaError:
    """An `{code, title, message, error_data: {details}}` object, tolerant of missing parts."""
    code = raw.get("code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    error_data = raw.get("error_data")
    details = error_data.get("details") if isinstance(error_data, Mapping) else None
    return MetaError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        title=_optional_str(raw.get("title")) or "",
        message=_optional_str(raw.get("message")) or "",
        details=_optional_str(details) or "",
    )


# --- tolerant accessors ---------------------------------------------------------------------------


def _list(container: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayload(f"{path} must be a list")
    return value


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{path} must be an object")
    return value


def _mappings(value: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, Mapping))


def _optional_str(value: object) -> str | None:
    """Strings as they are; numbers Meta sometimes sends unquoted become strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _optional_float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
