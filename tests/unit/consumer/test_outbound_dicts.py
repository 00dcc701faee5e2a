"""A reply handler's dicts: what is checked against Meta's limits, what passes through as given,
and the send bodies they become. The typed helpers of functions/handler_kit.py build the same
dicts and refuse the same mistakes where they are made."""

from __future__ import annotations

from typing import Any

import pytest

from functions import handler_kit as kit
from functions.domain.whatsapp.outbound import InvalidOutbound, MetaMessage, Text
from functions.domain.whatsapp.outbound_dicts import (
    MAX_REPLIES,
    parse_outbound,
    parse_replies,
    reply_body,
)

pytestmark = pytest.mark.unit

TO = "16505551234"
WAMID = "wamid.IN="
OTHER = "wamid.EARLIER="

VALID: list[dict[str, Any]] = [
    {"type": "text", "text": {"body": "Hi", "preview_url": True}},
    {"type": "image", "image": {"link": "https://example.com/a.png", "caption": "look"}},
    {"type": "document", "document": {"id": "123", "filename": "a.pdf", "caption": "bill"}},
    {"type": "audio", "audio": {"id": "55"}},
    {"type": "sticker", "sticker": {"link": "https://example.com/s.webp"}},
    {"type": "video", "video": {"id": "9"}},
    {
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}],
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": {"type": "text", "text": "Order"},
            "body": {"text": "Pick one"},
            "footer": {"text": "Shop"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "a", "title": "A"}},
                    {"type": "reply", "reply": {"id": "b", "title": "B"}},
                ]
            },
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Menu"},
            "action": {
                "button": "Open",
                "sections": [
                    {"title": "S", "rows": [{"id": "r1", "title": "Row", "description": "d"}]}
                ],
            },
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "cta_url",
            "body": {"text": "See it"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Open", "url": "https://example.com"},
            },
        },
    },
    {"type": "reaction", "reaction": {"emoji": "\U0001f44d"}},
    {"type": "reaction", "reaction": {"message_id": OTHER, "emoji": ""}},  # takes one back
    {"type": "location", "location": {"latitude": 52.5, "longitude": 13.4, "name": "Shop"}},
    {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann", "first_name": "Ann"}}]},
    # Types and kinds this project does not know go out as given: Meta decides.
    {"type": "interactive", "interactive": {"type": "flow", "action": {"name": "flow"}}},
    {"type": "poll", "poll": {"question": "?", "options": ["a", "b"]}},
    {"type": "text", "text": {"body": "tracked"}, "biz_opaque_callback_data": "campaign-7"},
]


@pytest.mark.parametrize("message", VALID, ids=lambda m: f"{m['type']}")
def test_valid_messages_are_sent_exactly_as_given_plus_the_addressing(
    message: dict[str, Any],
) -> None:
    parsed = parse_outbound(message, answering=WAMID)
    body = reply_body(TO, parsed, reply_to=WAMID)

    kind = message["type"]
    assert body["messaging_product"] == "whatsapp"
    assert body["to"] == TO
    assert body["type"] == kind
    expected = message[kind]
    if kind == "reaction":
        expected = {"message_id": WAMID} | message[kind]  # defaults to the message answered
        assert "context" not in body  # a reaction cannot carry one
    else:
        assert body["context"] == {"message_id": WAMID}
    assert body[kind] == expected
    if "biz_opaque_callback_data" in message:
        assert body["biz_opaque_callback_data"] == message["biz_opaque_callback_data"]


INVALID: list[tuple[object, str]] = [
    ("hello", "must be a dict"),
    ({"text": {"body": "x"}}, "non-empty string `type`"),
    ({"type": "text", "text": {"body": "x"}, "to": "1555"}, "`to` is set by the pipeline"),
    ({"type": "text", "text": {"body": "x"}, "recipient": "US.1"}, "set by the pipeline"),
    ({"type": "text", "text": {"body": "x"}, "image": {}}, "unexpected keys 'image'"),
    ({"type": "text"}, "needs a 'text' key"),
    ({"type": "text", "text": "hello"}, "text must be an object"),
    ({"type": "text", "text": {"body": ""}}, "text.body must be a non-empty string"),
    ({"type": "text", "text": {"body": "   "}}, "text.body must not be empty"),
    ({"type": "text", "text": {"body": "x" * 4097}}, "text.body exceeds 4096 chars"),
    ({"type": "text", "text": {"body": "x", "preview_url": "yes"}}, "preview_url must be"),
    ({"type": "image", "image": {}}, "exactly one of `id` or `link`"),
    ({"type": "image", "image": {"id": "1", "link": "https://x"}}, "exactly one"),
    ({"type": "image", "image": {"link": "http://x.png"}}, "https://"),
    ({"type": "audio", "audio": {"id": "1", "caption": "c"}}, "audio cannot carry a caption"),
    ({"type": "image", "image": {"id": "1", "caption": "c" * 1025}}, "caption exceeds 1024"),
    ({"type": "image", "image": {"id": "1", "filename": "a"}}, "only a document"),
    ({"type": "template", "template": {"name": "t"}}, "language must be an object"),
    (
        {
            "type": "template",
            "template": {"name": "t", "language": {"code": "en"}, "components": [1]},
        },
        "components must be a list of objects",
    ),
    ({"type": "interactive", "interactive": {"body": {"text": "x"}}}, "interactive.type"),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "x"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"{n}", "title": "t"}} for n in range(4)
                    ]
                },
            },
        },
        "1 to 3 buttons",
    ),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "x"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "t" * 21}}]},
            },
        },
        "title exceeds 20 chars",
    ),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "x"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "a", "title": "A"}},
                        {"type": "reply", "reply": {"id": "a", "title": "B"}},
                    ]
                },
            },
        },
        "button ids must differ",
    ),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "x"},
                "action": {
                    "button": "Open",
                    "sections": [{"rows": [{"id": f"r{n}", "title": "t"} for n in range(11)]}],
                },
            },
        },
        "1 to 10 rows",
    ),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": "x"},
                "action": {
                    "button": "Open",
                    "sections": [{"rows": [{"id": "r", "title": "t" * 25}]}],
                },
            },
        },
        "title exceeds 24 chars",
    ),
    (
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "x"},
                "header": {"type": "text", "text": "h" * 61},
                "action": {},
            },
        },
        "header.text exceeds 60 chars",
    ),
    ({"type": "reaction", "reaction": {}}, "reaction.emoji must be a string"),
    (
        {"type": "reaction", "reaction": {"emoji": "x"}, "context": {"message_id": OTHER}},
        "a reaction cannot carry a context",
    ),
    ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "latitude must be"),
    ({"type": "location", "location": {"latitude": float("nan"), "longitude": 0}}, "not JSON"),
    ({"type": "contacts", "contacts": []}, "non-empty list"),
    ({"type": "contacts", "contacts": [{"phones": []}]}, "needs a `name` object"),
    ({"type": "text", "text": {"body": "x"}, "context": {"id": OTHER}}, "context must be"),
    ({"type": "text", "text": {"body": "x"}, "biz_opaque_callback_data": 7}, "biz_opaque"),
    ({"type": "poll", "poll": {"when": object()}}, "not JSON-serialisable"),
]


@pytest.mark.parametrize(("message", "says"), INVALID, ids=lambda v: str(v)[:40])
def test_what_meta_would_refuse_is_refused_naming_the_field(message: object, says: str) -> None:
    with pytest.raises(InvalidOutbound) as refused:
        parse_outbound(message, answering=WAMID)

    assert says in str(refused.value)


def test_what_a_handler_returns_none_one_or_a_list() -> None:
    hello = {"type": "text", "text": {"body": "hello"}}

    assert parse_replies(None, answering=WAMID) == []
    assert parse_replies([], answering=WAMID) == []
    assert [m.type for m in parse_replies(hello, answering=WAMID)] == ["text"]
    assert len(parse_replies((hello, hello), answering=WAMID)) == 2
    with pytest.raises(InvalidOutbound, match="returned str"):
        parse_replies("hello", answering=WAMID)
    with pytest.raises(InvalidOutbound, match=f"at most {MAX_REPLIES}"):
        parse_replies([hello] * (MAX_REPLIES + 1), answering=WAMID)
    with pytest.raises(InvalidOutbound, match=r"reply 2 of 3: text.body exceeds 4096"):
        parse_replies(
            [hello, {"type": "text", "text": {"body": "x" * 5000}}, hello], answering=WAMID
        )
    with pytest.raises(InvalidOutbound, match=r"reply 1 of 1: a message must be a dict"):
        parse_replies([None], answering=WAMID)


def test_what_is_sent_is_a_copy_the_handler_cannot_change_afterwards() -> None:
    content = {"body": "before"}
    parsed = parse_outbound({"type": "text", "text": content}, answering=WAMID)
    content["body"] = "after"

    assert reply_body(TO, parsed, reply_to=None)["text"] == {"body": "before"}


def test_a_handler_may_thread_a_reply_on_another_message() -> None:
    own = parse_outbound(
        {"type": "text", "text": {"body": "about that"}, "context": {"message_id": OTHER}},
        answering=WAMID,
    )
    later = parse_outbound({"type": "text", "text": {"body": "and"}}, answering=WAMID)

    assert reply_body(TO, own, reply_to=WAMID)["context"] == {"message_id": OTHER}
    assert reply_body(TO, own, reply_to=None)["context"] == {"message_id": OTHER}
    assert "context" not in reply_body(TO, later, reply_to=None)
    assert isinstance(own, MetaMessage)
    # The typed models render as before.
    assert reply_body(TO, Text("hi"), reply_to=WAMID)["context"] == {"message_id": WAMID}


# --- functions/handler_kit.py ----------------------------------------------------------------


def test_the_kit_builds_the_dicts_a_handler_could_write_by_hand() -> None:
    assert kit.text("hi") == {"type": "text", "text": {"body": "hi", "preview_url": False}}
    assert kit.image(link="https://e.com/a.png", caption="c") == {
        "type": "image",
        "image": {"link": "https://e.com/a.png", "caption": "c"},
    }
    assert kit.document(media_id="7", filename="a.pdf")["document"] == {
        "id": "7",
        "filename": "a.pdf",
    }
    assert kit.video(media_id="1")["type"] == "video"
    assert kit.audio(media_id="1")["audio"] == {"id": "1"}
    assert kit.sticker(link="https://e.com/s.webp")["type"] == "sticker"
    assert kit.template("hello_world")["template"] == {
        "name": "hello_world",
        "language": {"code": "en_US"},
    }
    menu = kit.buttons("Pick", {"a": "A", "b": "B"}, header="H", footer="F")
    assert menu["interactive"]["action"]["buttons"][1] == {
        "type": "reply",
        "reply": {"id": "b", "title": "B"},
    }
    assert menu["interactive"]["header"] == {"type": "text", "text": "H"}
    rows = kit.list_menu("Menu", "Open", {"r1": "One", "r2": "Two"})
    assert len(rows["interactive"]["action"]["sections"][0]["rows"]) == 2
    assert kit.reaction("\U0001f44d") == {"type": "reaction", "reaction": {"emoji": "\U0001f44d"}}
    assert kit.location(1.5, 2.5, name="Shop")["location"] == {
        "latitude": 1.5,
        "longitude": 2.5,
        "name": "Shop",
    }
    assert kit.in_reply_to(kit.text("x"), OTHER)["context"] == {"message_id": OTHER}
    for built in (menu, rows, kit.text("hi"), kit.reaction("x")):
        parse_outbound(built, answering=WAMID)  # what the kit builds, the pipeline accepts


@pytest.mark.parametrize(
    "build",
    [
        lambda: kit.text(""),
        lambda: kit.text("x" * 4097),
        kit.image,
        lambda: kit.image(link="https://e.com/a", media_id="1"),
        lambda: kit.audio(link="http://insecure"),
        lambda: kit.buttons("Pick", {"a": "A title far longer than twenty"}),
        lambda: kit.buttons("Pick", {}),
        lambda: kit.list_menu("Menu", "Open", {f"r{n}": "row" for n in range(11)}),
        lambda: kit.location(100, 0),
        lambda: kit.in_reply_to(kit.reaction("x"), OTHER),
    ],
)
def test_the_kit_refuses_mistakes_where_they_are_made(build: Any) -> None:
    with pytest.raises(InvalidOutbound):
        build()


def test_the_kit_reads_what_the_user_wrote_or_tapped() -> None:
    assert kit.text_of({"type": "text", "text": {"body": "hello"}}) == "hello"
    assert kit.text_of({"type": "image", "image": {"id": "1", "caption": "look"}}) == "look"
    assert kit.text_of({"type": "button", "button": {"text": "Stop", "payload": "STOP"}}) == "Stop"
    tap = {
        "type": "interactive",
        "interactive": {"type": "button_reply", "button_reply": {"id": "y", "title": "Yes"}},
    }
    row = {
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": "r", "title": "Row"}},
    }
    assert kit.text_of(tap) == "Yes"
    assert kit.reply_id_of(tap) == "y"
    assert kit.reply_id_of(row) == "r"
    assert kit.reply_id_of({"type": "button", "button": {"payload": "STOP"}}) == "STOP"
    assert kit.text_of({"type": "reaction", "reaction": {"emoji": "x"}}) is None
    assert kit.text_of({"type": "location", "location": {}}) is None
    assert kit.reply_id_of({"type": "text", "text": {"body": "x"}}) is None
    assert kit.text_of({"type": "text"}) is None
