"""Helpers for writing a reply handler (docs/reply-handler.md): the type of the event it gets,
builders of the messages it returns, and readers for the message it answers.

    from functions.handler_kit import HandlerEvent, text, text_of

    def handle(event: HandlerEvent):
        said = text_of(event["message"])
        return text(f"You said: {said}") if said else None

Every builder returns a plain dict in Meta's send format — exactly what a handler may also
write by hand — and checks it now, against the same limits the pipeline checks before sending,
so a mistake raises where it is made (`InvalidOutbound`, with the field at fault).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from functions.domain.whatsapp.outbound import InvalidOutbound
from functions.domain.whatsapp.outbound_dicts import parse_outbound

__all__ = [
    "HandlerEvent",
    "InvalidOutbound",
    "Message",
    "Metadata",
    "audio",
    "buttons",
    "document",
    "image",
    "in_reply_to",
    "list_menu",
    "location",
    "reaction",
    "reply_id_of",
    "sticker",
    "template",
    "text",
    "text_of",
    "video",
]

Message = dict[str, Any]


class Metadata(TypedDict):
    display_phone_number: str
    phone_number_id: str  # the business number that received the message; replies go from it


class HandlerEvent(TypedDict):
    message: dict[str, Any]  # Meta's `messages[]` object, exactly as received
    contact: dict[str, Any] | None  # Meta's `contacts[]` object for the sender, or None
    metadata: Metadata
    burst: list[dict[str, Any]]  # the messages answered together, oldest first; ends with message


# --- building replies --------------------------------------------------------------------------


def text(body: str, *, preview_url: bool = False) -> Message:
    return _checked({"type": "text", "text": {"body": body, "preview_url": preview_url}})


def image(
    *, link: str | None = None, media_id: str | None = None, caption: str | None = None
) -> Message:
    return _media("image", link, media_id, caption=caption)


def video(
    *, link: str | None = None, media_id: str | None = None, caption: str | None = None
) -> Message:
    return _media("video", link, media_id, caption=caption)


def document(
    *,
    link: str | None = None,
    media_id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
) -> Message:
    return _media("document", link, media_id, caption=caption, filename=filename)


def audio(*, link: str | None = None, media_id: str | None = None) -> Message:
    return _media("audio", link, media_id)


def sticker(*, link: str | None = None, media_id: str | None = None) -> Message:
    return _media("sticker", link, media_id)


def template(
    name: str, language: str = "en_US", components: Sequence[Mapping[str, Any]] = ()
) -> Message:
    content: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        content["components"] = [dict(component) for component in components]
    return _checked({"type": "template", "template": content})


def buttons(
    body: str,
    choices: Mapping[str, str],
    *,
    header: str | None = None,
    footer: str | None = None,
) -> Message:
    """Up to three reply buttons, `{id: title}`; a tap comes back as an `interactive` message
    whose `button_reply.id` is the id (`reply_id_of`)."""
    content: dict[str, Any] = {
        "type": "button",
        "body": {"text": body},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": choice_id, "title": title}}
                for choice_id, title in choices.items()
            ]
        },
    }
    return _checked({"type": "interactive", "interactive": _decorated(content, header, footer)})


def list_menu(
    body: str,
    button: str,
    rows: Mapping[str, str],
    *,
    section: str = "Options",
    header: str | None = None,
    footer: str | None = None,
) -> Message:
    """A list of up to ten rows, `{id: title}`, opened by `button`; a pick comes back as an
    `interactive` message whose `list_reply.id` is the row's id."""
    content: dict[str, Any] = {
        "type": "list",
        "body": {"text": body},
        "action": {
            "button": button,
            "sections": [
                {
                    "title": section,
                    "rows": [{"id": row_id, "title": title} for row_id, title in rows.items()],
                }
            ],
        },
    }
    return _checked({"type": "interactive", "interactive": _decorated(content, header, footer)})


def reaction(emoji: str, *, message_id: str | None = None) -> Message:
    """A reaction to `message_id`, by default to the message being answered ("" removes one)."""
    content: dict[str, Any] = {"emoji": emoji}
    if message_id is not None:
        content["message_id"] = message_id
    return _checked({"type": "reaction", "reaction": content})


def location(
    latitude: float, longitude: float, *, name: str | None = None, address: str | None = None
) -> Message:
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    content |= {key: value for key, value in (("name", name), ("address", address)) if value}
    return _checked({"type": "location", "location": content})


def in_reply_to(message: Message, wamid: str) -> Message:
    """`message` threaded on `wamid` (e.g. one message of a burst) instead of the default: the
    first reply threads on the message answered, later ones on nothing."""
    return _checked({**message, "context": {"message_id": wamid}})


# --- reading the message -----------------------------------------------------------------------


def text_of(message: Mapping[str, Any]) -> str | None:
    """What the user wrote or tapped: a text's body, a media caption, a template button's text,
    or the title of a reply button or list row; None for anything else."""
    kind = message.get("type")
    content = message.get(str(kind))
    if not isinstance(content, Mapping):
        return None
    if kind == "text":
        value = content.get("body")
    elif kind in ("image", "video", "document"):
        value = content.get("caption")
    elif kind == "button":
        value = content.get("text")
    elif kind == "interactive":
        reply = content.get(str(content.get("type")))
        value = reply.get("title") if isinstance(reply, Mapping) else None
    else:
        value = None
    return value if isinstance(value, str) else None


def reply_id_of(message: Mapping[str, Any]) -> str | None:
    """The id of the reply button or list row tapped, or a template quick reply's payload."""
    kind = message.get("type")
    content = message.get(str(kind))
    if not isinstance(content, Mapping):
        return None
    if kind == "interactive":
        reply = content.get(str(content.get("type")))
        value = reply.get("id") if isinstance(reply, Mapping) else None
    elif kind == "button":
        value = content.get("payload")
    else:
        value = None
    return value if isinstance(value, str) else None


# --- helpers -----------------------------------------------------------------------------------


def _media(
    kind: str,
    link: str | None,
    media_id: str | None,
    *,
    caption: str | None = None,
    filename: str | None = None,
) -> Message:
    if (link is None) == (media_id is None):
        raise InvalidOutbound(f"{kind} needs exactly one of link or media_id")
    content: dict[str, Any] = {"link": link} if link is not None else {"id": media_id}
    content |= {
        key: value for key, value in (("caption", caption), ("filename", filename)) if value
    }
    return _checked({"type": kind, kind: content})


def _decorated(content: dict[str, Any], header: str | None, footer: str | None) -> dict[str, Any]:
    if header:
        content["header"] = {"type": "text", "text": header}
    if footer:
        content["footer"] = {"text": footer}
    return content


def _checked(message: Message) -> Message:
    parse_outbound(message, answering="")  # raises InvalidOutbound naming the field
    return message
