"""Reply rules: data, not code. Matching order, never-answered messages, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.domain.consumer.reply_rules import ReplyRulesError, load_rules, parse_rules
from functions.domain.whatsapp.outbound import (
    Buttons,
    ListMenu,
    Media,
    Reaction,
    Recipient,
    Template,
    Text,
)
from functions.domain.whatsapp.queued_record import QueuedRecord
from functions.domain.whatsapp.webhook import ReceivedMessage
from tests.unit.consumer.builders import (
    BUSINESS_DISPLAY_NUMBER,
    RULES_DOCUMENT,
    inbound,
    queued_body,
    rules,
)

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).parents[3] / "functions" / "consumer" / "reply_rules.json"


def received(message: dict[str, Any] | None = None, **kwargs: Any) -> ReceivedMessage:
    return QueuedRecord.from_json(queued_body(message, **kwargs)).received


def test_first_matching_rule_wins_keywords_are_case_insensitive_whole_words() -> None:
    chosen = rules().decide(received(inbound(text="HI there!")))

    assert chosen.reason == "rule:greeting"
    assert chosen.reply == Text("Hello Sheena!")
    assert chosen.recipient == Recipient.phone("16505551234")
    assert rules().decide(received(inbound(text="this is it"))).reason == "default"


def test_reply_ids_match_buttons_lists_and_template_quick_replies() -> None:
    tapped = inbound("interactive")  # button_reply id "yes"
    row = inbound("interactive", content={"type": "list_reply", "list_reply": {"id": "yes"}})
    quick = inbound("button", content={"payload": "yes", "text": "Yes"})

    assert rules().decide(received(tapped)).reason == "rule:yes"
    assert rules().decide(received(row)).reason == "rule:yes"
    assert rules().decide(received(quick)).reason == "rule:yes"


def test_keywords_look_at_captions_too_and_conditions_are_anded() -> None:
    document = RULES_DOCUMENT | {
        "rules": [
            {
                "name": "invoice",
                "match": {"types": ["document", "image"], "keywords": ["invoice"]},
                "reply": {"type": "image", "link": "https://example.com/ok.png"},
            }
        ]
    }
    captioned = inbound("image", content={"id": "1", "caption": "My Invoice"})
    text = inbound(text="invoice")

    assert parse_rules(document).decide(received(captioned)).reason == "rule:invoice"
    assert parse_rules(document).decide(received(text)).reason == "default"


@pytest.mark.parametrize("message_type", ["reaction", "system", "unsupported"])
def test_never_answered_types(message_type: str) -> None:
    decision = rules().decide(received(inbound(message_type)))

    assert decision.reply is None
    assert decision.reason == f"type:{message_type}"


def test_no_reply_to_the_business_own_numbers() -> None:
    from_itself = inbound(text="hi", sender=BUSINESS_DISPLAY_NUMBER)
    from_sibling = inbound(text="hi", sender="15550001111")
    listed = rules(ownNumbers=["+1 555 000 1111"])

    assert rules().decide(received(from_itself)).reason == "own-number"
    assert listed.decide(received(from_sibling)).reason == "own-number"
    assert rules().decide(received(from_sibling)).reply is not None


def test_no_sender_no_reply_and_null_default_means_silence() -> None:
    anonymous = inbound(text="hi", sender="")

    assert rules().decide(received(anonymous, contact_name=None)).reason in {"no-sender"}
    quiet = rules(default=None)
    assert quiet.decide(received(inbound(text="what?"))).reason == "no-default"


def test_contact_name_placeholder_falls_back_when_unknown() -> None:
    decision = rules().decide(received(inbound(text="hello"), contact_name=None))

    assert decision.reply == Text("Hello there!")


def test_every_reply_type_can_be_configured() -> None:
    replies = {
        "t": {"type": "text", "text": "x", "previewUrl": True},
        "i": {"type": "image", "mediaId": "1", "caption": "c"},
        "d": {"type": "document", "link": "https://e.com/a.pdf", "filename": "a.pdf"},
        "tpl": {"type": "template", "name": "n", "language": "pt_BR", "components": [{}]},
        "b": {"type": "buttons", "body": "b", "buttons": [{"id": "1", "title": "One"}]},
        "l": {
            "type": "list",
            "body": "b",
            "button": "Open",
            "sections": [{"title": "s", "rows": [{"id": "r", "title": "R"}]}],
        },
        "r": {"type": "reaction", "emoji": "\u2764\ufe0f"},
    }
    document = {
        "rules": [
            {"name": name, "match": {"keywords": [name]}, "reply": reply}
            for name, reply in replies.items()
        ],
        "default": None,
    }
    parsed = parse_rules(document)

    kinds = [type(rule.reply) for rule in parsed.rules]
    assert kinds == [Text, Media, Media, Template, Buttons, ListMenu, Reaction]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"rules": [{"name": "a", "match": {"keywords": ["x"]}}]}, "rule 'a': needs a `reply`"),
        ({"rules": [{"name": "a", "match": {}, "reply": None}]}, "rule 'a': `match` needs"),
        (
            {"rules": [{"name": "a", "match": {"words": ["x"]}, "reply": None}]},
            "rule 'a': unknown match keys words",
        ),
        (
            {"rules": [{"name": "b", "match": {"types": ["text"]}, "reply": {"type": "fax"}}]},
            "rule 'b': reply: unknown reply type 'fax'",
        ),
        (
            {
                "rules": [
                    {
                        "name": "c",
                        "match": {"types": ["text"]},
                        "reply": {"type": "buttons", "body": "b", "buttons": []},
                    }
                ]
            },
            "rule 'c': reply: 1 to 3 buttons",
        ),
        (
            {"rules": [{"name": "d", "match": {"types": ["text"]}, "reply": {"type": "text"}}]},
            "rule 'd': reply: `text` must be a string",
        ),
        ({"rules": [{"match": {"types": ["text"]}, "reply": None}]}, "rules[0] needs"),
        (
            {
                "rules": [
                    {"name": "e", "match": {"types": ["a"]}, "reply": None},
                    {"name": "e", "match": {"types": ["b"]}, "reply": None},
                ]
            },
            "unique: e",
        ),
        ({"version": 2}, "version 2"),
        ({"replies": []}, "unknown top-level keys: replies"),
        ({"default": {"type": "text", "text": ""}}, "default: text body must not be empty"),
        ({"fallbackTemplate": {"language": "en"}}, "fallbackTemplate: `name`"),
        ({"ownNumbers": "123"}, "ownNumbers"),
        ({"typingIndicator": "yes"}, "typingIndicator"),
        ([], "must be a JSON object"),
    ],
)
def test_invalid_documents_name_the_rule_and_field(document: object, message: str) -> None:
    with pytest.raises(ReplyRulesError) as raised:
        parse_rules(document)
    assert message in str(raised.value)


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(ReplyRulesError, match="not JSON"):
        load_rules("{nope")


def test_the_shipped_rules_file_is_valid_and_covers_the_documented_examples() -> None:
    shipped = load_rules(SHIPPED.read_text(encoding="utf-8"))

    assert shipped.fallback_template == Template("hello_world", "en_US")
    assert shipped.default is not None
    assert shipped.decide(received(inbound(text="Hello"))).reason == "rule:greeting"
    assert isinstance(shipped.decide(received(inbound(text="menu"))).reply, Buttons)
    menu_orders = inbound(
        "interactive",
        content={
            "type": "button_reply",
            "button_reply": {"id": "menu-orders", "title": "My orders"},
        },
    )
    assert isinstance(shipped.decide(received(menu_orders)).reply, ListMenu)
    assert json.loads(SHIPPED.read_text())["version"] == 1
