"""The ledger's contract, run against the DynamoDB adapter (moto on loopback) and the in-memory
fake the unit tests use: both must behave alike, or the unit tests prove nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from functions.adapters.aws import dynamodb
from functions.adapters.ledger import (
    MESSAGE_TTL_SECONDS,
    REPLY_TTL_SECONDS,
    DynamoDbLedger,
)
from functions.domain.consumer.ports import (
    IN_BURST,
    BeginResult,
    FailedAttempt,
    Finished,
    Ledger,
    MessageStatus,
    SentReply,
    StatusWrite,
    StoreUnavailable,
)
from tests.conftest import boto_client
from tests.unit.consumer.builders import MemoryLedger

pytestmark = pytest.mark.integration

NOW = 1_795_597_200.0
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="


@pytest.fixture(params=["dynamodb", "memory"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    if request.param == "memory":
        return MemoryLedger()
    table: str = request.getfixturevalue("idempotency_table")
    return DynamoDbLedger(dynamodb(), table)


def sent(slot: int = 0, reply: str = "wamid.OUT1=", wamid: str = WAMID) -> SentReply:
    return SentReply(
        reply_wamid=reply,
        inbound_wamid=wamid,
        slot=slot,
        kind="reply",
        phone_number_id="106540352242922",
        recipient={"to": "16505551234"},
        message={"type": "text", "text": {"body": "Hello Sheena!", "preview_url": False}},
        decision="rule:greeting",
        sent_at=NOW + 1,
        inbound_at=NOW - 2,
    )


def begin(
    ledger: Ledger,
    *,
    now: float = NOW,
    lease: float = 30,
    claim: int | None = 0,
    enqueued_at: float | None = None,
    wamid: str = WAMID,
) -> Any:
    return ledger.begin(
        wamid, now=now, lease_until=now + lease, claim_slot=claim, enqueued_at=enqueued_at
    )


def test_a_new_message_starts_and_a_finished_one_is_a_duplicate(ledger: Ledger) -> None:
    first = begin(ledger)
    ledger.record_sent(sent(), claim_next=None, finished=Finished("replied"))
    again = begin(ledger, now=NOW + 100)

    assert first.result is BeginResult.STARTED
    assert first.history.status is MessageStatus.NEW
    assert again.result is BeginResult.ALREADY_DONE
    assert again.history.status is MessageStatus.DONE
    assert again.history.outcome == "replied"
    assert again.history.sent == {0: "wamid.OUT1="}


def test_a_live_lease_is_busy_and_an_expired_one_is_free(ledger: Ledger) -> None:
    begin(ledger, lease=30)

    assert begin(ledger, now=NOW + 10).result is BeginResult.BUSY
    late = begin(ledger, now=NOW + 31)
    assert late.result is BeginResult.STARTED
    # The abandoned attempt's claim is what the next one must not send again.
    assert late.history.claimed == {0}


def test_a_refused_send_releases_its_slot_and_counts_the_attempt(ledger: Ledger) -> None:
    begin(ledger)
    ledger.record_failure(
        WAMID,
        FailedAttempt(
            attempts=3,
            error_code="131056",
            error_class="pair_rate_limit",
            at=NOW + 1,
            release_slot=0,
        ),
    )

    retry = begin(ledger, now=NOW + 2)  # the failure ended the lease

    assert retry.result is BeginResult.STARTED
    assert retry.history.attempts == 3
    assert retry.history.claimed == frozenset()
    assert retry.history.status is MessageStatus.ACTIVE


def test_a_dead_letter_refuses_old_copies_and_accepts_a_redrive(ledger: Ledger) -> None:
    begin(ledger)
    ledger.record_failure(
        WAMID,
        FailedAttempt(
            attempts=8,
            error_code="131000",
            error_class="transient",
            at=NOW + 5,
            release_slot=0,
            dead_lettered=True,
        ),
    )

    stale = begin(ledger, now=NOW + 6, enqueued_at=NOW - 600)
    unknown_age = begin(ledger, now=NOW + 6, enqueued_at=None)
    redrive = begin(ledger, now=NOW + 3600, enqueued_at=NOW + 3500)

    assert stale.result is BeginResult.ALREADY_DEAD_LETTERED
    assert unknown_age.result is BeginResult.ALREADY_DEAD_LETTERED
    assert redrive.result is BeginResult.STARTED
    assert redrive.history.status is MessageStatus.DEAD_LETTERED
    assert redrive.history.dead_lettered_at == NOW + 5


def test_several_slots_are_claimed_and_recorded_one_write_each(ledger: Ledger) -> None:
    begin(ledger, claim=0)
    ledger.record_sent(sent(0, "wamid.OUT1="), claim_next=1, finished=None)
    crashed = begin(ledger, now=NOW + 60)  # the run died while sending slot 1

    assert crashed.history.sent == {0: "wamid.OUT1="}
    assert crashed.history.claimed == {1}
    ledger.claim(WAMID, 2, now=NOW + 61)
    ledger.record_sent(sent(2, "wamid.OUT3="), claim_next=None, finished=Finished("replied"))
    done = begin(ledger, now=NOW + 120)
    assert done.result is BeginResult.ALREADY_DONE
    assert done.history.sent == {0: "wamid.OUT1=", 2: "wamid.OUT3="}
    assert done.history.claimed == {1}


def test_finish_records_the_outcome_and_releases_a_refused_slot(ledger: Ledger) -> None:
    begin(ledger)
    ledger.finish(WAMID, Finished("permanent_failure", "131026"), release_slot=0)

    done = begin(ledger, now=NOW + 1)

    assert done.result is BeginResult.ALREADY_DONE
    assert done.history.outcome == "permanent_failure"
    assert done.history.claimed == frozenset()


def test_a_send_without_a_reply_id_is_still_recorded(ledger: Ledger) -> None:
    begin(ledger)
    ledger.record_sent(sent(0, ""), claim_next=None, finished=Finished("replied"))

    assert begin(ledger, now=NOW + 1).history.sent == {0: ""}


def test_dynamodb_items_carry_expiry_and_the_reply_for_its_statuses(
    idempotency_table: str, aws: str
) -> None:
    ledger = DynamoDbLedger(dynamodb(), idempotency_table)
    begin(ledger)
    ledger.record_sent(sent(), claim_next=None, finished=Finished("replied"))

    client = boto_client("dynamodb", aws)
    message = client.get_item(TableName=idempotency_table, Key={"id": {"S": f"msg#{WAMID}"}})
    reply = client.get_item(TableName=idempotency_table, Key={"id": {"S": "reply#wamid.OUT1="}})

    assert int(message["Item"]["expiration"]["N"]) == int(NOW) + MESSAGE_TTL_SECONDS
    item = reply["Item"]
    assert int(item["expiration"]["N"]) == int(NOW + 1) + REPLY_TTL_SECONDS
    assert item["inbound_wamid"] == {"S": WAMID}
    assert item["recipient"] == {"M": {"to": {"S": "16505551234"}}}
    assert json.loads(item["message"]["S"])["text"]["body"] == "Hello Sheena!"


# --- the statuses of replies ------------------------------------------------------------------


def replied(ledger: Ledger, reply: str = "wamid.OUT1=") -> None:
    begin(ledger)
    ledger.record_sent(sent(0, reply), claim_next=None, finished=Finished("replied"))


def failed(owner: str, *, code: str = "131047", claim: bool = True) -> StatusWrite:
    return StatusWrite(
        reply_wamid="wamid.OUT1=",
        status="failed",
        at=NOW + 9,
        error_code=code,
        error_class="recipient",
        follow_up_owner=owner,
        claim_first_attempt=claim,
    )


def test_a_status_of_no_known_reply_returns_none_and_creates_nothing(ledger: Ledger) -> None:
    assert ledger.record_status(StatusWrite("wamid.NOBODY=", "delivered", NOW)) is None
    replied(ledger)
    assert ledger.record_status(StatusWrite("wamid.NOBODY=", "sent", NOW)) is None


def test_each_status_keeps_its_first_timestamp_and_returns_the_reply_before_it(
    ledger: Ledger,
) -> None:
    replied(ledger)

    first = ledger.record_status(StatusWrite("wamid.OUT1=", "read", NOW + 9))
    second = ledger.record_status(StatusWrite("wamid.OUT1=", "delivered", NOW + 3))
    again = ledger.record_status(StatusWrite("wamid.OUT1=", "read", NOW + 50))
    after = ledger.record_status(StatusWrite("wamid.OUT1=", "sent", NOW + 1))

    assert first is not None
    assert second is not None
    assert again is not None
    assert after is not None
    assert first.statuses == {}
    assert first.reply == sent()
    assert second.statuses == {"read": NOW + 9}
    assert again.statuses == {"read": NOW + 9, "delivered": NOW + 3}
    assert after.statuses == {"read": NOW + 9, "delivered": NOW + 3}


def test_a_failure_takes_the_follow_up_for_its_first_owner_only(ledger: Ledger) -> None:
    replied(ledger)

    first = ledger.record_status(failed("sqs-1"))
    duplicate = ledger.record_status(failed("sqs-2", code="131026"))
    now = ledger.record_status(StatusWrite("wamid.OUT1=", "sent", NOW + 1))

    assert first is not None
    assert duplicate is not None
    assert now is not None
    assert first.follow_up.owner is None
    assert first.failed_code is None
    assert duplicate.follow_up.owner == "sqs-1"
    assert duplicate.follow_up.attempts == 1  # claimed with the failure, by its owner
    assert duplicate.follow_up.in_doubt
    assert (now.failed_code, now.failed_class) == ("131047", "recipient")
    assert now.statuses == {"failed": NOW + 9}
    assert now.follow_up.owner == "sqs-1"


def test_follow_up_attempts_are_claimed_one_after_a_refusal_each(ledger: Ledger) -> None:
    replied(ledger)
    ledger.record_status(failed("sqs-1"))

    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=2, now=NOW)  # in doubt
    ledger.settle_follow_up("wamid.OUT1=", refused=1, error_code="131000", gave_up=False)
    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-2", attempt=2, now=NOW)
    assert ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=2, now=NOW)
    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=2, now=NOW)
    ledger.settle_follow_up("wamid.OUT1=", refused=2, error_code="131000", gave_up=True)
    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=3, now=NOW)

    state = ledger.record_status(StatusWrite("wamid.OUT1=", "sent", NOW))
    assert state is not None
    assert state.follow_up.attempts == 2
    assert state.follow_up.refused == 2
    assert state.follow_up.gave_up
    assert state.follow_up.error_code == "131000"
    assert not state.follow_up.in_doubt


def test_an_unowned_first_claim_follows_the_same_rules(ledger: Ledger) -> None:
    replied(ledger)
    ledger.record_status(failed("sqs-1", claim=False))

    assert ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=1, now=NOW)
    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=1, now=NOW)


def test_a_follow_up_is_recorded_on_its_original_and_remembered_as_a_reply(
    ledger: Ledger,
) -> None:
    replied(ledger)
    ledger.record_status(failed("sqs-1"))
    template = {"type": "template", "template": {"name": "hello_world"}}
    follow_up = SentReply(
        reply_wamid="wamid.OUT2=",
        inbound_wamid=WAMID,
        slot=0,
        kind="fallback",
        phone_number_id="106540352242922",
        recipient={"to": "16505551234"},
        message=template,
        decision="late-131047",
        sent_at=NOW + 10,
        inbound_at=NOW - 2,
        original="wamid.OUT1=",
        generation=1,
    )

    ledger.record_follow_up(follow_up)

    original = ledger.record_status(StatusWrite("wamid.OUT1=", "sent", NOW + 1))
    own = ledger.record_status(StatusWrite("wamid.OUT2=", "delivered", NOW + 12))
    assert original is not None
    assert own is not None
    assert original.follow_up.reply_wamid == "wamid.OUT2="
    assert original.follow_up.kind == "fallback"
    assert not original.follow_up.in_doubt
    assert own.reply == follow_up
    assert own.statuses == {}
    assert not ledger.claim_follow_up("wamid.OUT1=", owner="sqs-1", attempt=2, now=NOW)


def test_dynamodb_keeps_statuses_as_numbers_and_no_recipient_beyond_the_reply(
    idempotency_table: str, aws: str
) -> None:
    ledger = DynamoDbLedger(dynamodb(), idempotency_table)
    replied(ledger)
    ledger.record_status(StatusWrite("wamid.OUT1=", "delivered", NOW + 3))
    ledger.record_status(failed("sqs-1"))

    client = boto_client("dynamodb", aws)
    item = client.get_item(TableName=idempotency_table, Key={"id": {"S": "reply#wamid.OUT1="}})
    message = client.get_item(TableName=idempotency_table, Key={"id": {"S": f"msg#{WAMID}"}})

    assert float(item["Item"]["status_delivered"]["N"]) == NOW + 3
    assert item["Item"]["failed_code"] == {"S": "131047"}
    assert int(item["Item"]["expiration"]["N"]) == int(NOW + 1) + REPLY_TTL_SECONDS
    assert "16505551234" not in json.dumps(message["Item"])  # the number: on the reply only


@pytest.mark.parametrize(
    "call",
    [
        begin,
        lambda ledger: ledger.claim(WAMID, 1, now=NOW),
        lambda ledger: ledger.record_sent(sent(), claim_next=None, finished=Finished("replied")),
        lambda ledger: ledger.finish(WAMID, Finished("no_reply"), release_slot=None),
        lambda ledger: ledger.record_failure(
            WAMID, FailedAttempt(1, "2", "transient", NOW, release_slot=0)
        ),
        lambda ledger: ledger.record_status(StatusWrite("wamid.OUT1=", "read", NOW)),
        lambda ledger: ledger.claim_follow_up("wamid.OUT1=", owner="a", attempt=1, now=NOW),
        lambda ledger: ledger.record_follow_up(replace(sent(), original="wamid.OUT0=")),
        lambda ledger: ledger.settle_follow_up(
            "wamid.OUT1=", refused=1, error_code="2", gave_up=False
        ),
    ],
)
def test_a_missing_table_is_store_unavailable(aws: str, call: Callable[[Ledger], Any]) -> None:
    with pytest.raises(StoreUnavailable):
        call(DynamoDbLedger(dynamodb(), f"no-such-table-{time.monotonic_ns()}"))


# --- bursts: one head answers for its members --------------------------------------------------

M2 = "wamid.MEMBER2="
M3 = "wamid.MEMBER3="


def test_a_burst_is_fixed_by_its_heads_first_claim(ledger: Ledger) -> None:
    begin(ledger, claim=None)
    for member in (M2, M3):
        taken = ledger.begin(
            member,
            now=NOW,
            lease_until=NOW + 30,
            claim_slot=None,
            enqueued_at=None,
            burst_head=WAMID,
        )
        assert taken.result is BeginResult.STARTED
    ledger.claim(WAMID, 0, now=NOW + 1, members=[M2, M3])
    ledger.claim(WAMID, 1, now=NOW + 2, members=[M2, M3, "wamid.LATER="])  # never changes it

    again = begin(ledger, now=NOW + 60, claim=None)  # the run died; the lease ran out

    assert again.history.members == (M2, M3)
    assert again.history.claimed == {0, 1}
    member = begin(ledger, now=NOW + 60, claim=None, wamid=M2)
    assert member.history.burst_head == WAMID


def test_without_a_claim_there_is_no_burst_to_keep(ledger: Ledger) -> None:
    begin(ledger, claim=None)

    assert begin(ledger, now=NOW + 60, claim=None).history.members is None


@pytest.mark.parametrize("how", ["record_sent", "finish"])
def test_finishing_the_head_finishes_its_members_in_the_same_write(
    ledger: Ledger, how: str
) -> None:
    begin(ledger, claim=None)
    for member in (M2, M3):
        begin(ledger, claim=None, wamid=member)
    finished = Finished("replied", members=(M2, M3))
    if how == "record_sent":
        ledger.record_sent(sent(), claim_next=None, finished=finished)
    else:
        ledger.finish(WAMID, Finished("no_reply", members=(M2, M3)), release_slot=None)

    for member in (M2, M3):
        late_copy = begin(ledger, now=NOW + 100, wamid=member)
        assert late_copy.result is BeginResult.ALREADY_DONE
        assert late_copy.history.outcome == IN_BURST
        assert late_copy.history.burst_head == WAMID
    assert begin(ledger, now=NOW + 100).result is BeginResult.ALREADY_DONE


def test_a_dead_lettered_burst_takes_its_members_along(ledger: Ledger) -> None:
    begin(ledger, claim=None)
    begin(ledger, claim=None, wamid=M2)
    ledger.record_failure(
        WAMID,
        FailedAttempt(
            attempts=3,
            error_code="handler_error",
            error_class="handler",
            at=NOW + 5,
            release_slot=None,
            dead_lettered=True,
            members=(M2,),
        ),
    )

    stale = begin(ledger, now=NOW + 6, enqueued_at=NOW - 60, wamid=M2)
    redriven = begin(ledger, now=NOW + 3600, enqueued_at=NOW + 3500, wamid=M2)

    assert stale.result is BeginResult.ALREADY_DEAD_LETTERED
    assert stale.history.dead_lettered_at == NOW + 5
    assert redriven.result is BeginResult.STARTED


@pytest.mark.parametrize(
    "call",
    [
        lambda ledger: ledger.claim(WAMID, 0, now=NOW, members=[M2]),
        lambda ledger: ledger.finish(WAMID, Finished("no_reply", members=(M2,)), release_slot=None),
        lambda ledger: ledger.record_sent(
            sent(), claim_next=None, finished=Finished("replied", members=(M2,))
        ),
    ],
)
def test_a_missing_table_is_store_unavailable_for_bursts_too(
    aws: str, call: Callable[[Ledger], Any]
) -> None:
    with pytest.raises(StoreUnavailable):
        call(DynamoDbLedger(dynamodb(), f"no-such-table-{time.monotonic_ns()}"))
