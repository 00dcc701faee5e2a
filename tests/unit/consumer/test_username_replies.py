"""Replies to users known by a username (2026): the typed recipient of the send body, the reply
rules' decision, and the use case answering at the business-scoped user id (BSUID)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.error_policy import Action, classify
from functions.domain.consumer.ports import GraphApiError
from functions.domain.consumer.reply_rules import reply_recipient
from functions.domain.whatsapp.outbound import (
    InvalidOutbound,
    Reaction,
    Recipient,
    Template,
    Text,
    send_body,
)
from functions.domain.whatsapp.queued_record import QueuedRecord
from functions.domain.whatsapp.webhook import ReceivedMessage, parse_delivery
from tests.events import builders as b
from tests.unit.consumer.builders import ScriptedGraph, consumer, record, rules

pytestmark = pytest.mark.unit

BSUID = "US.13491208655302741918"
PHONE = "16505551234"
WAMID = "wamid.IN="


def queued_from_fixture(name: str, **edit: Any) -> QueuedRecord:
    document = json.loads(b.fixture_bytes(name))
    value = document["entry"][0]["changes"][0]["value"]
    # Sent a moment ago: Meta's example timestamps are months old, past the 24-hour window,
    # which would send the template straight away.
    value["messages"][0]["timestamp"] = str(int(time.time()) - 1)
    value["messages"][0].update(edit)
    (received,) = parse_delivery(document).messages
    return QueuedRecord(received=received, received_at=datetime(2026, 11, 25, tzinfo=UTC))


def received(name: str, **edit: Any) -> ReceivedMessage:
    return queued_from_fixture(name, **edit).received


# --- the send body -------------------------------------------------------------------------------


def test_a_bsuid_goes_in_recipient_and_never_beside_to() -> None:
    body = send_body(Recipient.user_id(BSUID), Text("Hello"), reply_to=WAMID)

    assert body["recipient"] == BSUID
    assert "to" not in body  # Meta sends to `to` when both are set
    assert body["recipient_type"] == "individual"
    assert body["context"] == {"message_id": WAMID}


def test_a_phone_goes_in_to_whether_typed_or_plain() -> None:
    typed = send_body(Recipient.phone(PHONE), Text("Hello"), reply_to=WAMID)
    plain = send_body(PHONE, Text("Hello"), reply_to=WAMID)

    assert typed == plain
    assert typed["to"] == PHONE
    assert "recipient" not in typed


def test_templates_and_reactions_address_a_bsuid_the_same_way() -> None:
    template = send_body(Recipient.user_id(BSUID), Template("hello_world"), reply_to=WAMID)
    reaction = send_body(Recipient.user_id(BSUID), Reaction("\U0001f44d"), reply_to=WAMID)

    assert (template["recipient"], template["context"]) == (BSUID, {"message_id": WAMID})
    assert reaction["recipient"] == BSUID
    assert reaction["reaction"]["message_id"] == WAMID
    assert "to" not in template
    assert "to" not in reaction


@pytest.mark.parametrize("nobody", [None, "", "   "])
def test_a_send_without_a_recipient_is_refused(nobody: str | None) -> None:
    with pytest.raises(InvalidOutbound):
        send_body(nobody, Text("Hello"), reply_to=WAMID)
    with pytest.raises(InvalidOutbound):
        Recipient.user_id(nobody or "")


# --- the decision --------------------------------------------------------------------------------


def test_a_username_user_is_answered_at_the_bsuid_with_their_name() -> None:
    decision = rules().decide(received("username_text_bsuid_only", text={"body": "hi"}))

    assert decision.reason == "rule:greeting"
    assert decision.recipient == Recipient.user_id(BSUID)
    assert decision.reply == Text("Hello Sheena Nelson!")


def test_the_username_stands_in_for_a_missing_profile_name() -> None:
    document = json.loads(b.fixture_bytes("username_text_bsuid_only"))
    value = document["entry"][0]["changes"][0]["value"]
    del value["contacts"][0]["profile"]["name"]
    value["messages"][0]["text"] = {"body": "hello"}
    (message,) = parse_delivery(document).messages

    assert rules().decide(message).reply == Text("Hello sheena.designs!")


def test_a_user_with_both_is_answered_at_the_phone() -> None:
    # Every template (authentication ones too) can go to a phone; 131062 cannot happen there.
    message = received("username_text_phone_and_bsuid")

    assert reply_recipient(message) == Recipient.phone(PHONE)
    assert rules().decide(message).recipient == Recipient.phone(PHONE)


def test_a_bsuid_is_never_mistaken_for_the_business_own_number() -> None:
    # Digits of a BSUID that happen to equal an own number do not silence the user.
    own = rules(ownNumbers=["13491208655302741918"])

    decision = own.decide(received("username_text_bsuid_only"))

    assert decision.reason == "default"
    assert decision.recipient == Recipient.user_id(BSUID)


def test_the_username_change_is_not_answered_and_the_contact_alone_names_the_user() -> None:
    change = rules().decide(received("username_system_user_changed_user_id"))
    nobody = rules().decide(received("username_text_bsuid_only", from_user_id=""))

    assert (change.reply, change.reason) == (None, "type:system")
    # The contact entry still names the BSUID: the message is answerable.
    assert nobody.recipient == Recipient.user_id(BSUID)


# --- through the use case ------------------------------------------------------------------------


def test_the_use_case_replies_at_the_bsuid_in_thread_from_the_receiving_number() -> None:
    graph = ScriptedGraph()
    queued = queued_from_fixture("username_text_bsuid_only")

    outcome = consume_batch([record(queued.to_json())], consumer(graph)).outcomes[0]

    assert outcome.result is Result.REPLIED
    (sent,) = graph.sent()
    assert sent["recipient"] == BSUID
    assert "to" not in sent
    assert sent["context"] == {"message_id": queued.wamid}
    assert [c.phone_number_id for c in graph.calls] == ["106540352242922"] * 2
    assert graph.read()[0]["message_id"] == queued.wamid
    assert outcome.sender == BSUID  # masked by telemetry


def test_the_template_fallback_goes_to_the_bsuid_and_131062_is_recorded_not_retried() -> None:
    window_closed = GraphApiError("131047", meta_code=131047, http_status=400)
    not_for_bsuids = GraphApiError("131062", meta_code=131062, http_status=400)
    graph = ScriptedGraph(sends=[window_closed, not_for_bsuids])
    queued = queued_from_fixture("username_text_bsuid_only")

    outcome = consume_batch([record(queued.to_json())], consumer(graph)).outcomes[0]

    free_form, template = graph.sent()
    assert free_form["recipient"] == template["recipient"] == BSUID
    assert template["type"] == "template"
    assert template["context"] == {"message_id": queued.wamid}
    assert outcome.result is Result.PERMANENT
    assert outcome.permanent_code == "131062"
    assert classify("131062").action is Action.PERMANENT


def test_the_username_change_message_is_read_and_not_answered() -> None:
    graph = ScriptedGraph()
    queued = queued_from_fixture("username_system_user_changed_user_id")

    outcome = consume_batch([record(queued.to_json())], consumer(graph)).outcomes[0]

    assert outcome.result is Result.NO_REPLY
    assert graph.sent() == []
