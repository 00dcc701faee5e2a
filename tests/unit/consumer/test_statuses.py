"""Following the statuses of our replies (functions/domain/consumer/statuses.py), through the
consumer's use case with the in-memory ledger: exactly-once effects despite duplicates and any
order, a lifecycle that never goes backwards, late failures acted on with the error policy."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from functions.domain.consumer.consume import Consumer, RecordOutcome, Result, consume_batch
from functions.domain.consumer.ports import GraphApiError
from functions.domain.consumer.relay_events import REPLY_STATUS_CHANGED
from functions.domain.consumer.statuses import (
    MAX_RESENDS,
    FollowUpResult,
    StatusOutcome,
    StatusResult,
    reply_state,
)
from tests.unit.consumer.builders import (
    BUSINESS_NUMBER_ID,
    NOW,
    SENDER,
    MemoryBus,
    MemoryLedger,
    RecordingVisibility,
    ScriptedGraph,
    consumer,
    inbound,
    queued_body,
    record,
    rules,
    status_body,
    wamid_of,
)
from tests.unit.consumer.test_relay_events import conforms

SENT_AT = NOW.timestamp() - 60  # the customer's message, by Meta's clock
TEMPLATE = {"type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}}


def meta(code: int, **kwargs: Any) -> GraphApiError:
    return GraphApiError(str(code), meta_code=code, http_status=400, **kwargs)


class Pipeline:
    """One replied message, then its statuses, through `consume_batch` as the handler runs it."""

    def __init__(self, graph: ScriptedGraph | None = None, **options: Any) -> None:
        self.graph = graph or ScriptedGraph()
        self.ledger: MemoryLedger = options.pop("ledger", None) or MemoryLedger()
        self.visibility = RecordingVisibility()
        self.consumer: Consumer = consumer(
            self.graph, ledger=self.ledger, visibility=self.visibility, **options
        )
        message = inbound(text="hello")
        message["timestamp"] = str(int(SENT_AT))
        self.inbound_body = queued_body(message)
        self.inbound_wamid = wamid_of(self.inbound_body)
        [answered] = consume_batch([record(self.inbound_body)], self.consumer).outcomes
        assert answered.result is Result.REPLIED
        assert answered.reply_wamid is not None
        self.reply_wamid: str = answered.reply_wamid
        self.last: RecordOutcome = answered

    def status(
        self,
        status: str,
        *,
        at: float = SENT_AT + 5,
        error_code: int | None = None,
        message_id: str | None = None,
        receive_count: int = 1,
        reply_wamid: str | None = None,
    ) -> StatusOutcome:
        """Follow one status record; its record outcome is `self.last`."""
        body = status_body(reply_wamid or self.reply_wamid, status, at=at, error_code=error_code)
        item = record(body, message_id=message_id, receive_count=receive_count)
        item = replace(item, group_id=item.message_id)  # a standard queue: no groups
        [self.last] = consume_batch([item], self.consumer).outcomes
        assert self.last.status is not None
        return self.last.status

    def sends(self) -> list[Any]:
        return self.graph.sent()

    def state(self, reply_wamid: str | None = None) -> str:
        return reply_state(self.ledger.reply_items[reply_wamid or self.reply_wamid].statuses)


# --- the lifecycle ----------------------------------------------------------------------------


def test_sent_delivered_read_move_the_reply_forward_each_counted_once() -> None:
    pipeline = Pipeline()

    sent = pipeline.status("sent", at=SENT_AT + 1)
    delivered = pipeline.status("delivered", at=SENT_AT + 3)
    read = pipeline.status("read", at=SENT_AT + 9)

    assert pipeline.last.result is Result.STATUS  # done: nothing to retry
    changes = [(o.change.previous, o.change.current) for o in (sent, delivered, read) if o.change]
    assert changes == [("accepted", "sent"), ("sent", "delivered"), ("delivered", "read")]
    assert [o.first_delivered for o in (sent, delivered, read)] == [False, True, False]
    assert [o.first_read for o in (sent, delivered, read)] == [False, False, True]
    # The customer's message (Meta's clock) to the reply delivered (Meta's clock): 3 s.
    assert delivered.delivery_latency_ms == 3000
    assert delivered.inbound_wamid == pipeline.inbound_wamid
    assert pipeline.ledger.reply_items[pipeline.reply_wamid].statuses == {
        "sent": SENT_AT + 1,
        "delivered": SENT_AT + 3,
        "read": SENT_AT + 9,
    }
    assert pipeline.sends() == pipeline.sends()[:1]  # a status is never answered


def test_read_before_delivered_never_goes_backwards_and_counts_each_once() -> None:
    pipeline = Pipeline()

    read = pipeline.status("read", at=SENT_AT + 9)
    delivered = pipeline.status("delivered", at=SENT_AT + 3)
    sent = pipeline.status("sent", at=SENT_AT + 1)

    assert read.change is not None
    assert read.change.current == "read"
    assert delivered.change is None
    assert sent.change is None
    # Reaching "read" is reaching "delivered": counted then, not again when delivered comes.
    assert (read.first_delivered, read.first_read) == (True, True)
    assert (delivered.first_delivered, delivered.first_read) == (False, False)
    assert pipeline.state() == "read"
    # Every timestamp is kept as Meta gave it, whatever order they came in.
    assert pipeline.ledger.reply_items[pipeline.reply_wamid].statuses["delivered"] == SENT_AT + 3


def test_a_duplicate_status_changes_nothing_and_keeps_the_first_timestamp() -> None:
    pipeline = Pipeline()
    pipeline.status("delivered", at=SENT_AT + 3)

    again = pipeline.status("delivered", at=SENT_AT + 30)

    assert again.result is StatusResult.RECORDED
    assert again.change is None
    assert not again.first_delivered
    assert again.delivery_latency_ms is None
    assert pipeline.ledger.reply_items[pipeline.reply_wamid].statuses == {"delivered": SENT_AT + 3}


def test_played_is_past_read_and_failed_never_hides_a_delivery() -> None:
    assert reply_state({}) == "accepted"
    assert reply_state({"sent": 1, "failed": 2}) == "failed"
    assert reply_state({"failed": 2, "delivered": 1}) == "delivered"
    assert reply_state({"read": 3, "played": 4}) == "played"
    assert reply_state({"deleted": 5}) == "accepted"


def test_a_status_replies_do_not_keep_is_ignored_without_a_write() -> None:
    pipeline = Pipeline()
    calls = len(pipeline.ledger.calls)

    outcome = pipeline.status("deleted")

    assert pipeline.last.result is Result.STATUS
    assert outcome.result is StatusResult.IGNORED
    assert len(pipeline.ledger.calls) == calls


def test_one_status_costs_one_ledger_call() -> None:
    pipeline = Pipeline()
    calls = len(pipeline.ledger.calls)

    pipeline.status("delivered")

    assert pipeline.ledger.calls[calls:] == ["record_status"]


# --- statuses of replies the ledger does not know -------------------------------------------


def test_a_fresh_status_of_an_unknown_reply_is_looked_at_again_shortly_then_dropped() -> None:
    pipeline = Pipeline()

    early = pipeline.status("sent", at=NOW.timestamp(), reply_wamid="wamid.NOT-YET")
    looked_again = pipeline.last
    last = pipeline.status("sent", at=NOW.timestamp(), reply_wamid="wamid.NOT-YET", receive_count=4)
    stale = pipeline.status("sent", at=NOW.timestamp() - 3600, reply_wamid="wamid.OLD")

    assert early.result is StatusResult.UNMATCHED
    assert looked_again.result is Result.RETRY
    assert looked_again.retry_code == "reply_unknown"
    assert looked_again.delay_seconds is not None
    assert 2 <= looked_again.delay_seconds <= 30
    for dropped in (last, stale):
        assert dropped.result is StatusResult.UNMATCHED
        assert dropped.retry is None
    assert pipeline.last.result is Result.STATUS
    assert "wamid.NOT-YET" not in pipeline.ledger.reply_items  # never created by a status


def test_a_store_outage_retries_the_status_without_losing_it() -> None:
    pipeline = Pipeline()
    pipeline.ledger.down.add("record_status")

    pipeline.status("delivered")

    assert pipeline.last.result is Result.RETRY
    assert pipeline.last.retry_code == "store_unavailable"


# --- late failures ----------------------------------------------------------------------------


def test_a_late_131047_sends_the_fallback_template_once_threaded_from_the_same_number() -> None:
    pipeline = Pipeline()

    failed = pipeline.status("failed", error_code=131047)

    assert failed.status is not None
    assert failed.follow_up is FollowUpResult.SENT
    assert failed.follow_up_kind == "fallback"
    assert failed.first_failure
    reply, fallback = pipeline.sends()
    assert fallback["to"] == reply["to"] == SENDER
    assert fallback["type"] == "template"
    assert fallback["template"] == TEMPLATE["template"]
    assert fallback["context"] == {"message_id": pipeline.inbound_wamid}
    assert [c.phone_number_id for c in pipeline.graph.calls if c.kind == "send"] == [
        BUSINESS_NUMBER_ID
    ] * 2
    # Remembered as a reply of its own, pointing at the original: its statuses are followed.
    remembered = pipeline.ledger.replies[failed.follow_up_wamid or ""]
    assert (remembered.kind, remembered.original, remembered.generation) == (
        "fallback",
        pipeline.reply_wamid,
        1,
    )
    assert remembered.inbound_wamid == pipeline.inbound_wamid
    original = pipeline.ledger.reply_items[pipeline.reply_wamid]
    assert original.failed_code == "131047"
    assert original.follow_up.reply_wamid == failed.follow_up_wamid
    assert pipeline.state() == "failed"


def test_a_131047_delivered_twice_or_redelivered_by_sqs_sends_one_template() -> None:
    pipeline = Pipeline()

    first = pipeline.status("failed", error_code=131047, message_id="sqs-1")
    meta_again = pipeline.status("failed", error_code=131047, message_id="sqs-2")
    sqs_again = pipeline.status("failed", error_code=131047, message_id="sqs-1", receive_count=2)

    assert len(pipeline.sends()) == 2  # the reply and ONE template
    assert first.follow_up is FollowUpResult.SENT
    assert meta_again.follow_up is FollowUpResult.TAKEN
    assert sqs_again.follow_up is FollowUpResult.DONE_BEFORE
    assert not meta_again.first_failure
    assert not sqs_again.first_failure


def test_a_131047_before_sent_still_sends_one_template_and_sent_does_not_undo_failed() -> None:
    pipeline = Pipeline()

    failed = pipeline.status("failed", at=SENT_AT + 4, error_code=131047)
    sent = pipeline.status("sent", at=SENT_AT + 2)

    assert failed.follow_up is FollowUpResult.SENT
    assert sent.change is None
    assert pipeline.state() == "failed"
    assert len(pipeline.sends()) == 2


def test_a_late_131047_on_a_template_or_without_a_template_sends_nothing() -> None:
    no_template = Pipeline(reply_rules=rules(fallbackTemplate=None))
    outcome = no_template.status("failed", error_code=131047)
    assert outcome.follow_up is FollowUpResult.NOT_NEEDED
    assert len(no_template.sends()) == 1

    pipeline = Pipeline()
    fallback = pipeline.status("failed", error_code=131047)
    assert fallback.follow_up_wamid
    refused = pipeline.status("failed", error_code=131047, reply_wamid=fallback.follow_up_wamid)
    assert refused.status is not None
    assert refused.follow_up is FollowUpResult.NOT_NEEDED
    assert "template was refused" in refused.follow_up_reason
    assert len(pipeline.sends()) == 2


def test_a_permanent_late_failure_is_recorded_with_its_code_and_sends_nothing() -> None:
    pipeline = Pipeline()

    outcome = pipeline.status("failed", error_code=131026)

    assert outcome.status is not None
    assert outcome.follow_up is FollowUpResult.NOT_NEEDED
    assert (outcome.error_code, outcome.error_class) == ("131026", "recipient")
    item = pipeline.ledger.reply_items[pipeline.reply_wamid]
    assert (item.failed_code, item.failed_class) == ("131026", "recipient")
    assert len(pipeline.sends()) == 1


def test_a_transient_late_failure_resends_what_was_sent_once() -> None:
    pipeline = Pipeline()

    first = pipeline.status("failed", error_code=131000, message_id="sqs-1")
    duplicate = pipeline.status("failed", error_code=131000, message_id="sqs-2")

    reply, resend = pipeline.sends()
    assert resend == reply  # the same body, context included
    assert first.follow_up_kind == "resend"
    assert duplicate.follow_up is FollowUpResult.TAKEN
    remembered = pipeline.ledger.replies[first.follow_up_wamid or ""]
    assert (remembered.kind, remembered.original, remembered.generation) == (
        "resend",
        pipeline.reply_wamid,
        1,
    )


def test_a_refused_resend_backs_off_by_the_status_records_visibility_then_goes_once() -> None:
    graph = ScriptedGraph(sends=[None, meta(131000)])  # the reply, then the resend refused
    pipeline = Pipeline(graph)

    pipeline.status("failed", error_code=131016, message_id="sqs-1")
    refused = pipeline.last
    retried = pipeline.status("failed", error_code=131016, message_id="sqs-1", receive_count=2)
    again = pipeline.status("failed", error_code=131016, message_id="sqs-1", receive_count=3)

    assert refused.result is Result.RETRY
    assert refused.retry_code == "131000"
    assert refused.delay_seconds is not None
    assert refused.delay_seconds >= 3
    assert retried.follow_up is FollowUpResult.SENT
    assert again.follow_up is FollowUpResult.DONE_BEFORE
    assert len([b for b in pipeline.sends() if b["type"] == "text"]) == 3  # reply, refused, resend
    assert pipeline.ledger.reply_items[pipeline.reply_wamid].follow_up.attempts == 2


def test_a_run_that_died_mid_follow_up_never_sends_it_again() -> None:
    pipeline = Pipeline()
    pipeline.ledger.down.add("record_follow_up")
    first = pipeline.status("failed", error_code=131047, message_id="sqs-1")
    pipeline.ledger.down.clear()

    again = pipeline.status("failed", error_code=131047, message_id="sqs-1", receive_count=2)

    assert first.store_write_failed
    assert pipeline.last.result is Result.STATUS  # Meta accepted it: never retried
    assert again.follow_up is FollowUpResult.UNCERTAIN
    assert len(pipeline.sends()) == 2


def test_follow_up_attempts_are_bounded_then_given_up_and_recorded() -> None:
    graph = ScriptedGraph(sends=[None, meta(131000), meta(131000)])
    pipeline = Pipeline(graph, max_attempts=2)

    first = pipeline.status("failed", error_code=131000, message_id="sqs-1")
    first_record = pipeline.last
    last = pipeline.status("failed", error_code=131000, message_id="sqs-1", receive_count=2)

    assert first.follow_up is FollowUpResult.RETRY
    assert first_record.result is Result.RETRY
    assert pipeline.last.result is Result.STATUS
    assert last.follow_up is FollowUpResult.GAVE_UP
    follow_up = pipeline.ledger.reply_items[pipeline.reply_wamid].follow_up
    assert (follow_up.gave_up, follow_up.error_code, follow_up.refused) == (True, "131000", 2)


def test_resends_stop_after_their_chain_reaches_the_limit() -> None:
    pipeline = Pipeline()
    wamid = pipeline.reply_wamid
    for _ in range(MAX_RESENDS):
        outcome = pipeline.status("failed", error_code=131000, reply_wamid=wamid)
        assert outcome.follow_up is FollowUpResult.SENT
        wamid = outcome.follow_up_wamid or ""

    last = pipeline.status("failed", error_code=131000, reply_wamid=wamid)

    assert last.follow_up is FollowUpResult.NOT_NEEDED
    assert len(pipeline.sends()) == 1 + MAX_RESENDS


def test_a_resend_the_window_refuses_becomes_the_template_at_once() -> None:
    graph = ScriptedGraph(sends=[None, meta(131047)])
    pipeline = Pipeline(graph)

    outcome = pipeline.status("failed", error_code=131000)

    assert outcome.follow_up is FollowUpResult.SENT
    assert outcome.follow_up_kind == "fallback"
    assert [b["type"] for b in pipeline.sends()] == ["text", "text", "template"]


def test_a_transient_late_failure_past_the_window_sends_the_template_instead() -> None:
    now = [NOW]
    pipeline = Pipeline(clock=lambda: now[0])
    assert pipeline.sends()[0]["type"] == "text"
    now[0] = NOW + timedelta(days=2)  # the status record waited (an outage, a redrive)

    outcome = pipeline.status("failed", at=SENT_AT + 5, error_code=131000)

    assert outcome.follow_up_kind == "fallback"
    assert pipeline.sends()[-1]["type"] == "template"


# --- the reply.status_changed event -------------------------------------------------------------


def test_each_status_a_reply_first_takes_is_one_reply_status_changed_event() -> None:
    bus = MemoryBus()
    pipeline = Pipeline(bus=bus)

    pipeline.status("read", at=SENT_AT + 9)
    pipeline.status("delivered", at=SENT_AT + 3)
    pipeline.status("delivered", at=SENT_AT + 30)  # Meta's duplicate: no event
    pipeline.status("failed", at=SENT_AT + 40, error_code=131047)

    events = [e for e in bus.published if e.detail_type == REPLY_STATUS_CHANGED]
    for event in events:
        conforms(event)
    details = [dict(e.detail) for e in events]
    assert [d["status"] for d in details] == ["read", "delivered", "failed"]
    assert {d["eventId"] for d in details} == {
        f"{REPLY_STATUS_CHANGED}:{pipeline.reply_wamid}:{s}"
        for s in ("read", "delivered", "failed")
    }
    assert {d["inReplyTo"] for d in details} == {pipeline.inbound_wamid}
    assert details[2]["errors"] == [{"code": 131047, "title": "Re-engagement message"}]
    assert SENDER not in json.dumps(details)  # no phone number without eventDetail=full
