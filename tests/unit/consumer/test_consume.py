"""The use case with in-memory fakes: order of calls, error actions, never twice, FIFO groups."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from functions.common.names import (
    ERROR_CLASS_AUTH_CONFIG,
    ERROR_CLASS_QUALITY_POLICY,
    ERROR_CLASS_RATE_LIMIT,
)
from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import GraphApiError, MessageStatus
from tests.unit.consumer.builders import (
    BUSINESS_NUMBER_ID,
    NOW,
    SENDER,
    MemoryDeadLetters,
    MemoryLedger,
    RecordingVisibility,
    ScriptedGraph,
    _Item,
    consumer,
    inbound,
    queued_body,
    record,
    rules,
    wamid_of,
)

pytestmark = pytest.mark.unit


def meta(code: int, retry_after_seconds: float | None = None) -> GraphApiError:
    return GraphApiError(
        str(code), meta_code=code, http_status=400, retry_after_seconds=retry_after_seconds
    )


def test_marks_read_with_typing_then_replies_in_thread_from_the_receiving_number() -> None:
    graph = ScriptedGraph()
    item = record(queued_body(inbound(text="hello"), phone_number_id="555000111"))

    result = consume_batch([item], consumer(graph))

    outcome = result.outcomes[0]
    wamid = wamid_of(item.body)
    assert [c.kind for c in graph.calls] == ["read", "send"]
    assert {c.phone_number_id for c in graph.calls} == {"555000111"}
    assert graph.read() == [
        {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
            "typing_indicator": {"type": "text"},
        }
    ]
    sent = graph.sent()[0]
    assert sent["to"] == SENDER
    assert sent["context"] == {"message_id": wamid}
    assert sent["text"]["body"] == "Hello Sheena!"
    assert outcome.result is Result.REPLIED
    assert outcome.read_receipt_sent
    assert outcome.latency_ms == pytest.approx(250.0)
    assert result.batch_item_failures() == []


def test_with_the_rules_only_the_send_stands_between_the_claim_and_the_reply() -> None:
    # A run that dies between the ledger's claim and the send leaves the reply uncertain, never
    # sent again: so the read receipt goes first, and the claim right before the send.
    order: list[str] = []
    ledger = MemoryLedger()
    graph = ScriptedGraph()
    real_begin = ledger.begin

    def begin(*args: object, **kwargs: Any) -> Any:
        order.append("begin+claim")
        return real_begin(*args, **kwargs)  # type: ignore[arg-type]

    ledger.begin = begin  # type: ignore[method-assign]
    graph.on_send = lambda: order.append("send")
    graph.on_read = lambda: order.append("read")

    outcome = consume_batch([record()], consumer(graph, ledger=ledger)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert order == ["read", "begin+claim", "send"]


def test_a_failed_read_receipt_is_recorded_but_the_reply_goes_out() -> None:
    graph = ScriptedGraph(reads=[meta(131000)])

    outcome = consume_batch([record()], consumer(graph)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert not outcome.read_receipt_sent
    assert [(f.step, f.code) for f in outcome.failures] == [("read", "131000")]


def test_no_reply_still_marks_read_without_typing() -> None:
    graph = ScriptedGraph()

    outcome = consume_batch([record(queued_body(inbound("reaction")))], consumer(graph)).outcomes[0]

    assert outcome.result is Result.NO_REPLY
    assert "typing_indicator" not in graph.read()[0]
    assert graph.sent() == []


def test_permanent_error_is_recorded_and_not_retried() -> None:
    graph = ScriptedGraph(sends=[meta(131026)])
    ledger = MemoryLedger()
    item = record()

    result = consume_batch([item], consumer(graph, ledger=ledger))

    outcome = result.outcomes[0]
    assert outcome.result is Result.PERMANENT
    assert outcome.permanent_code == "131026"
    assert result.batch_item_failures() == []
    stored = ledger.items[wamid_of(item.body)]
    assert (stored.status, stored.outcome, stored.error_code) == (
        MessageStatus.DONE,
        "permanent_failure",
        "131026",
    )
    assert stored.claims == set()


@pytest.mark.parametrize(
    ("code", "error_class", "min_delay", "max_delay"),
    [
        (130429, ERROR_CLASS_RATE_LIMIT, 5, 900),
        (190, ERROR_CLASS_AUTH_CONFIG, 300, 3600),
        (131048, ERROR_CLASS_QUALITY_POLICY, 600, 7200),
    ],
)
def test_retry_and_keep_raise_visibility_and_report_failure(
    code: int, error_class: str, min_delay: int, max_delay: int
) -> None:
    graph = ScriptedGraph(sends=[meta(code)])
    visibility = RecordingVisibility()
    ledger = MemoryLedger()
    item = record(receive_count=2)

    result = consume_batch([item], consumer(graph, visibility=visibility, ledger=ledger))

    outcome = result.outcomes[0]
    assert outcome.result is Result.RETRY
    assert outcome.retry_class == error_class
    assert outcome.attempts == 1
    assert result.batch_item_failures() == [{"itemIdentifier": item.message_id}]
    assert min_delay <= visibility.timeouts()[item.message_id] <= max_delay
    assert visibility.changes[0].receipt_handle == item.receipt_handle
    stored = ledger.items[wamid_of(item.body)]
    assert stored.claims == set()  # the retry may send
    assert (stored.status, stored.attempts, stored.lease_until) == (MessageStatus.ACTIVE, 1, 0)


def test_retry_after_and_pair_rate_limit_floor() -> None:
    graph = ScriptedGraph(sends=[meta(130429, retry_after_seconds=77), meta(131056)])
    visibility = RecordingVisibility()
    first, second = record(group="a"), record(group="b")

    consume_batch([first, second], consumer(graph, visibility=visibility, max_workers=1))

    assert visibility.timeouts()[first.message_id] == 77
    assert visibility.timeouts()[second.message_id] >= 6


def test_window_closed_sends_the_fallback_template_in_thread() -> None:
    graph = ScriptedGraph(sends=[meta(131047)])
    item = record()

    outcome = consume_batch([item], consumer(graph)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert outcome.template_fallback
    template = graph.sent()[1]
    assert template["type"] == "template"
    assert template["template"]["name"] == "hello_world"
    assert template["context"] == {"message_id": wamid_of(item.body)}


def test_window_closed_without_fallback_is_permanent() -> None:
    graph = ScriptedGraph(sends=[meta(131047)])
    no_fallback = rules(fallbackTemplate=None)

    outcome = consume_batch([record()], consumer(graph, reply_rules=no_fallback)).outcomes[0]

    assert outcome.result is Result.PERMANENT
    assert len(graph.sent()) == 1


@pytest.mark.parametrize(
    ("fallback_error", "expected"), [(meta(132001), Result.PERMANENT), (meta(4), Result.RETRY)]
)
def test_a_failed_fallback_is_classified_by_its_own_error(
    fallback_error: GraphApiError, expected: Result
) -> None:
    graph = ScriptedGraph(sends=[meta(131047), fallback_error])

    outcome = consume_batch([record()], consumer(graph)).outcomes[0]

    assert outcome.result is expected
    assert [f.step for f in outcome.failures] == ["send", "fallback"]
    assert not outcome.template_fallback


def test_an_answered_wamid_is_a_duplicate_and_sends_nothing() -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    body = queued_body()

    consume_batch([record(body)], consumer(graph, ledger=ledger))
    again = consume_batch([record(body)], consumer(graph, ledger=ledger))

    assert again.outcomes[0].result is Result.DUPLICATE
    assert again.batch_item_failures() == []
    assert len(graph.sent()) == 1


def test_a_wamid_in_progress_elsewhere_is_retried_shortly_not_sent() -> None:
    graph = ScriptedGraph()
    body = queued_body()
    held = _Item(lease_until=NOW.timestamp() + 20)  # another execution's live lease
    ledger = MemoryLedger(items={wamid_of(body): held})
    visibility = RecordingVisibility()

    result = consume_batch([record(body)], consumer(graph, ledger=ledger, visibility=visibility))

    assert result.outcomes[0].result is Result.RETRY
    assert result.outcomes[0].retry_code == "in_progress"
    assert visibility.changes[0].timeout_seconds <= 120
    assert graph.sent() == []  # read again (before the ledger), never sent


def test_a_claimed_reply_is_not_sent_again_after_a_crash() -> None:
    graph = ScriptedGraph()
    body = queued_body()
    # What a process that died mid-send leaves: slot 0 claimed, never recorded, lease over.
    ledger = MemoryLedger(items={wamid_of(body): _Item(claims={0})})

    result = consume_batch([record(body)], consumer(graph, ledger=ledger))

    assert result.outcomes[0].result is Result.UNCERTAIN
    assert result.batch_item_failures() == []
    assert graph.sent() == []
    assert ledger.items[wamid_of(body)].status is MessageStatus.DONE


def test_store_trouble_is_a_retry_and_a_failed_release_is_reported() -> None:
    untouched = ScriptedGraph()
    refused = ScriptedGraph(sends=[meta(2)])
    accepted = ScriptedGraph()

    down = consume_batch([record()], consumer(untouched, ledger=MemoryLedger(down={"begin"})))
    stuck_ledger = MemoryLedger(down={"record_failure"})
    stuck = consume_batch([record()], consumer(refused, ledger=stuck_ledger))
    unrecorded = consume_batch(
        [record()], consumer(accepted, ledger=MemoryLedger(down={"record_sent"}))
    )

    assert down.outcomes[0].retry_code == "store_unavailable"
    assert down.outcomes[0].attempts is None  # not one of the message's own attempts
    assert untouched.sent() == []  # read, then nothing until the store is back
    assert stuck.outcomes[0].result is Result.RETRY
    assert stuck.outcomes[0].store_write_failed
    # Meta accepted the reply but the ledger could not record it: done, never retried.
    assert unrecorded.outcomes[0].result is Result.REPLIED
    assert unrecorded.outcomes[0].store_write_failed
    assert unrecorded.batch_item_failures() == []


def test_failure_holds_back_its_conversation_only() -> None:
    graph = ScriptedGraph(sends=[meta(130429)])
    visibility = RecordingVisibility()
    a1, a2, a3 = (record(group="a") for _ in range(3))
    b1, b2 = record(group="b"), record(group="b")

    result = consume_batch(
        [a1, b1, a2, b2, a3], consumer(graph, visibility=visibility, max_workers=1)
    )

    results = {o.record.message_id: o.result for o in result.outcomes}
    assert results == {
        a1.message_id: Result.RETRY,
        a2.message_id: Result.HELD_BACK,
        a3.message_id: Result.HELD_BACK,
        b1.message_id: Result.REPLIED,
        b2.message_id: Result.REPLIED,
    }
    assert [f["itemIdentifier"] for f in result.batch_item_failures()] == [
        a1.message_id,
        a2.message_id,
        a3.message_id,
    ]
    held = [o for o in result.outcomes if o.result is Result.HELD_BACK]
    assert {o.retry_code for o in held} == {"held_back"}
    timeouts = visibility.timeouts()
    assert timeouts[a1.message_id] >= 5
    assert timeouts[a2.message_id] == timeouts[a3.message_id] == 0
    sent_to = [body["context"]["message_id"] for body in graph.sent()]
    assert sent_to[-2:] == [wamid_of(b1.body), wamid_of(b2.body)]


def test_records_of_one_conversation_are_answered_in_order() -> None:
    graph = ScriptedGraph()
    items = [record(group="a") for _ in range(5)]

    consume_batch(items, consumer(graph))

    assert [b["context"]["message_id"] for b in graph.sent()] == [wamid_of(i.body) for i in items]


def test_an_unreadable_record_is_dead_lettered_at_once_with_its_reason() -> None:
    graph = ScriptedGraph()
    dead_letters = MemoryDeadLetters()
    poison = record("not json", group="p")
    wrong_version = record('{"schemaVersion": 99}', group="q")
    fine = record(group="f")

    result = consume_batch(
        [poison, wrong_version, fine], consumer(graph, dead_letters=dead_letters)
    )

    assert [o.result for o in result.outcomes] == [
        Result.DEAD_LETTERED,
        Result.DEAD_LETTERED,
        Result.REPLIED,
    ]
    assert "not JSON" in result.outcomes[0].reason
    assert "schemaVersion" in result.outcomes[1].reason
    assert result.batch_item_failures() == []
    assert [(body, group, letter.reason) for body, group, letter in dead_letters.letters] == [
        ("not json", "p", "unreadable"),
        ('{"schemaVersion": 99}', "q", "unreadable"),
    ]


def test_an_unreadable_record_the_dlq_refuses_is_retried_and_holds_nobody_back() -> None:
    graph = ScriptedGraph()
    visibility = RecordingVisibility()
    poison = record("not json", group="same")
    after = record(group="same")

    result = consume_batch(
        [poison, after],
        consumer(graph, visibility=visibility, dead_letters=MemoryDeadLetters(refuse=True)),
    )

    assert [o.result for o in result.outcomes] == [Result.RETRY, Result.REPLIED]
    assert result.batch_item_failures() == [{"itemIdentifier": poison.message_id}]
    assert 5 <= visibility.timeouts()[poison.message_id] <= 60


def test_a_bug_fails_its_record_only_and_keeps_the_exception() -> None:
    graph = ScriptedGraph()
    broken = record(group="x")
    fine = record(group="y")

    def explode() -> None:
        if len(graph.sent()) == 1:
            raise RuntimeError("bug")

    graph.on_send = explode

    result = consume_batch([broken, fine], consumer(graph, max_workers=1))

    assert result.outcomes[0].result is Result.INTERNAL_ERROR
    assert isinstance(result.outcomes[0].error, RuntimeError)
    assert result.outcomes[1].result is Result.REPLIED


def test_later_records_of_a_conversation_wait_when_time_runs_short() -> None:
    graph = ScriptedGraph()
    items = [record(group="a"), record(group="a"), record(group="b")]

    result = consume_batch(items, consumer(graph, remaining_seconds=lambda: 4.0))

    # Each conversation's first record runs; a later one needs min_seconds_to_start (5 s here).
    assert [o.result for o in result.outcomes] == [
        Result.REPLIED,
        Result.HELD_BACK,
        Result.REPLIED,
    ]
    assert result.outcomes[1].retry_code == "time_budget"
    assert result.batch_item_failures() == [{"itemIdentifier": items[1].message_id}]


def test_the_budget_grows_with_the_slowest_record_so_far() -> None:
    graph = ScriptedGraph()
    moments = iter(NOW + timedelta(seconds=s) for s in range(0, 1000, 4))  # each record: 4 s
    slow_clock = consumer(graph, remaining_seconds=lambda: 7.0)
    slow = replace(slow_clock, clock=lambda: next(moments))
    items = [record(group="a"), record(group="a")]

    result = consume_batch(items, slow)

    # 7 s left is more than min_seconds_to_start (5 s) but less than twice the first record.
    assert [o.result for o in result.outcomes] == [Result.REPLIED, Result.HELD_BACK]


def test_conversations_are_processed_concurrently() -> None:
    conversations = 4
    barrier = threading.Barrier(conversations, timeout=5)
    graph = ScriptedGraph(on_send=barrier.wait)  # only passes if all four send at once
    items = [record(group=f"g{i}") for i in range(conversations)]

    result = consume_batch(items, consumer(graph))

    assert [o.result for o in result.outcomes] == [Result.REPLIED] * conversations
    assert {c.phone_number_id for c in graph.calls} == {BUSINESS_NUMBER_ID}


def test_an_empty_batch_is_fine() -> None:
    assert consume_batch([], consumer()).batch_item_failures() == []
