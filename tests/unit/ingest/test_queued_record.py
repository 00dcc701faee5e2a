"""The versioned queue record: round trip, group and deduplication ids, poison detection."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.domain.whatsapp.queued_record import (
    QueuedRecord,
    QueuedStatus,
    UnreadableRecord,
    read_record,
)
from functions.domain.whatsapp.webhook import parse_delivery
from tests.events import builders as b

pytestmark = pytest.mark.unit

RECEIVED_AT = datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=UTC)


def record_for(*messages: dict[str, object], phone_number_id: str = "123") -> list[QueuedRecord]:
    delivery = parse_delivery(
        b.webhook(b.change(messages=list(messages), phone_number_id=phone_number_id))
    )
    return [QueuedRecord(received=r, received_at=RECEIVED_AT) for r in delivery.messages]


def test_round_trip_keeps_everything_the_consumer_needs() -> None:
    (record,) = record_for(b.message("text", content={"body": "Olá 👋"}))

    document = json.loads(record.to_json())
    again = QueuedRecord.from_json(record.to_json())

    assert document["schemaVersion"] == 1
    assert document["receivedAt"] == "2026-11-25T08:00:00.123Z"
    assert document["business"]["phoneNumberId"] == "123"
    assert document["message"]["text"]["body"] == "Olá 👋"
    assert again.wamid == record.wamid
    assert again.received_at == RECEIVED_AT
    assert again.received.business.phone_number_id == "123"
    assert again.received.contact == record.received.contact
    assert again.received.message.content == record.received.message.content
    assert again.group_id == record.group_id


def test_unknown_keys_are_ignored_so_writers_can_add_fields() -> None:
    (record,) = record_for(b.message())
    document = json.loads(record.to_json())
    document["somethingNew"] = {"x": 1}
    assert QueuedRecord.from_json(json.dumps(document)).wamid == record.wamid


def test_one_group_per_conversation_and_no_phone_number_in_it() -> None:
    a1, a2, other = record_for(
        b.message(sender="447700900001"),
        b.message(sender="447700900001"),
        b.message(sender="447700900002"),
    )
    (same_sender_other_number,) = record_for(b.message(sender="447700900001"), phone_number_id="9")

    assert a1.group_id == a2.group_id
    assert a1.group_id != other.group_id
    assert a1.group_id != same_sender_other_number.group_id
    assert "447700900001" not in a1.group_id


def test_deduplication_id_is_the_wamid_when_sqs_accepts_it() -> None:
    (record,) = record_for(b.message(wamid="wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB+/=="))
    assert record.deduplication_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRB+/=="


@given(wamid=st.text(min_size=1, max_size=300))
def test_ids_always_satisfy_sqs_rules(wamid: str) -> None:
    (record,) = record_for(b.message(wamid=wamid))
    for value in (record.deduplication_id, record.group_id):
        assert 1 <= len(value) <= 128
        assert all("!" <= ch <= "~" for ch in value)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"schemaVersion": 99}',
        '{"schemaVersion": 1}',
        '{"schemaVersion": 1, "business": {}, "message": {"id": "w"}, "receivedAt": "x"}',
        '{"schemaVersion": 1, "business": {"phoneNumberId": "1"}, "message": {},'
        ' "receivedAt": "2026-01-01T00:00:00Z"}',
        '{"schemaVersion": 1, "business": {"phoneNumberId": "1"}, "message": {"id": "w"},'
        ' "receivedAt": "yesterday"}',
        '{"schemaVersion": 1, "business": {"phoneNumberId": "1"}, "message": {"id": "w"}}',
    ],
)
def test_poison_records_are_recognised(body: str) -> None:
    with pytest.raises(UnreadableRecord):
        QueuedRecord.from_json(body)


# --- status records -----------------------------------------------------------------------------


def status_for(raw: dict[str, object]) -> QueuedStatus:
    (update,) = parse_delivery(b.webhook(b.change(statuses=[raw]))).statuses
    return QueuedStatus.from_update(update, RECEIVED_AT)


def test_a_status_record_keeps_what_the_consumer_acts_on_and_no_recipient() -> None:
    raw = b.status("failed", errors=[b.meta_error(131047, "Re-engagement message")])
    raw |= {"recipient_user_id": "US.13491208655302741918", "pricing": {"billable": False}}

    record = status_for(raw)
    document = json.loads(record.to_json())
    again = read_record(record.to_json())

    assert document["kind"] == "status"
    assert set(document["status"]) == {"id", "status", "timestamp", "errors"}
    assert b.SENDER not in record.to_json()
    assert "US.1349" not in record.to_json()
    assert isinstance(again, QueuedStatus)
    assert again.reply_wamid == raw["id"]
    assert again.status == "failed"
    assert again.at == 1750263773.0
    assert [e.code_label for e in again.errors] == ["131047"]
    assert again.received_at == RECEIVED_AT
    assert again.business.phone_number_id == record.business.phone_number_id


def test_message_records_have_no_kind_and_read_as_messages() -> None:
    (record,) = record_for(b.message())

    assert "kind" not in json.loads(record.to_json())
    assert isinstance(read_record(record.to_json()), QueuedRecord)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"schemaVersion": 1, "kind": "reaction"}', "unknown record kind"),
        ('{"schemaVersion": 1, "kind": "status", "receivedAt": "2026-01-01T00:00:00Z"}', "status"),
        (
            '{"schemaVersion": 1, "kind": "status", "status": {"status": "read"},'
            ' "receivedAt": "2026-01-01T00:00:00Z"}',
            "status.id",
        ),
    ],
)
def test_unreadable_status_records_and_unknown_kinds_are_poison(body: str, problem: str) -> None:
    with pytest.raises(UnreadableRecord, match=problem):
        read_record(body)


def test_a_status_record_is_not_read_as_a_message() -> None:
    with pytest.raises(UnreadableRecord, match="not a message record"):
        QueuedRecord.from_json(status_for(b.status("read")).to_json())
