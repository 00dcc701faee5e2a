"""Typed models of a WhatsApp Cloud API webhook delivery, and the parser that builds them.

The parser reads what `json.loads` made: objects are `dict`s (checked as such: an ABC check
against `Mapping` cost a tenth of the ingest's time per webhook).

Plain Python: no AWS, no HTTP. The parser walks every entry, every change and every message,
status and error in them (one POST can carry up to 1,000 updates across several business
numbers). A body that is not a JSON object raises `InvalidPayload`; a malformed piece inside one
is skipped and named in `WebhookDelivery.problems`; unknown message types, unknown fields and
extra keys are kept or counted, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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
    """The sender as `contacts[]` describes them. Since 2026 every user has a business-scoped
    user id (BSUID, `user_id`); `wa_id` (the phone) is absent for some who adopted a username."""

    wa_id: str
    name: str | None = None
    user_id: str | None = None
    username: str | None = None
    parent_user_id: str | None = None  # one BSUID across a managed business's portfolios
    # Meta's `contacts[]` object exactly as sent (for a reply handler); {} when unknown.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


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
    """`user_changed_number` (new `wa_id`) or `user_changed_user_id` (new BSUID, with
    `previous_user_id`): the user is the same person, the conversation goes on."""

    kind: str | None = None
    body: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    previous_user_id: str | None = None


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
    sender_user_id: str | None = None  # `from_user_id`: the sender's BSUID (2026)

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
    def sender_phone(self) -> str:
        """The sender's phone number (`from`, else the contact's `wa_id`); "" when Meta withheld
        it (a user with a username)."""
        return self.message.sender or (self.contact.wa_id if self.contact else "") or ""

    @property
    def sender_user_id(self) -> str:
        """The sender's business-scoped user id (`from_user_id`, else the contact's `user_id`);
        "" in payloads from before 2026."""
        return self.message.sender_user_id or (self.contact.user_id if self.contact else "") or ""

    @property
    def sender_key(self) -> str:
        """Who sent it, for logs (masked there): the phone, else the BSUID."""
        return self.sender_phone or self.sender_user_id

    @property
    def conversation_key(self) -> str:
        """Who the conversation is with, stable as far as Meta lets it be: the BSUID when Meta
        gives one (it comes with the phone, too, for every user since 2026, so it does not change
        when the user adopts a username and the phone disappears), else the phone.
        docs/decisions.md explains the one switch left: phone-only, then BSUID."""
        return self.sender_user_id or self.sender_phone


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """What happened to one of OUR outbound messages. Never replied to."""

    wamid: str
    status: str
    recipient_id: str  # a phone number, or "" for a message sent to a BSUID: masked in logs
    timestamp: str
    business: BusinessNumber
    errors: tuple[MetaError, ...] = ()
    recipient_user_id: str = ""  # the recipient's BSUID (2026)
    waba_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)  # as Meta sent it (never queued whole)

    @property
    def recipient_key(self) -> str:
        """Who it went to, for logs (masked there): the phone, else the BSUID."""
        return self.recipient_id or self.recipient_user_id


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    messages: tuple[ReceivedMessage, ...] = ()
    statuses: tuple[StatusUpdate, ...] = ()
    errors: tuple[MetaError, ...] = ()  # value-level (account/app) errors
    ignored_fields: tuple[str, ...] = ()  # changes whose field is not `messages`
    problems: tuple[str, ...] = ()  # malformed pieces that were skipped, by path


# --- parsing --------------------------------------------------------------------------------------


def parse_delivery(document: object) -> WebhookDelivery:
    """Read a decoded webhook body.

    Only a body that is not a JSON object raises `InvalidPayload`. A malformed piece inside a
    signed delivery (an entry that is not an object, a message without an id, ...) is skipped
    and named in `problems`, so it never costs the valid messages beside it: refusing the whole
    delivery would only make Meta resend the same bytes for a week.
    """
    if not isinstance(document, dict):
        raise InvalidPayload("the body must be a JSON object")
    object_type = document.get("object")
    if object_type is not None and object_type != WHATSAPP_OBJECT:
        return WebhookDelivery(ignored_fields=(f"object:{object_type}",))

    found = _Found()
    for entry_path, entry in _objects(document, "entry", "entry", found.problems):
        waba_id = _optional_str(entry.get("id")) or ""
        changes_path = f"{entry_path}.changes"
        for change_path, change in _objects(entry, "changes", changes_path, found.problems):
            change_field = change.get("field", MESSAGES_FIELD)
            if change_field != MESSAGES_FIELD:
                found.ignored.append(str(change_field))
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                found.problems.append(f"{change_path}.value must be an object")
                continue
            _parse_value(value, f"{change_path}.value", waba_id=waba_id, found=found)
    return WebhookDelivery(
        messages=tuple(found.messages),
        statuses=tuple(found.statuses),
        errors=tuple(found.errors),
        ignored_fields=tuple(found.ignored),
        problems=tuple(found.problems),
    )


@dataclass
class _Found:
    messages: list[ReceivedMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    errors: list[MetaError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _parse_value(value: Mapping[str, Any], path: str, *, waba_id: str, found: _Found) -> None:
    metadata = value.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    business = BusinessNumber(
        phone_number_id=_optional_str(metadata.get("phone_number_id")) or "",
        display_phone_number=_optional_str(metadata.get("display_phone_number")) or "",
    )
    contacts = [
        _parse_contact(raw)
        for _, raw in _objects(value, "contacts", f"{path}.contacts", found.problems)
    ]
    raw_messages = list(_objects(value, "messages", f"{path}.messages", found.problems))
    if raw_messages and not business.phone_number_id:
        # Without the receiving number there is no number to reply from.
        found.problems.append(
            f"{path}.metadata.phone_number_id is missing: {len(raw_messages)} message(s) skipped"
        )
        raw_messages = []
    for message_path, raw in raw_messages:
        try:
            message = parse_message(raw, message_path)
        except InvalidPayload as problem:
            found.problems.append(str(problem))
            continue
        found.messages.append(
            ReceivedMessage(
                message=message,
                business=business,
                waba_id=waba_id,
                contact=_contact_for(message, contacts),
            )
        )
    for _, raw in _objects(value, "statuses", f"{path}.statuses", found.problems):
        found.statuses.append(_parse_status(raw, business, waba_id))
    found.errors.extend(_parse_errors(value.get("errors")))


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
        sender_user_id=_optional_str(raw.get("from_user_id")) or None,
    )


def _parse_content(message_type: str, raw: Mapping[str, Any]) -> MessageContent:
    body = raw.get(message_type)
    body = body if isinstance(body, dict) else {}
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
    reply = reply if isinstance(reply, dict) else {}
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
        kind=_optional_str(body.get("type")),
        body=_optional_str(body.get("body")),
        wa_id=_optional_str(body.get("wa_id")),
        user_id=_optional_str(body.get("user_id")),
        previous_user_id=_optional_str(body.get("previous_user_id")),
    ),
    "unsupported": lambda body: UnsupportedContent(kind=_optional_str(body.get("type"))),
}


def _parse_context(raw: object) -> MessageContext | None:
    if not isinstance(raw, dict):
        return None
    return MessageContext(
        message_id=_optional_str(raw.get("id")),
        sender=_optional_str(raw.get("from")),
        forwarded=raw.get("forwarded") is True,
        frequently_forwarded=raw.get("frequently_forwarded") is True,
    )


def _parse_contact(raw: Mapping[str, Any]) -> Contact:
    profile = raw.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    return Contact(
        wa_id=_optional_str(raw.get("wa_id")) or "",
        name=_optional_str(profile.get("name")),
        user_id=_optional_str(raw.get("user_id")) or None,
        # Meta documents it in `profile`; some copies of its pages show it beside `user_id`.
        username=_optional_str(profile.get("username")) or _optional_str(raw.get("username")),
        parent_user_id=_optional_str(raw.get("parent_user_id")) or None,
        raw=raw,
    )


def _contact_for(message: InboundMessage, contacts: Sequence[Contact]) -> Contact | None:
    """The contact entry describing the sender (by phone or by BSUID); alone, the only contact
    is the sender's."""
    for contact in contacts:
        if (message.sender and contact.wa_id == message.sender) or (
            message.sender_user_id and contact.user_id == message.sender_user_id
        ):
            return contact
    if len(contacts) == 1:
        return contacts[0]
    return None


def _parse_status(
    raw: Mapping[str, Any], business: BusinessNumber, waba_id: str = ""
) -> StatusUpdate:
    return StatusUpdate(
        wamid=_optional_str(raw.get("id")) or "",
        status=_optional_str(raw.get("status")) or "unknown",
        recipient_id=_optional_str(raw.get("recipient_id")) or "",
        timestamp=_optional_str(raw.get("timestamp")) or "",
        business=business,
        errors=tuple(_parse_errors(raw.get("errors"))),
        recipient_user_id=_optional_str(raw.get("recipient_user_id")) or "",
        waba_id=waba_id,
        raw=raw,
    )


def _parse_errors(raw: object) -> list[MetaError]:
    if not isinstance(raw, list):
        return []
    return [parse_error(item) for item in raw if isinstance(item, dict)]


def parse_error(raw: Mapping[str, Any]) -> MetaError:
    """An `{code, title, message, error_data: {details}}` object, tolerant of missing parts."""
    code = raw.get("code")
    if isinstance(code, str) and code.strip().lstrip("-").isdigit():
        code = int(code)
    error_data = raw.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return MetaError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        title=_optional_str(raw.get("title")) or "",
        message=_optional_str(raw.get("message")) or "",
        details=_optional_str(details) or "",
    )


# --- tolerant accessors ---------------------------------------------------------------------------


def _objects(
    container: Mapping[str, Any], key: str, path: str, problems: list[str]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, item) for each object in the list at `key`; anything else goes to `problems`."""
    value = container.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        problems.append(f"{path} must be a list")
        return
    for index, item in enumerate(value):
        if isinstance(item, dict):
            yield f"{path}[{index}]", item
        else:
            problems.append(f"{path}[{index}] must be an object")


def _mappings(value: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, dict))


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
