"""Outbound models render Meta's bodies and refuse what Meta would refuse."""

from __future__ import annotations

import pytest

from functions.domain.whatsapp.outbound import (
    Button,
    Buttons,
    InvalidOutbound,
    ListMenu,
    ListRow,
    ListSection,
    Media,
    Reaction,
    Template,
    Text,
    mark_read_body,
    send_body,
)

pytestmark = pytest.mark.unit

TO = "16505551234"
WAMID = "wamid.IN="


def test_text_reply_is_threaded() -> None:
    body = send_body(TO, Text("Hello"), reply_to=WAMID)

    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": "text",
        "text": {"body": "Hello", "preview_url": False},
        "context": {"message_id": WAMID},
    }


def test_media_by_id_or_link_with_caption_and_filename() -> None:
    image = send_body(TO, Media("image", media_id="123", caption="look"), reply_to=None)
    document = send_body(
        TO, Media("document", link="https://example.com/a.pdf", filename="a.pdf"), reply_to=None
    )

    assert image["image"] == {"id": "123", "caption": "look"}
    assert document["type"] == "document"
    assert document["document"] == {"link": "https://example.com/a.pdf", "filename": "a.pdf"}
    assert "context" not in image


def test_template_buttons_and_list() -> None:
    template = send_body(
        TO,
        Template("hello_world", "en_US", ({"type": "body", "parameters": []},)),
        reply_to=WAMID,
    )
    buttons = send_body(
        TO, Buttons("Pick", (Button("a", "A"), Button("b", "B")), footer="f"), reply_to=WAMID
    )
    menu = send_body(
        TO,
        ListMenu("Pick", "Open", (ListSection("S", (ListRow("r1", "Row", "d"),)),), header="h"),
        reply_to=WAMID,
    )

    assert template["template"] == {
        "name": "hello_world",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": []}],
    }
    assert buttons["interactive"]["type"] == "button"
    assert buttons["interactive"]["action"]["buttons"][1] == {
        "type": "reply",
        "reply": {"id": "b", "title": "B"},
    }
    assert buttons["interactive"]["footer"] == {"text": "f"}
    assert menu["interactive"]["action"]["sections"][0]["rows"] == [
        {"id": "r1", "title": "Row", "description": "d"}
    ]
    assert menu["interactive"]["header"] == {"type": "text", "text": "h"}


def test_a_reaction_reacts_to_the_message_and_carries_no_context() -> None:
    body = send_body(TO, Reaction("\U0001f44d"), reply_to=WAMID)

    assert body["reaction"] == {"message_id": WAMID, "emoji": "\U0001f44d"}
    assert "context" not in body
    with pytest.raises(InvalidOutbound):
        send_body(TO, Reaction("\U0001f44d"), reply_to=None)


def test_mark_read_with_and_without_typing_indicator() -> None:
    assert mark_read_body(WAMID, typing_indicator=False) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": WAMID,
    }
    assert mark_read_body(WAMID, typing_indicator=True)["typing_indicator"] == {"type": "text"}


@pytest.mark.parametrize(
    "build",
    [
        lambda: Text(""),
        lambda: Text("x" * 4097),
        lambda: Media("image"),
        lambda: Media("image", media_id="1", link="https://a"),
        lambda: Media("image", link="http://insecure"),
        lambda: Media("audio", media_id="1", caption="no"),
        lambda: Media("image", media_id="1", filename="a.png"),
        lambda: Media("gif", media_id="1"),
        lambda: Button("id", "a title that is far too long"),
        lambda: Buttons("b", ()),
        lambda: Buttons("b", tuple(Button(str(i), str(i)) for i in range(4))),
        lambda: Buttons("b", (Button("same", "A"), Button("same", "B"))),
        lambda: ListMenu(
            "b", "x", (ListSection("s", tuple(ListRow(str(i), "t") for i in range(11))),)
        ),
        lambda: ListMenu("b", "x", ()),
        lambda: Template(""),
        lambda: Reaction(""),
        lambda: send_body("", Text("hi"), reply_to=None),
    ],
)
def test_what_meta_would_refuse_is_refused_when_built(build: object) -> None:
    assert callable(build)
    with pytest.raises(InvalidOutbound):
        build()
