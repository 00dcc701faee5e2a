"""Outbound messages as a reply handler returns them: plain dicts in Meta's own send format,
checked against Meta's limits before anything is sent.

A handler returns the part of Meta's send body that describes the message, e.g.
`{"type": "text", "text": {"body": "Hi"}}`; the pipeline adds `messaging_product`, the
recipient and, on the first reply, `context`. What is checked (docs/reply-handler.md):

- the shape: a JSON object with a non-empty string `type` and the object (for `contacts`, the
  list) named by it; besides those only `context` (`{"message_id": …}`, to thread on another
  message) and `biz_opaque_callback_data`. The addressing (`to`, `recipient`, `recipient_type`,
  `messaging_product`) is the pipeline's: a handler cannot send elsewhere by mistake;
- the types this project knows — text, image, video, audio, document, sticker, template,
  interactive (button, list, cta_url), reaction, location, contacts — against the limits the
  typed models enforce (docs of Meta's "Messages" reference);
- any other type (or interactive kind) is passed through as given, so a message type Meta adds
  tomorrow needs no release here: Meta decides, and a refusal is classified like any other.

Every refusal is an `InvalidOutbound` whose message names the reply and the field, e.g.
`reply 2 of 3: text.body exceeds 4096 chars`. What was accepted is sent exactly as returned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from functions.domain.whatsapp.outbound import (
    CAPTIONED_MEDIA,
    MAX_BUTTON_TITLE_CHARS,
    MAX_BUTTONS,
    MAX_CAPTION_CHARS,
    MAX_INTERACTIVE_BODY_CHARS,
    MAX_LIST_ROW_TITLE_CHARS,
    MAX_LIST_ROWS,
    MAX_TEXT_CHARS,
    MEDIA_KINDS,
    InvalidOutbound,
    MetaMessage,
    OutboundMessage,
    Recipient,
    send_body,
)

# One answer may hold this many messages: Meta paces a conversation at about one message every
# 6 s (bursts borrow), and every message is one more Graph call inside the invocation.
MAX_REPLIES: Final = 10
MAX_HEADER_TEXT_CHARS: Final = 60
MAX_FOOTER_TEXT_CHARS: Final = 60
MAX_BUTTON_ID_CHARS: Final = 256
MAX_LIST_ROW_ID_CHARS: Final = 200
MAX_LIST_ROW_DESCRIPTION_CHARS: Final = 72
MAX_LIST_SECTION_TITLE_CHARS: Final = 24
MAX_CALLBACK_DATA_CHARS: Final = 512
# Keys of the send body the pipeline owns: a handler never addresses a message itself.
PIPELINE_KEYS: Final = frozenset({"messaging_product", "recipient_type", "to", "recipient"})
ENVELOPE_KEYS: Final = frozenset({"type", "context", "biz_opaque_callback_data"})


def parse_replies(returned: object, *, answering: str) -> list[MetaMessage]:
    """What a reply handler returned -> the messages to send, in order.

    `None` or `[]` is no reply; one mapping is one message; a list (or tuple) holds up to
    `MAX_REPLIES`. `answering` is the wamid being answered: a reaction without its own
    `message_id` reacts to it.
    """
    if returned is None:
        return []
    if isinstance(returned, Mapping):
        return [parse_outbound(returned, answering=answering)]
    if not isinstance(returned, list | tuple):
        raise InvalidOutbound(
            f"the reply handler returned {type(returned).__name__}: return None, one message "
            "(a dict like {'type': 'text', 'text': {'body': '…'}}) or a list of them"
        )
    if len(returned) > MAX_REPLIES:
        raise InvalidOutbound(
            f"the reply handler returned {len(returned)} replies; at most {MAX_REPLIES}"
        )
    replies = []
    for index, item in enumerate(returned, start=1):
        try:
            replies.append(parse_outbound(item, answering=answering))
        except InvalidOutbound as error:
            raise InvalidOutbound(f"reply {index} of {len(returned)}: {error}") from None
    return replies


def parse_outbound(value: object, *, answering: str) -> MetaMessage:
    """One message dict -> a checked `MetaMessage` (a deep copy: later changes by the handler's
    code cannot alter what is sent)."""
    if not isinstance(value, Mapping):
        raise InvalidOutbound(f"a message must be a dict, not {type(value).__name__}")
    kind = value.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise InvalidOutbound("a message needs a non-empty string `type`")
    owned = sorted(PIPELINE_KEYS & set(value))
    if owned:
        raise InvalidOutbound(
            f"`{'`, `'.join(owned)}` is set by the pipeline (the reply goes to the sender): drop it"
        )
    unknown = sorted(set(value) - ENVELOPE_KEYS - {kind})
    if unknown:
        raise InvalidOutbound(
            f"unexpected keys {', '.join(repr(k) for k in unknown)} beside type {kind!r} "
            f"(allowed: type, {kind}, context, biz_opaque_callback_data)"
        )
    if kind not in value:
        raise InvalidOutbound(f"type {kind!r} needs a {kind!r} key holding the message")
    content = _json_copy(value[kind], kind)
    if kind == "contacts":
        if not isinstance(content, list) or not content:
            raise InvalidOutbound("contacts must be a non-empty list of contact objects")
    elif not isinstance(content, dict):
        raise InvalidOutbound(f"{kind} must be an object")
    checker = _CHECKS.get(kind)
    if checker is not None:
        checker(content, kind)
    if kind == "reaction" and not content.get("message_id"):
        content["message_id"] = answering
    extra: dict[str, Any] = {}
    if "biz_opaque_callback_data" in value:
        data = value["biz_opaque_callback_data"]
        _require(
            isinstance(data, str) and len(data) <= MAX_CALLBACK_DATA_CHARS,
            f"biz_opaque_callback_data must be a string of at most {MAX_CALLBACK_DATA_CHARS} chars",
        )
        extra["biz_opaque_callback_data"] = data
    return MetaMessage(
        type=kind,
        content=content,
        context_message_id=_context(value.get("context"), kind),
        extra=extra,
    )


def reply_body(
    recipient: Recipient | str | None, message: OutboundMessage, *, reply_to: str | None
) -> dict[str, Any]:
    """The send body of any outbound message: a handler's dict keeps its own threading choice
    and extra fields; the typed models render as `send_body` does."""
    if isinstance(message, MetaMessage):
        body = send_body(recipient, message, reply_to=message.reply_to(reply_to))
        return {**body, **message.extra}
    return send_body(recipient, message, reply_to=reply_to)


# --- per type ----------------------------------------------------------------------------------


def _check_text(content: dict[str, Any], where: str) -> None:
    body = _text_field(content, "body", where, limit=MAX_TEXT_CHARS)
    _require(bool(body.strip()), f"{where}.body must not be empty")
    if "preview_url" in content:
        _require(
            isinstance(content["preview_url"], bool), f"{where}.preview_url must be true or false"
        )


def _check_media(content: dict[str, Any], where: str) -> None:
    has_id, has_link = "id" in content, "link" in content
    _require(has_id != has_link, f"{where} needs exactly one of `id` or `link`")
    if has_id:
        _text_field(content, "id", where)
    else:
        link = _text_field(content, "link", where)
        _require(link.startswith("https://"), f"{where}.link must be an https:// URL")
    if "caption" in content:
        _require(where in CAPTIONED_MEDIA, f"{where} cannot carry a caption")
        _text_field(content, "caption", where, limit=MAX_CAPTION_CHARS)
    if "filename" in content:
        _require(where == "document", "only a document carries a filename")
        _text_field(content, "filename", where)


def _check_template(content: dict[str, Any], where: str) -> None:
    _text_field(content, "name", where)
    language = content.get("language")
    _require(
        isinstance(language, dict)
        and isinstance(language.get("code"), str)
        and language["code"].strip() != "",
        f'{where}.language must be an object like {{"code": "en_US"}}',
    )
    components = content.get("components", [])
    _require(
        isinstance(components, list) and all(isinstance(c, dict) for c in components),
        f"{where}.components must be a list of objects",
    )


def _check_interactive(content: dict[str, Any], where: str) -> None:
    kind = content.get("type")
    _require(
        isinstance(kind, str) and kind != "", f"{where}.type must name the kind (button, list, …)"
    )
    if "header" in content:
        header = content["header"]
        _require(isinstance(header, dict), f"{where}.header must be an object")
        if header.get("type") == "text":
            _text_field(header, "text", f"{where}.header", limit=MAX_HEADER_TEXT_CHARS)
    if "footer" in content:
        footer = content["footer"]
        _require(isinstance(footer, dict), f"{where}.footer must be an object")
        _text_field(footer, "text", f"{where}.footer", limit=MAX_FOOTER_TEXT_CHARS)
    checker = _INTERACTIVE_CHECKS.get(str(kind))
    if checker is None:
        return  # flow, product, product_list, location_request_message, …: Meta decides
    body: Any = content.get("body")
    _require(isinstance(body, dict), f"{where}.body must be an object with `text`")
    text = _text_field(body, "text", f"{where}.body", limit=MAX_INTERACTIVE_BODY_CHARS)
    _require(bool(text.strip()), f"{where}.body.text must not be empty")
    action = content.get("action")
    _require(isinstance(action, dict), f"{where}.action must be an object")
    checker(action, f"{where}.action")


def _check_buttons(action: dict[str, Any], where: str) -> None:
    buttons: Any = action.get("buttons")
    _require(
        isinstance(buttons, list) and 1 <= len(buttons) <= MAX_BUTTONS,
        f"{where}.buttons must hold 1 to {MAX_BUTTONS} buttons",
    )
    ids = []
    for number, button in enumerate(buttons, start=1):
        at = f"{where}.buttons[{number}]"
        _require(
            isinstance(button, dict) and button.get("type") == "reply",
            f"{at} must be {{'type': 'reply', 'reply': {{…}}}}",
        )
        reply = button.get("reply")
        _require(isinstance(reply, dict), f"{at}.reply must be an object with id and title")
        ids.append(_text_field(reply, "id", f"{at}.reply", limit=MAX_BUTTON_ID_CHARS))
        title = _text_field(reply, "title", f"{at}.reply", limit=MAX_BUTTON_TITLE_CHARS)
        _require(bool(title.strip()), f"{at}.reply.title must not be empty")
    _require(len(set(ids)) == len(ids), f"{where}.buttons: button ids must differ")


def _check_list(action: dict[str, Any], where: str) -> None:
    label = _text_field(action, "button", where, limit=MAX_BUTTON_TITLE_CHARS)
    _require(bool(label.strip()), f"{where}.button must not be empty")
    sections: Any = action.get("sections")
    _require(
        isinstance(sections, list) and len(sections) > 0,
        f"{where}.sections must be a non-empty list",
    )
    ids = []
    for number, section in enumerate(sections, start=1):
        at = f"{where}.sections[{number}]"
        _require(isinstance(section, dict), f"{at} must be an object")
        if "title" in section or len(sections) > 1:
            _text_field(section, "title", at, limit=MAX_LIST_SECTION_TITLE_CHARS)
        rows: Any = section.get("rows")
        _require(isinstance(rows, list) and len(rows) > 0, f"{at}.rows must be a non-empty list")
        for row_number, row in enumerate(rows, start=1):
            row_at = f"{at}.rows[{row_number}]"
            _require(isinstance(row, dict), f"{row_at} must be an object")
            ids.append(_text_field(row, "id", row_at, limit=MAX_LIST_ROW_ID_CHARS))
            _text_field(row, "title", row_at, limit=MAX_LIST_ROW_TITLE_CHARS)
            if "description" in row:
                _text_field(row, "description", row_at, limit=MAX_LIST_ROW_DESCRIPTION_CHARS)
    _require(
        1 <= len(ids) <= MAX_LIST_ROWS,
        f"{where}: a list has 1 to {MAX_LIST_ROWS} rows, not {len(ids)}",
    )
    _require(len(set(ids)) == len(ids), f"{where}: row ids must differ")


def _check_cta_url(action: dict[str, Any], where: str) -> None:
    parameters: Any = action.get("parameters")
    _require(isinstance(parameters, dict), f"{where}.parameters must be an object")
    _text_field(parameters, "display_text", f"{where}.parameters", limit=MAX_BUTTON_TITLE_CHARS)
    url = _text_field(parameters, "url", f"{where}.parameters")
    _require(
        url.startswith(("https://", "http://")), f"{where}.parameters.url must be an http(s) URL"
    )


def _check_reaction(content: dict[str, Any], where: str) -> None:
    # An empty emoji takes an earlier reaction back (Meta's own convention).
    _require(isinstance(content.get("emoji"), str), f"{where}.emoji must be a string")
    if "message_id" in content:
        _text_field(content, "message_id", where)


def _check_location(content: dict[str, Any], where: str) -> None:
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = content.get(key)
        _require(
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and -bound <= value <= bound,
            f"{where}.{key} must be a number from {-bound} to {bound}",
        )
    for key in ("name", "address"):
        if key in content:
            _text_field(content, key, where)


def _check_contacts(content: list[Any], where: str) -> None:
    for number, card in enumerate(content, start=1):
        _require(
            isinstance(card, dict) and isinstance(card.get("name"), dict),
            f"{where}[{number}] needs a `name` object",
        )


_CHECKS: Final[Mapping[str, Any]] = {
    "text": _check_text,
    **dict.fromkeys(MEDIA_KINDS, _check_media),
    "template": _check_template,
    "interactive": _check_interactive,
    "reaction": _check_reaction,
    "location": _check_location,
    "contacts": _check_contacts,
}
_INTERACTIVE_CHECKS: Final[Mapping[str, Any]] = {
    "button": _check_buttons,
    "list": _check_list,
    "cta_url": _check_cta_url,
}


# --- helpers -----------------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidOutbound(message)


def _text_field(
    document: Mapping[str, Any], key: str, where: str, *, limit: int | None = None
) -> str:
    value = document.get(key)
    _require(isinstance(value, str) and value != "", f"{where}.{key} must be a non-empty string")
    assert isinstance(value, str)
    if limit is not None:
        _require(len(value) <= limit, f"{where}.{key} exceeds {limit} chars")
    return value


def _context(raw: object, kind: str) -> str | None:
    if raw is None:
        return None
    _require(
        isinstance(raw, Mapping)
        and set(raw) == {"message_id"}
        and isinstance(raw["message_id"], str)
        and raw["message_id"] != "",
        'context must be {"message_id": "<wamid>"}',
    )
    _require(
        kind != "reaction",
        "a reaction cannot carry a context (name the message in reaction.message_id)",
    )
    assert isinstance(raw, Mapping)
    return str(raw["message_id"])


def _json_copy(value: object, kind: str) -> Any:
    """A copy made of plain JSON values (tuples become lists): exactly what goes to Meta, and
    what later changes to the handler's own objects cannot alter."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidOutbound(f"{kind} is not JSON-serialisable: {error}") from None
