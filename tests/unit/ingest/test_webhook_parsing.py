"""Parsing deliveries into typed models: every type, every entry, nothing dropped."""

import json

import pytest

from functions.domain.whatsapp.webhook import (
    ButtonContent,
    ContactsContent,
    InteractiveReply,
    InvalidPayload,
    LocationContent,
    MediaContent,
    OrderContent,
    ReactionContent,
    SystemContent,
    TextContent,
    UnknownContent,
    UnsupportedContent,
    parse_delivery,
    parse_message,
)
from tests.events import builders as b

pytestmark = pytest.mark.unit


def fixture(name: str) -> object:
    return json.loads(b.fixture_bytes(name))


def test_documented_text_message() -> None:
    delivery = parse_delivery(fixture("text"))

    (received,) = delivery.messages
    assert received.message.wamid.startswith("wamid.")
    assert received.message.content == TextContent(body="Does it come in another color?")
    assert received.business.phone_number_id == "106540352242922"
    assert received.waba_id == "102290129340398"
    assert received.contact is not None
    assert received.contact.name == "Sheena Nelson"
    assert received.sender_key == "16505551234"
    assert received.message.sent_at is not None
    assert delivery.statuses == ()


def test_documented_image_button_reply_reaction_and_unsupported() -> None:
    image = parse_delivery(fixture("image")).messages[0].message
    assert image.content == MediaContent(
        kind="image",
        media_id="1003383421387256",
        mime_type="image/jpeg",
        sha256="SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=",
        caption="Taj Mahal",
    )

    reply = parse_delivery(fixture("interactive_button_reply")).messages[0].message
    assert reply.content == InteractiveReply(
        kind="button_reply", reply_id="change-button", title="Change"
    )
    assert reply.context is not None
    assert reply.context.message_id is not None

    reaction = parse_delivery(fixture("reaction")).messages[0].message
    assert isinstance(reaction.content, ReactionContent)
    assert reaction.content.emoji == "\U0001f62e"
    assert not reaction.content.removed

    unsupported = parse_delivery(fixture("unsupported")).messages[0].message
    assert unsupported.content == UnsupportedContent(kind="edit")
    assert [e.code for e in unsupported.errors] == [131051]


def test_statuses_and_value_errors_are_not_messages() -> None:
    delivered = parse_delivery(fixture("status_delivered"))
    assert delivered.messages == ()
    assert [s.status for s in delivered.statuses] == ["delivered"]

    failed = parse_delivery(fixture("status_failed"))
    assert failed.statuses[0].errors[0].code == 131049

    errors = parse_delivery(fixture("value_errors"))
    assert errors.messages == ()
    assert [e.code_label for e in errors.errors] == ["130429"]


@pytest.mark.parametrize(
    ("message_type", "expected_type"),
    [
        ("text", TextContent),
        ("image", MediaContent),
        ("video", MediaContent),
        ("audio", MediaContent),
        ("document", MediaContent),
        ("sticker", MediaContent),
        ("location", LocationContent),
        ("contacts", ContactsContent),
        ("interactive", InteractiveReply),
        ("button", ButtonContent),
        ("reaction", ReactionContent),
        ("order", OrderContent),
        ("system", SystemContent),
        ("unsupported", UnsupportedContent),
        ("hologram", UnknownContent),
    ],
)
def test_every_message_type_gets_its_model(message_type: str, expected_type: type) -> None:
    delivery = parse_delivery(b.webhook(b.change(messages=[b.message(message_type)])))
    (received,) = delivery.messages
    assert isinstance(received.message.content, expected_type)
    assert received.message.type == message_type
    assert received.message.raw["type"] == message_type  # kept whole for the consumer


def test_list_reply_and_flow_reply() -> None:
    list_reply = parse_message(
        b.message(
            "interactive",
            content={
                "type": "list_reply",
                "list_reply": {"id": "row-2", "title": "Tuesday", "description": "10:00"},
            },
        )
    )
    assert list_reply.content == InteractiveReply(
        kind="list_reply", reply_id="row-2", title="Tuesday", description="10:00"
    )
    flow = parse_message(
        b.message(
            "interactive",
            content={
                "type": "nfm_reply",
                "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"a":1}'},
            },
        )
    )
    assert flow.content == InteractiveReply(kind="nfm_reply", title="flow", response_json='{"a":1}')


@pytest.mark.parametrize("emoji", [None, ""])
def test_a_removed_reaction_is_recognised(emoji: str | None) -> None:
    content = {"message_id": "wamid.X="}
    if emoji is not None:
        content["emoji"] = emoji
    message = parse_message(b.message("reaction", content=content))
    assert isinstance(message.content, ReactionContent)
    assert message.content.removed


def test_a_username_user_with_empty_from_is_keyed_by_user_id() -> None:
    msg = b.message("text", sender="")
    delivery = parse_delivery(
        b.webhook(
            b.change(
                messages=[msg],
                contacts=[{"profile": {"name": "Nick"}, "wa_id": "", "user_id": "US.123"}],
            )
        )
    )
    (received,) = delivery.messages
    assert received.message.sender == ""
    assert received.sender_key == "US.123"


def test_a_batch_across_entries_changes_and_business_numbers_keeps_everything_in_order() -> None:
    changes = [
        b.change(
            messages=[b.message(sender=f"1555000{n:04d}") for n in range(i * 5, i * 5 + 5)],
            statuses=[b.status("read")],
            phone_number_id=f"10000000000000{i % 3}",
        )
        for i in range(12)
    ]
    document = b.webhook(*changes, b.change(field="account_update"), entries=4)

    delivery = parse_delivery(document)

    expected = [
        m["id"]
        for entry in document["entry"]
        for c in entry["changes"]
        for m in c["value"].get("messages", [])
    ]
    assert [r.message.wamid for r in delivery.messages] == expected
    assert len(delivery.messages) == 60
    assert len(delivery.statuses) == 12
    assert {r.business.phone_number_id for r in delivery.messages} == {
        "100000000000000",
        "100000000000001",
        "100000000000002",
    }
    assert delivery.ignored_fields == ("account_update",)
    for received in delivery.messages:
        assert received.contact is not None
        assert received.contact.wa_id == received.message.sender


def test_other_objects_and_fields_are_acknowledged_not_parsed() -> None:
    assert parse_delivery({"object": "page", "entry": "whatever"}).ignored_fields == (
        "object:page",
    )
    template_update = b.webhook(b.change(field="message_template_status_update"))
    assert parse_delivery(template_update).ignored_fields == ("message_template_status_update",)
    assert parse_delivery({}).messages == ()


@pytest.mark.parametrize("document", [[], "text", 3, None])
def test_only_a_body_that_is_not_an_object_is_refused(document: object) -> None:
    with pytest.raises(InvalidPayload, match="the body must be a JSON object"):
        parse_delivery(document)


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"entry": {}}, "entry must be a list"),
        ({"entry": [1]}, "entry[0] must be an object"),
        ({"entry": [{"changes": "x"}]}, "entry[0].changes must be a list"),
        ({"entry": [{"changes": [{"field": "messages"}]}]}, "entry[0].changes[0].value"),
        (
            {"entry": [{"changes": [{"field": "messages", "value": {"messages": {}}}]}]},
            "entry[0].changes[0].value.messages must be a list",
        ),
        (
            b.webhook(b.change(messages=[{"type": "text"}])),
            "entry[0].changes[0].value.messages[0].id",
        ),
        (
            b.webhook(b.change(messages=[b.message()], phone_number_id="")),
            "metadata.phone_number_id is missing: 1 message(s) skipped",
        ),
        (b.webhook(b.change(statuses=[None])), "entry[0].changes[0].value.statuses[0]"),
    ],
)
def test_malformed_pieces_are_skipped_and_named(document: object, where: str) -> None:
    delivery = parse_delivery(document)
    assert delivery.messages == ()
    assert any(where in problem for problem in delivery.problems), delivery.problems


def test_a_malformed_piece_never_costs_the_valid_messages_beside_it() -> None:
    document = b.webhook(
        b.change(messages=[b.message(wamid="wamid.GOOD"), b.message(wamid="wamid.ALSO")]),
        b.change(statuses=[None]),
    )
    messages = document["entry"][0]["changes"][0]["value"]["messages"]
    messages[1:1] = ["junk", {"type": "text"}]
    document["entry"][0]["changes"].append({"field": "messages", "value": None})
    document["entry"].append(None)

    delivery = parse_delivery(document)

    assert [r.message.wamid for r in delivery.messages] == ["wamid.GOOD", "wamid.ALSO"]
    assert len(delivery.problems) == 5
    # Paths and types only: no content of the delivery in a problem.
    assert not any("junk" in problem for problem in delivery.problems)


def test_error_codes_sent_as_strings_or_missing() -> None:
    delivery = parse_delivery(
        b.webhook(b.change(errors=[{"code": "131047"}, {"title": "no code"}, {"code": True}]))
    )
    assert [e.code_label for e in delivery.errors] == ["131047", "unknown", "unknown"]


def test_numbers_sent_unquoted_are_read_as_strings() -> None:
    message = parse_message({"id": "wamid.A", "from": 16505551234, "timestamp": 17, "type": "text"})
    assert message.sender == "16505551234"
    assert message.timestamp == "17"
    assert message.content == TextContent(body="")
