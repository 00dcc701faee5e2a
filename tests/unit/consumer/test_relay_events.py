"""Events for other systems, with an in-memory bus: which facts are published when, what they
say (against the documented JSON schemas), what they keep out, and that a bus that refuses them
never touches the reply."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import GraphApiError, RelayEvent
from functions.domain.consumer.relay_events import (
    DETAIL_TYPES,
    MESSAGE_DEAD_LETTERED,
    MESSAGE_RECEIVED,
    REPLY_SENT,
    REPLY_STATUS_CHANGED,
    RelayEvents,
)
from tests.unit.consumer.builders import (
    BUSINESS_NUMBER_ID,
    SENDER,
    MemoryBus,
    MemoryLedger,
    ScriptedGraph,
    consumer,
    inbound,
    queued_body,
    record,
    wamid_of,
)

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "events"


def conforms(event: RelayEvent) -> None:
    """The event's detail is valid under the documented schema of its detail type."""
    schema = json.loads((SCHEMAS / f"{event.detail_type}.schema.json").read_text())
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(dict(event.detail))


def test_every_detail_type_has_a_schema() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(
        f"{t}.schema.json" for t in DETAIL_TYPES
    )


def test_an_answered_message_is_announced_received_then_replied_in_one_publish() -> None:
    bus = MemoryBus()
    text = "my card number is 4111"
    item = record(queued_body(inbound(text=text)), group="1065:abc")

    outcome = consume_batch([item], consumer(bus=bus)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert [e.detail_type for e in bus.published] == [MESSAGE_RECEIVED, REPLY_SENT]
    assert bus.calls == 1
    assert outcome.events_published == 2
    wamid = wamid_of(item.body)
    (received,) = bus.of(MESSAGE_RECEIVED)
    assert received["eventId"] == f"message.received:{wamid}"
    assert received["conversationId"] == "1065:abc"
    assert received["phoneNumberId"] == BUSINESS_NUMBER_ID
    assert received["messageType"] == "text"
    (sent,) = bus.of(REPLY_SENT)
    assert sent["eventId"] == f"reply.sent:{wamid}:0"
    assert sent["inReplyTo"] == wamid
    assert sent["answers"] == [wamid]
    assert sent["replyWamid"] == outcome.reply_wamid
    assert sent["decision"] == "default"
    for event in bus.published:
        conforms(event)
        # No phone number, no message text, by default.
        serialized = json.dumps(event.detail)
        assert SENDER not in serialized
        assert text not in serialized
        assert "Thanks for your message" not in serialized  # nor the reply's


def test_full_detail_adds_the_customer_and_the_content() -> None:
    bus = MemoryBus()

    consume_batch(
        [record(queued_body(inbound(text="hello")))], consumer(bus=bus, event_content=True)
    )

    received, sent = bus.published
    assert received.detail["customer"] == {"from": SENDER, "name": "Sheena"}
    assert received.detail["message"]["text"] == {"body": "hello"}
    assert sent.detail["customer"] == {"to": SENDER}
    assert sent.detail["message"]["text"]["body"] == "Hello Sheena!"
    for event in bus.published:
        conforms(event)


def test_each_fact_is_published_once_across_retries_and_duplicates() -> None:
    bus = MemoryBus()
    ledger = MemoryLedger()
    body = queued_body()
    refusing = ScriptedGraph(sends=[GraphApiError("131000", meta_code=131000)])

    consume_batch([record(body)], consumer(refusing, ledger=ledger, bus=bus))  # retried
    consume_batch([record(body)], consumer(ledger=ledger, bus=bus))  # answered
    consume_batch([record(body)], consumer(ledger=ledger, bus=bus))  # a duplicate

    assert [e.detail_type for e in bus.published] == [MESSAGE_RECEIVED, REPLY_SENT]


def test_a_list_of_replies_is_one_event_per_reply_by_slot() -> None:
    bus = MemoryBus()
    answers = [{"type": "text", "text": {"body": b}} for b in ("a", "b")]
    item = record()

    consume_batch([item], consumer(bus=bus, reply_handler=lambda event: answers))

    ids = [e["eventId"] for e in bus.of(REPLY_SENT)]
    assert ids == [f"reply.sent:{wamid_of(item.body)}:{slot}" for slot in (0, 1)]
    assert [e["decision"] for e in bus.of(REPLY_SENT)] == ["handler", "handler"]


def test_dead_letters_are_announced_with_their_reason() -> None:
    bus = MemoryBus()
    body = queued_body()
    failing = ScriptedGraph(sends=[GraphApiError("131000", meta_code=131000)])

    poison = record("not json", group="p")
    tired = record(body, group="q")
    consume_batch([poison, tired], consumer(failing, bus=bus, max_attempts=1))

    letters = bus.of(MESSAGE_DEAD_LETTERED)
    assert [(e["reason"], e["wamid"], e["errorCode"]) for e in letters] == [
        ("unreadable", None, "poison"),
        ("attempts_exhausted", wamid_of(body), "131000"),
    ]
    assert letters[0]["sqsMessageId"] == poison.message_id
    assert letters[0]["conversationId"] == "p"
    for event in bus.published:
        conforms(event)


def test_a_bus_that_refuses_never_touches_the_reply() -> None:
    graph = ScriptedGraph()
    bus = MemoryBus(refuse="ThrottlingException")

    result = consume_batch([record()], consumer(graph, bus=bus))

    outcome = result.outcomes[0]
    assert outcome.result is Result.REPLIED
    assert result.batch_item_failures() == []
    assert len(graph.sent()) == 1
    assert [(f.event.detail_type, f.error_code) for f in outcome.events_unpublished] == [
        (MESSAGE_RECEIVED, "ThrottlingException"),
        (REPLY_SENT, "ThrottlingException"),
    ]
    assert outcome.events_published == 0


def test_without_a_bus_nothing_is_built() -> None:
    outcome = consume_batch([record()], consumer()).outcomes[0]

    assert outcome.events == []


def test_status_changes_have_their_builder_for_status_processing() -> None:
    events = RelayEvents(MemoryBus())

    event = events.reply_status_changed(
        reply_wamid="wamid.OUT1=",
        status="failed",
        at=1_795_597_200,
        phone_number_id=BUSINESS_NUMBER_ID,
        in_reply_to="wamid.IN=",
        conversation_id="1065:abc",
        errors=[{"code": 131047, "title": "Re-engagement message", "message": "more than 24h"}],
        recipient=SENDER,
    )

    assert event.detail_type == REPLY_STATUS_CHANGED
    assert event.event_id == "reply.status_changed:wamid.OUT1=:failed"
    assert event.detail["occurredAt"] == "2026-11-25T09:00:00.000Z"
    assert event.detail["errors"] == [{"code": 131047, "title": "Re-engagement message"}]
    assert "customer" not in event.detail
    conforms(event)
    full = RelayEvents(MemoryBus(), include_content=True).reply_status_changed(
        reply_wamid="w", status="read", at=0, phone_number_id="1", recipient=SENDER
    )
    assert full.detail["customer"] == {"recipient": SENDER}
    conforms(full)


def test_event_ids_are_the_same_for_the_same_fact() -> None:
    bus_a, bus_b = MemoryBus(), MemoryBus()
    body = queued_body()

    consume_batch([record(body)], consumer(bus=bus_a))
    consume_batch([record(body)], consumer(bus=bus_b))  # another ledger: the same facts again

    assert [e.event_id for e in bus_a.published] == [e.event_id for e in bus_b.published]
