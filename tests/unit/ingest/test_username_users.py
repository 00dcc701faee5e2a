"""Users known by a username (2026): business-scoped user ids (BSUIDs) in the parser, the queued
record and the conversation's FIFO group, with payloads shaped like Meta's documentation
(tests/events/webhooks/username_*.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.domain.ingest.accept import summarize
from functions.domain.whatsapp.queued_record import QueuedRecord
from functions.domain.whatsapp.webhook import (
    ReceivedMessage,
    SystemContent,
    parse_delivery,
)
from tests.events import builders as b

pytestmark = pytest.mark.unit

BSUID = "US.13491208655302741918"
PHONE = "16505551234"
RECEIVED_AT = datetime(2026, 11, 25, 8, 0, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(b.fixture_bytes(name))
    return document


def only_message(name: str) -> ReceivedMessage:
    (received,) = parse_delivery(fixture(name)).messages
    return received


def queued(received: ReceivedMessage) -> QueuedRecord:
    return QueuedRecord(received=received, received_at=RECEIVED_AT)


def test_a_user_known_only_by_a_username_is_read_from_the_bsuid() -> None:
    received = only_message("username_text_bsuid_only")

    assert received.message.sender == ""
    assert received.message.sender_user_id == BSUID
    assert received.sender_phone == ""
    assert received.sender_user_id == BSUID
    assert received.sender_key == BSUID
    assert received.contact is not None
    assert received.contact.user_id == BSUID
    assert received.contact.username == "sheena.designs"
    assert received.contact.name == "Sheena Nelson"


def test_a_user_with_phone_and_bsuid_keeps_both() -> None:
    received = only_message("username_text_phone_and_bsuid")

    assert (received.sender_phone, received.sender_user_id) == (PHONE, BSUID)
    assert received.sender_key == PHONE  # what logs show, masked
    assert received.conversation_key == BSUID  # what the FIFO group hashes


def test_parent_bsuid_and_username_are_kept_and_the_contact_matched_by_bsuid() -> None:
    document = fixture("username_button_reply_parent_bsuid")
    value = document["entry"][0]["changes"][0]["value"]
    # Another user's contact entry first: the sender's is found by BSUID, not by position.
    value["contacts"].insert(0, {"profile": {"name": "Other"}, "user_id": "BR.999"})

    (received,) = parse_delivery(document).messages

    assert received.contact is not None
    assert received.contact.user_id == "BR.1502576394655843"
    assert received.contact.parent_user_id == "BR.ENT.11815799212886844830"
    assert received.contact.username == "joao.p"


def test_the_username_change_system_message_names_both_bsuids() -> None:
    received = only_message("username_system_user_changed_user_id")

    content = received.message.content
    assert isinstance(content, SystemContent)
    assert content.kind == "user_changed_user_id"
    assert content.previous_user_id == BSUID
    assert content.user_id == "US.20831178330957720445"
    assert received.contact is None  # system messages carry no contacts array


@pytest.mark.parametrize(
    ("name", "status", "codes"),
    [
        ("username_status_read_bsuid", "read", {}),
        ("username_status_failed_bsuid", "failed", {"131026": 1}),
    ],
)
def test_statuses_of_replies_to_a_bsuid_name_the_recipient_by_bsuid(
    name: str, status: str, codes: dict[str, int]
) -> None:
    delivery = parse_delivery(fixture(name))

    (update,) = delivery.statuses
    assert update.status == status
    assert update.recipient_id == ""
    assert update.recipient_user_id == BSUID
    assert update.recipient_key == BSUID
    assert delivery.messages == ()
    assert dict(summarize(delivery).delivery_failures) == codes


def test_the_queued_record_carries_the_username_fields_to_the_consumer() -> None:
    record = queued(only_message("username_button_reply_parent_bsuid"))

    document = json.loads(record.to_json())
    again = QueuedRecord.from_json(record.to_json())

    assert document["contact"] == {
        "waId": "",
        "name": "Jo\u00e3o",
        "userId": "BR.1502576394655843",
        "username": "joao.p",
        "parentUserId": "BR.ENT.11815799212886844830",
    }
    assert document["message"]["from_user_id"] == "BR.1502576394655843"
    assert again.received.contact == record.received.contact
    assert again.received.sender_user_id == "BR.1502576394655843"
    assert again.group_id == record.group_id


def test_a_record_written_before_usernames_is_still_read() -> None:
    (record,) = [queued(r) for r in parse_delivery(fixture("text")).messages]
    document = json.loads(record.to_json())
    document["contact"] = {"waId": PHONE, "name": "Sheena Nelson", "userId": None}

    again = QueuedRecord.from_json(json.dumps(document))

    assert again.received.contact is not None
    assert again.received.contact.username is None
    assert again.received.sender_phone == PHONE


def test_the_conversation_keeps_its_group_when_the_user_adopts_a_username() -> None:
    # Before: phone and BSUID side by side (every 2026 payload). After: the BSUID alone.
    before = queued(only_message("username_text_phone_and_bsuid"))
    after = queued(only_message("username_text_bsuid_only"))
    # A message with both in `from`/`from_user_id` but no contacts entry at all.
    bare = b.message(sender=PHONE, from_user_id=BSUID)
    (no_contact,) = parse_delivery(b.webhook(b.change(messages=[bare], contacts=[]))).messages

    assert before.group_id == after.group_id == queued(no_contact).group_id
    assert PHONE not in before.group_id
    assert BSUID not in before.group_id


def test_a_phone_only_payload_keeps_the_group_it_always_had() -> None:
    # Payloads without a BSUID (before 2026) hash the phone, as they did before usernames.
    phone_only = queued(only_message("text"))
    other_user = queued(only_message("username_text_bsuid_only"))

    assert phone_only.received.conversation_key == PHONE
    assert phone_only.group_id != other_user.group_id


def test_different_bsuids_are_different_conversations_and_no_sender_is_its_own() -> None:
    first = b.message(sender="", from_user_id="US.1")
    second = b.message(sender="", from_user_id="US.2")
    anonymous = b.message(sender="")
    delivery = parse_delivery(b.webhook(b.change(messages=[first, second, anonymous], contacts=[])))
    groups = [queued(r).group_id for r in delivery.messages]

    assert len(set(groups)) == 3
