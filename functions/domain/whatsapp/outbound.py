"""What the consumer sends to the Graph API: the outbound message types, mark-as-read and the
typing indicator, as validated models that render Meta's JSON bodies.

Plain Python. Limits are Meta's (Cloud API "Messages" reference): a model that
breaks one raises `InvalidOutbound` when it is built, so a bad reply rules file fails at load, not
on the first customer message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGING_PRODUCT = "whatsapp"
MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
MAX_BUTTONS = 3
MAX_BUTTON_TITLE_CHARS = 20
MAX_LIST_ROWS = 10
MAX_LIST_ROW_TITLE_CHARS = 24
MAX_INTERACTIVE_BODY_CHARS = 1024
MEDIA_KINDS = frozenset({"image", "document", "video", "audio", "sticker"})
CAPTIONED_MEDIA = frozenset({"image", "document", "video"})


class InvalidOutbound(ValueError):
    """An outbound message that Meta would refuse; the message says which limit."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidOutbound(message)


def _non_empty(value: str, what: str) -> None:
    _require(bool(value and value.strip()), f"{what} must not be empty")


@dataclass(frozen=True, slots=True)
class Text:
    body: str
    preview_url: bool = False
    type: str = field(default="text", init=False)

    def __post_init__(self) -> None:
        _non_empty(self.body, "text body")
        _require(len(self.body) <= MAX_TEXT_CHARS, f"text body exceeds {MAX_TEXT_CHARS} chars")

    def payload(self) -> dict[str, Any]:
        return {"body": self.body, "preview_url": self.preview_url}


@dataclass(frozen=True, slots=True)
class Media:
    """image, document, video, audio or sticker, by uploaded media id or public https link."""

    kind: str
    media_id: str | None = None
    link: str | None = None
    caption: str | None = None
    filename: str | None = None

    def __post_init__(self) -> None:
        _require(self.kind in MEDIA_KINDS, f"media kind must be one of {sorted(MEDIA_KINDS)}")
        _require(
            (self.media_id is None) != (self.link is None),
            f"{self.kind} needs exactly one of mediaId or link",
        )
        if self.link is not None:
            _require(self.link.startswith("https://"), f"{self.kind} link must be https")
        if self.caption is not None:
            _require(self.kind in CAPTIONED_MEDIA, f"{self.kind} cannot carry a caption")
            _require(
                len(self.caption) <= MAX_CAPTION_CHARS,
                f"caption exceeds {MAX_CAPTION_CHARS} chars",
            )
        if self.filename is not None:
            _require(self.kind == "document", "only a document carries a filename")

    @property
    def type(self) -> str:
        return self.kind

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = (
            {"id": self.media_id} if self.media_id is not None else {"link": self.link}
        )
        if self.caption is not None:
            body["caption"] = self.caption
        if self.filename is not None:
            body["filename"] = self.filename
        return body


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    language: str = "en_US"
    components: tuple[Mapping[str, Any], ...] = ()
    type: str = field(default="template", init=False)

    def __post_init__(self) -> None:
        _non_empty(self.name, "template name")
        _non_empty(self.language, "template language")

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "language": {"code": self.language}}
        if self.components:
            body["components"] = [dict(component) for component in self.components]
        return body


@dataclass(frozen=True, slots=True)
class Button:
    id: str
    title: str

    def __post_init__(self) -> None:
        _non_empty(self.id, "button id")
        _non_empty(self.title, "button title")
        _require(
            len(self.title) <= MAX_BUTTON_TITLE_CHARS,
            f"button title {self.title!r} exceeds {MAX_BUTTON_TITLE_CHARS} chars",
        )


@dataclass(frozen=True, slots=True)
class Buttons:
    """Interactive reply buttons (up to three)."""

    body: str
    buttons: tuple[Button, ...]
    header: str | None = None
    footer: str | None = None
    type: str = field(default="interactive", init=False)

    def __post_init__(self) -> None:
        _non_empty(self.body, "interactive body")
        _require(len(self.body) <= MAX_INTERACTIVE_BODY_CHARS, "interactive body is too long")
        _require(1 <= len(self.buttons) <= MAX_BUTTONS, f"1 to {MAX_BUTTONS} buttons")
        _require(len({b.id for b in self.buttons}) == len(self.buttons), "button ids must differ")

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "button",
            "body": {"text": self.body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in self.buttons
                ]
            },
        }
        _decorate(body, self.header, self.footer)
        return body


@dataclass(frozen=True, slots=True)
class ListRow:
    id: str
    title: str
    description: str | None = None

    def __post_init__(self) -> None:
        _non_empty(self.id, "list row id")
        _non_empty(self.title, "list row title")
        _require(
            len(self.title) <= MAX_LIST_ROW_TITLE_CHARS,
            f"list row title {self.title!r} exceeds {MAX_LIST_ROW_TITLE_CHARS} chars",
        )


@dataclass(frozen=True, slots=True)
class ListSection:
    title: str
    rows: tuple[ListRow, ...]


@dataclass(frozen=True, slots=True)
class ListMenu:
    """An interactive list: a button that opens up to ten rows in sections."""

    body: str
    button: str
    sections: tuple[ListSection, ...]
    header: str | None = None
    footer: str | None = None
    type: str = field(default="interactive", init=False)

    def __post_init__(self) -> None:
        _non_empty(self.body, "interactive body")
        _non_empty(self.button, "list button")
        _require(len(self.button) <= MAX_BUTTON_TITLE_CHARS, "list button label is too long")
        rows = [row for section in self.sections for row in section.rows]
        _require(1 <= len(rows) <= MAX_LIST_ROWS, f"a list has 1 to {MAX_LIST_ROWS} rows")
        _require(len({row.id for row in rows}) == len(rows), "list row ids must differ")

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "list",
            "body": {"text": self.body},
            "action": {
                "button": self.button,
                "sections": [
                    {
                        "title": section.title,
                        "rows": [
                            {"id": row.id, "title": row.title}
                            | ({"description": row.description} if row.description else {})
                            for row in section.rows
                        ],
                    }
                    for section in self.sections
                ],
            },
        }
        _decorate(body, self.header, self.footer)
        return body


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction to a message; `message_id` None means "the message being answered"."""

    emoji: str
    message_id: str | None = None
    type: str = field(default="reaction", init=False)

    def __post_init__(self) -> None:
        _non_empty(self.emoji, "reaction emoji")

    def payload(self) -> dict[str, Any]:
        return {"message_id": self.message_id or "", "emoji": self.emoji}


@dataclass(frozen=True, slots=True)
class MetaMessage:
    """An outbound message in Meta's own JSON, as a reply handler returned it: checked by
    `outbound_dicts.parse_outbound`, then sent exactly as given (plus the addressing)."""

    type: str
    content: Any  # the value under `type`: an object for every type but `contacts` (a list)
    context_message_id: str | None = None  # the handler's own `context.message_id`, if any
    extra: Mapping[str, Any] = field(default_factory=dict)  # biz_opaque_callback_data

    def payload(self) -> Any:
        return self.content

    def reply_to(self, default: str | None) -> str | None:
        """The wamid this message threads on: the handler's own choice, else `default`; never
        for a reaction (which names its message inside and cannot carry a context)."""
        if self.type == "reaction":
            return None
        return self.context_message_id or default


OutboundMessage = Text | Media | Template | Buttons | ListMenu | Reaction | MetaMessage


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a message goes to: a phone number (Meta's `to`) or, for a user Meta knows only by a
    username, their business-scoped user id (BSUID, Meta's `recipient`).

    Never both: when a body carries `to` and `recipient`, Meta sends to `to`.
    """

    address: str
    by_user_id: bool = False

    def __post_init__(self) -> None:
        _non_empty(self.address, "recipient")

    @classmethod
    def phone(cls, wa_id: str) -> Recipient:
        return cls(wa_id)

    @classmethod
    def user_id(cls, bsuid: str) -> Recipient:
        return cls(bsuid, by_user_id=True)

    def fields(self) -> dict[str, str]:
        """The send body's addressing field."""
        return {"recipient": self.address} if self.by_user_id else {"to": self.address}


def _decorate(body: dict[str, Any], header: str | None, footer: str | None) -> None:
    if header:
        body["header"] = {"type": "text", "text": header}
    if footer:
        body["footer"] = {"text": footer}


def send_body(
    to: Recipient | str | None, message: OutboundMessage, *, reply_to: str | None
) -> dict[str, Any]:
    """The JSON body of `POST /{phone_number_id}/messages` sending `message` to `to` (a plain
    string is a phone number; None or "" is refused: a reply needs a recipient).

    `reply_to` threads the reply (`context.message_id`); a reaction reacts to it instead, since
    a reaction cannot carry a context.
    """
    if to is None:
        raise InvalidOutbound("recipient must not be empty")
    recipient = to if isinstance(to, Recipient) else Recipient.phone(to)
    if isinstance(message, Reaction) and message.message_id is None:
        if reply_to is None:
            raise InvalidOutbound("a reaction needs the message it reacts to")
        message = Reaction(emoji=message.emoji, message_id=reply_to)
    body: dict[str, Any] = {
        "messaging_product": MESSAGING_PRODUCT,
        "recipient_type": "individual",
        **recipient.fields(),
        "type": message.type,
        message.type: message.payload(),
    }
    if reply_to is not None and not isinstance(message, Reaction):
        body["context"] = {"message_id": reply_to}
    return body


def rendered(message: OutboundMessage) -> dict[str, Any]:
    """The type part of a send body, `{"type": T, T: {...}}`: what a reply is remembered as."""
    return {"type": message.type, message.type: message.payload()}


def addressed_body(
    recipient: Mapping[str, str], message: Mapping[str, Any], *, reply_to: str | None
) -> dict[str, Any]:
    """A send body from parts already rendered: a remembered reply's addressing (`{"to": …}` or
    `{"recipient": …}`) and its type part (`rendered`) - a resend, or a late fallback.

    `reply_to` threads it, except a reaction (which names the message it reacts to itself)."""
    addressing = {key: value for key, value in recipient.items() if key in ("to", "recipient")}
    _require(any(value for value in addressing.values()), "the reply has no recipient")
    kind = message.get("type")
    _require(isinstance(kind, str) and isinstance(message.get(kind), Mapping), "no message part")
    assert isinstance(kind, str)
    body: dict[str, Any] = {
        "messaging_product": MESSAGING_PRODUCT,
        "recipient_type": "individual",
        **addressing,
        "type": kind,
        kind: dict(message[kind]),
    }
    if reply_to is not None and kind != "reaction":
        body["context"] = {"message_id": reply_to}
    return body


def mark_read_body(wamid: str, *, typing_indicator: bool) -> dict[str, Any]:
    """Mark `wamid` (and earlier messages of its thread) read; optionally show "typing…"."""
    _non_empty(wamid, "message id")
    body: dict[str, Any] = {
        "messaging_product": MESSAGING_PRODUCT,
        "status": "read",
        "message_id": wamid,
    }
    if typing_indicator:
        body["typing_indicator"] = {"type": "text"}
    return body
