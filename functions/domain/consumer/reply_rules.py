"""What to answer: reply rules as data (a JSON document, see docs/reply-rules.md).

    {
      "version": 1,
      "typingIndicator": true,
      "ownNumbers": ["15550783881"],
      "fallbackTemplate": {"name": "hello_world", "language": "en_US"},
      "rules": [
        {"name": "greeting",
         "match": {"types": ["text"], "keywords": ["hi", "hello"]},
         "reply": {"type": "text", "text": "Hello {contact_name}!"}},
        ...
      ],
      "default": {"type": "text", "text": "Thanks, we got your message."}
    }

Rules are tried in order; the first whose every condition holds answers. Within one condition a
list means "any of". `default` (or null: no reply) answers what no rule matched. Never answered,
whatever the rules say: reactions, system messages (a changed number or BSUID among them),
unsupported messages, messages without a sender (neither phone nor BSUID), and messages from the
business's own numbers (the receiving number and `ownNumbers`). A reply goes to the sender's phone,
or to their business-scoped user id when Meta withheld the phone (a user with a username).

Plain Python: the caller reads the file; `parse_rules` validates the whole document and raises
`ReplyRulesError` naming the rule and the field at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.domain.whatsapp.outbound import (
    Button,
    Buttons,
    InvalidOutbound,
    ListMenu,
    ListRow,
    ListSection,
    Media,
    OutboundMessage,
    Reaction,
    Recipient,
    Template,
    Text,
)
from functions.domain.whatsapp.webhook import (
    ButtonContent,
    InteractiveReply,
    MediaContent,
    ReceivedMessage,
    TextContent,
)

SUPPORTED_VERSIONS = frozenset({1})
NEVER_ANSWERED_TYPES = frozenset({"reaction", "system", "unsupported", "unknown"})
DEFAULT_CONTACT_NAME = "there"
_MATCH_KEYS = frozenset({"types", "keywords", "replyIds"})
_DIGITS = re.compile(r"\D")


class ReplyRulesError(ValueError):
    """The rules document is invalid; the message says where."""


@dataclass(frozen=True, slots=True)
class Match:
    types: frozenset[str] = frozenset()
    keywords: tuple[re.Pattern[str], ...] = ()
    reply_ids: frozenset[str] = frozenset()

    def holds(self, received: ReceivedMessage) -> bool:
        message = received.message
        if self.types and message.type not in self.types:
            return False
        if self.keywords:
            text = searchable_text(received)
            if text is None or not any(k.search(text) for k in self.keywords):
                return False
        if self.reply_ids:
            reply_id = reply_id_of(received)
            if reply_id is None or reply_id not in self.reply_ids:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Match
    reply: OutboundMessage | None  # None: matched, deliberately no reply


@dataclass(frozen=True, slots=True)
class ReplyDecision:
    reply: OutboundMessage | None
    reason: str  # "rule:<name>", "default", "no-default", "own-number", "type:<t>", "no-sender"
    recipient: Recipient | None = None  # set whenever `reply` is


def reply_recipient(received: ReceivedMessage) -> Recipient | None:
    """Where a reply to `received` goes: the sender's phone when Meta gave it (every template,
    authentication ones included, can go there), else their business-scoped user id (a user
    known only by a username; Meta refuses some templates there with 131062)."""
    if received.sender_phone:
        return Recipient.phone(received.sender_phone)
    if received.sender_user_id:
        return Recipient.user_id(received.sender_user_id)
    return None


@dataclass(frozen=True, slots=True)
class ReplyRules:
    rules: tuple[Rule, ...]
    default: OutboundMessage | None
    fallback_template: Template | None = None
    own_numbers: frozenset[str] = frozenset()
    typing_indicator: bool = True

    def decide(self, received: ReceivedMessage) -> ReplyDecision:
        message = received.message
        if message.type in NEVER_ANSWERED_TYPES:
            return ReplyDecision(None, f"type:{message.type}")
        refusal = self.unanswerable(received)
        if refusal is not None:
            return ReplyDecision(None, refusal)
        recipient = reply_recipient(received)
        for rule in self.rules:
            if rule.match.holds(received):
                return ReplyDecision(
                    _personal(rule.reply, received), f"rule:{rule.name}", recipient
                )
        if self.default is None:
            return ReplyDecision(None, "no-default")
        return ReplyDecision(_personal(self.default, received), "default", recipient)

    def unanswerable(self, received: ReceivedMessage) -> str | None:
        """Why nothing may answer `received`, whoever decides (rules or reply handler):
        "no-sender" (nowhere to reply to) or "own-number" (the business's own numbers: the
        receiving one and `ownNumbers`, so two bots never answer each other forever)."""
        recipient = reply_recipient(received)
        if recipient is None:
            return "no-sender"
        own = self.own_numbers | {_digits(received.business.display_phone_number)}
        if not recipient.by_user_id and _digits(recipient.address) in own - {""}:
            return "own-number"
        return None


def searchable_text(received: ReceivedMessage) -> str | None:
    """The text keywords are matched against: text body, media caption, button/row title."""
    content = received.message.content
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, MediaContent):
        return content.caption
    if isinstance(content, ButtonContent):
        return content.text
    if isinstance(content, InteractiveReply):
        return content.title
    return None


def reply_id_of(received: ReceivedMessage) -> str | None:
    """The id of the tapped reply button / list row, or a template quick reply's payload."""
    content = received.message.content
    if isinstance(content, InteractiveReply):
        return content.reply_id
    if isinstance(content, ButtonContent):
        return content.payload
    return None


# --- loading ----------------------------------------------------------------------------------


def load_rules(text: str) -> ReplyRules:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ReplyRulesError(f"the reply rules are not JSON: {error}") from None
    return parse_rules(document)


def parse_rules(document: object) -> ReplyRules:
    if not isinstance(document, Mapping):
        raise ReplyRulesError("the reply rules must be a JSON object")
    version = document.get("version", 1)
    if version not in SUPPORTED_VERSIONS:
        raise ReplyRulesError(f"unsupported reply rules version {version!r}")
    unknown = set(document) - {
        "version",
        "rules",
        "default",
        "fallbackTemplate",
        "ownNumbers",
        "typingIndicator",
        "$comment",
    }
    if unknown:
        raise ReplyRulesError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    raw_rules = document.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ReplyRulesError("`rules` must be a list")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        rules.append(_parse_rule(raw, index))
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ReplyRulesError(f"rule names must be unique: {', '.join(duplicates)}")
    default = document.get("default")
    fallback = document.get("fallbackTemplate")
    own_numbers = document.get("ownNumbers", [])
    if not isinstance(own_numbers, list) or not all(isinstance(n, str) for n in own_numbers):
        raise ReplyRulesError("`ownNumbers` must be a list of strings")
    typing = document.get("typingIndicator", True)
    if not isinstance(typing, bool):
        raise ReplyRulesError("`typingIndicator` must be true or false")
    fallback_template = None
    if fallback is not None:
        template_doc = {"type": "template", **_mapping(fallback, "fallbackTemplate")}
        parsed = _parse_reply(template_doc, "fallbackTemplate")
        assert isinstance(parsed, Template)
        fallback_template = parsed
    return ReplyRules(
        rules=tuple(rules),
        default=None if default is None else _parse_reply(default, "default"),
        fallback_template=fallback_template,
        own_numbers=frozenset(_digits(n) for n in own_numbers) - {""},
        typing_indicator=typing,
    )


def _parse_rule(raw: object, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise ReplyRulesError(f"rules[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ReplyRulesError(f"rules[{index}] needs a non-empty `name`")
    where = f"rule {name!r}"
    unknown = set(raw) - {"name", "match", "reply", "$comment"}
    if unknown:
        raise ReplyRulesError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    match_doc = _mapping(raw.get("match", {}), f"{where}: `match`")
    unknown = set(match_doc) - _MATCH_KEYS
    if unknown:
        raise ReplyRulesError(f"{where}: unknown match keys {', '.join(sorted(unknown))}")
    types = _strings(match_doc.get("types", []), f"{where}: match.types")
    keywords = _strings(match_doc.get("keywords", []), f"{where}: match.keywords")
    reply_ids = _strings(match_doc.get("replyIds", []), f"{where}: match.replyIds")
    if not (types or keywords or reply_ids):
        raise ReplyRulesError(f"{where}: `match` needs types, keywords or replyIds")
    if "reply" not in raw:
        raise ReplyRulesError(f"{where}: needs a `reply` (null for none)")
    reply = raw["reply"]
    return Rule(
        name=name,
        match=Match(
            types=frozenset(types),
            keywords=tuple(_keyword_pattern(k) for k in keywords),
            reply_ids=frozenset(reply_ids),
        ),
        reply=None if reply is None else _parse_reply(reply, f"{where}: reply"),
    )


def _parse_reply(raw: object, where: str) -> OutboundMessage:
    document = _mapping(raw, where)
    kind = document.get("type")
    try:
        return _build_reply(kind, document, where)
    except InvalidOutbound as error:
        raise ReplyRulesError(f"{where}: {error}") from None
    except (KeyError, TypeError) as error:
        raise ReplyRulesError(f"{where}: missing or malformed field {error}") from None


def _build_reply(kind: object, d: Mapping[str, Any], where: str) -> OutboundMessage:
    if kind == "text":
        return Text(body=_str(d, "text", where), preview_url=bool(d.get("previewUrl", False)))
    if kind in ("image", "document", "video", "audio", "sticker"):
        return Media(
            kind=str(kind),
            media_id=_opt_str(d, "mediaId", where),
            link=_opt_str(d, "link", where),
            caption=_opt_str(d, "caption", where),
            filename=_opt_str(d, "filename", where),
        )
    if kind == "template":
        components = d.get("components", [])
        if not isinstance(components, list) or not all(isinstance(c, Mapping) for c in components):
            raise ReplyRulesError(f"{where}: `components` must be a list of objects")
        return Template(
            name=_str(d, "name", where),
            language=_opt_str(d, "language", where) or "en_US",
            components=tuple(components),
        )
    if kind == "buttons":
        buttons = d.get("buttons")
        if not isinstance(buttons, list):
            raise ReplyRulesError(f"{where}: `buttons` must be a list")
        return Buttons(
            body=_str(d, "body", where),
            buttons=tuple(
                Button(id=_str(b, "id", where), title=_str(b, "title", where))
                for b in (_mapping(item, f"{where}: button") for item in buttons)
            ),
            header=_opt_str(d, "header", where),
            footer=_opt_str(d, "footer", where),
        )
    if kind == "list":
        sections = d.get("sections")
        if not isinstance(sections, list):
            raise ReplyRulesError(f"{where}: `sections` must be a list")
        return ListMenu(
            body=_str(d, "body", where),
            button=_str(d, "button", where),
            sections=tuple(_parse_section(s, where) for s in sections),
            header=_opt_str(d, "header", where),
            footer=_opt_str(d, "footer", where),
        )
    if kind == "reaction":
        return Reaction(emoji=_str(d, "emoji", where))
    raise ReplyRulesError(
        f"{where}: unknown reply type {kind!r} "
        "(text, image, document, video, audio, sticker, template, buttons, list, reaction)"
    )


def _parse_section(raw: object, where: str) -> ListSection:
    section = _mapping(raw, f"{where}: section")
    rows = section.get("rows")
    if not isinstance(rows, list):
        raise ReplyRulesError(f"{where}: a section needs `rows`")
    return ListSection(
        title=_opt_str(section, "title", where) or "",
        rows=tuple(
            ListRow(
                id=_str(r, "id", where),
                title=_str(r, "title", where),
                description=_opt_str(r, "description", where),
            )
            for r in (_mapping(row, f"{where}: row") for row in rows)
        ),
    )


def _personal(reply: OutboundMessage | None, received: ReceivedMessage) -> OutboundMessage | None:
    """Fill `{contact_name}` / `{business_number}` in a text reply (plain replace, no format).
    The name is the profile name, else the username, else a neutral word."""
    if not isinstance(reply, Text) or "{" not in reply.body:
        return reply
    contact = received.contact
    name = ((contact.name or contact.username) if contact else None) or DEFAULT_CONTACT_NAME
    body = reply.body.replace("{contact_name}", name).replace(
        "{business_number}", received.business.display_phone_number
    )
    return Text(body=body[:4096], preview_url=reply.preview_url)


def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Case-insensitive, whole words: "hi" matches "Hi there" but not "this"."""
    return re.compile(rf"(?<!\w){re.escape(keyword.strip())}(?!\w)", re.IGNORECASE)


def _digits(number: str) -> str:
    return _DIGITS.sub("", number)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReplyRulesError(f"{where} must be an object")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ReplyRulesError(f"{where} must be a list of strings")
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise ReplyRulesError(f"{where} must be a list of non-empty strings")
    return list(value)


def _str(d: Mapping[str, Any], key: str, where: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ReplyRulesError(f"{where}: `{key}` must be a string")
    return value


def _opt_str(d: Mapping[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ReplyRulesError(f"{where}: `{key}` must be a string")
    return value
