"""One answer per burst, with in-memory fakes and a stopped clock: the first message of a
conversation waits for the rest of its window, then the burst is answered once, every message of
it done "as part of" it in the ledger, exactly once across crashes, duplicates and retries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import IN_BURST, GraphApiError, MessageStatus
from tests.unit.consumer.builders import (
    NOW,
    MemoryBus,
    MemoryDeadLetters,
    MemoryLedger,
    RecordingVisibility,
    ScriptedGraph,
    _Item,
    consumer,
    inbound,
    queued_body,
    record,
    wamid_of,
)

pytestmark = pytest.mark.unit

WINDOW = 10.0
FIRST_AT = NOW - timedelta(seconds=12)  # the window of a message received then closed at NOW-2


def message(text: str, at: datetime, message_type: str = "text") -> str:
    raw = inbound(message_type, text=text) if message_type == "text" else inbound(message_type)
    return queued_body(raw, received_at=at)


def burst(*offsets: float, first: datetime = FIRST_AT) -> list[Any]:
    """Records of one conversation received at `first` + each offset (seconds)."""
    return [
        record(message(f"part {n}", first + timedelta(seconds=offset)), group="conversation")
        for n, offset in enumerate(offsets)
    ]


def test_the_first_message_waits_for_the_rest_of_its_window_and_nothing_else_happens() -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    visibility = RecordingVisibility()
    first, second = burst(0, 1, first=NOW - timedelta(seconds=3.5))

    result = consume_batch(
        [first, second],
        consumer(graph, ledger=ledger, visibility=visibility, burst_window_seconds=WINDOW),
    )

    waiting, behind = result.outcomes
    assert waiting.result is Result.WAITING
    assert waiting.delay_seconds == 7  # 6.5 s of its window left, rounded up: never longer
    assert waiting.retry_code is None  # not a failure: nothing is counted as a retry
    assert behind.result is Result.HELD_BACK
    assert behind.retry_code is None
    assert visibility.timeouts() == {first.message_id: 7, second.message_id: 0}
    assert result.batch_item_failures() == [
        {"itemIdentifier": first.message_id},
        {"itemIdentifier": second.message_id},
    ]
    assert graph.calls == []
    assert ledger.calls == []  # holding costs no write


def test_once_the_window_closed_the_burst_gets_one_answer_and_every_message_is_done() -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    records = burst(0, 4, 9)

    result = consume_batch(records, consumer(graph, ledger=ledger, burst_window_seconds=WINDOW))

    head, *members = result.outcomes
    wamids = [wamid_of(r.body) for r in records]
    assert head.result is Result.REPLIED
    assert head.burst_size == 3
    assert [m.result for m in members] == [Result.IN_BURST, Result.IN_BURST]
    assert {m.burst_of for m in members} == {wamids[0]}
    assert result.batch_item_failures() == []
    # One read receipt, on the latest (Meta marks the earlier ones read with it) ...
    assert [b["message_id"] for b in graph.read()] == [wamids[2]]
    # ... and one reply, threaded on the message it answers.
    (sent,) = graph.sent()
    assert sent["context"] == {"message_id": wamids[2]}
    for wamid in wamids[1:]:
        item = ledger.items[wamid]
        assert (item.status, item.outcome, item.burst_head) == (
            MessageStatus.DONE,
            IN_BURST,
            wamids[0],
        )
    assert ledger.items[wamids[0]].status is MessageStatus.DONE
    (reply,) = ledger.replies.values()
    assert reply.burst == tuple(wamids)
    assert reply.in_reply_to == wamids[2]


def test_a_message_after_the_window_starts_the_next_burst() -> None:
    graph = ScriptedGraph()
    records = burst(0, 5, 11)  # the third came after the first's window closed

    result = consume_batch(records, consumer(graph, burst_window_seconds=WINDOW))

    assert [o.result for o in result.outcomes] == [
        Result.REPLIED,
        Result.IN_BURST,
        Result.WAITING,  # received at NOW-1: its own window is still open
    ]
    assert result.outcomes[2].delay_seconds == 9
    assert len(graph.sent()) == 1


def test_the_handler_gets_the_burst_oldest_first_ending_with_the_message() -> None:
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> object:
        events.append(event)
        said = " + ".join(m["text"]["body"] for m in event["burst"])
        return {"type": "text", "text": {"body": said}}

    graph = ScriptedGraph()
    records = burst(0, 2, 3)

    consume_batch(records, consumer(graph, reply_handler=handler, burst_window_seconds=WINDOW))

    (event,) = events
    assert [m["id"] for m in event["burst"]] == [wamid_of(r.body) for r in records]
    assert event["message"] == event["burst"][-1]
    assert graph.sent()[0]["text"]["body"] == "part 0 + part 1 + part 2"


def test_the_rules_answer_the_latest_message_they_have_a_reply_for() -> None:
    graph = ScriptedGraph()
    question = record(message("hello", FIRST_AT), group="c")
    thumbs_up = record(message("", FIRST_AT + timedelta(seconds=2), "reaction"), group="c")

    result = consume_batch([question, thumbs_up], consumer(graph, burst_window_seconds=WINDOW))

    (sent,) = graph.sent()
    assert sent["text"]["body"] == "Hello Sheena!"
    assert sent["context"] == {"message_id": wamid_of(question.body)}
    assert [b["message_id"] for b in graph.read()] == [wamid_of(thumbs_up.body)]
    assert result.outcomes[1].result is Result.IN_BURST


def test_a_duplicate_among_the_burst_is_left_out() -> None:
    graph = ScriptedGraph()
    records = burst(0, 1, 2)
    done = _Item(status=MessageStatus.DONE, outcome="replied")
    ledger = MemoryLedger(items={wamid_of(records[1].body): done})
    answered: list[list[str]] = []

    def handler(event: dict[str, Any]) -> object:
        answered.append([m["id"] for m in event["burst"]])
        return None

    result = consume_batch(
        records,
        consumer(graph, ledger=ledger, reply_handler=handler, burst_window_seconds=WINDOW),
    )

    assert [o.result for o in result.outcomes] == [
        Result.NO_REPLY,
        Result.DUPLICATE,
        Result.IN_BURST,
    ]
    assert answered == [[wamid_of(records[0].body), wamid_of(records[2].body)]]


def test_a_failed_burst_is_retried_as_a_whole_in_order() -> None:
    visibility = RecordingVisibility()
    refusing = ScriptedGraph(sends=[GraphApiError("131000", meta_code=131000)])
    ledger = MemoryLedger()
    records = burst(0, 1, 2)

    first = consume_batch(
        records,
        consumer(refusing, ledger=ledger, visibility=visibility, burst_window_seconds=WINDOW),
    )
    second = consume_batch(records, consumer(ledger=ledger, burst_window_seconds=WINDOW))

    assert [o.result for o in first.outcomes] == [Result.RETRY, Result.HELD_BACK, Result.HELD_BACK]
    timeouts = visibility.timeouts()
    assert timeouts[records[0].message_id] >= 3
    assert timeouts[records[1].message_id] == timeouts[records[2].message_id] == 0
    assert [o.result for o in second.outcomes] == [
        Result.REPLIED,
        Result.IN_BURST,
        Result.IN_BURST,
    ]


def test_a_crash_mid_answer_keeps_the_burst_and_never_answers_a_message_twice() -> None:
    """The run died after the first of two replies; when the burst comes back a later message
    of the conversation is in the batch too. The burst is the one the first claim fixed: the
    second reply goes out for it, the later message is the next burst."""
    ledger = MemoryLedger()
    records = burst(0, 1)
    answers = [{"type": "text", "text": {"body": b}} for b in ("one", "two")]
    dying = ScriptedGraph()

    def die_on_second_send() -> None:
        if len(dying.sent()) == 2:
            raise SystemExit("the execution environment died")

    dying.on_send = die_on_second_send
    with pytest.raises(SystemExit):
        consume_batch(
            records,
            consumer(
                dying, ledger=ledger, reply_handler=lambda e: answers, burst_window_seconds=WINDOW
            ),
        )
    head = wamid_of(records[0].body)
    for item in ledger.items.values():
        item.lease_until = 0  # the dead run's leases run out with its invocation
    later = record(
        message("and another thing", FIRST_AT + timedelta(seconds=1.5)), group="conversation"
    )
    seen: list[list[str]] = []

    def handler(event: dict[str, Any]) -> object:
        seen.append([m["id"] for m in event["burst"]])
        return answers

    graph = ScriptedGraph()
    result = consume_batch(
        [*records, later],
        consumer(graph, ledger=ledger, reply_handler=handler, burst_window_seconds=WINDOW),
    )

    assert ledger.items[head].members == (wamid_of(records[1].body),)
    assert seen[0] == [head, wamid_of(records[1].body)]  # the fixed burst, without `later`
    assert [o.result for o in result.outcomes[:2]] == [Result.UNCERTAIN, Result.IN_BURST]
    assert result.outcomes[0].uncertain_slots == 1  # "two" may have gone: never again
    # `later` is a burst of its own (its window closed too), answered in full.
    assert result.outcomes[2].result is Result.REPLIED
    assert seen[1] == [wamid_of(later.body)]
    assert [b["text"]["body"] for b in graph.sent()] == ["one", "two"]
    assert graph.sent()[0]["context"] == {"message_id": wamid_of(later.body)}


def test_a_fixed_burst_missing_a_message_in_this_batch_waits_for_it() -> None:
    ledger = MemoryLedger()
    records = burst(0, 1)
    head, member = (wamid_of(r.body) for r in records)
    ledger.items[head] = _Item(claims={0}, members=(member,))  # an earlier attempt died
    graph = ScriptedGraph()

    result = consume_batch(
        [records[0]], consumer(graph, ledger=ledger, burst_window_seconds=WINDOW)
    )

    outcome = result.outcomes[0]
    assert outcome.result is Result.RETRY
    assert outcome.retry_code == "burst_incomplete"
    assert outcome.attempts is None  # not one of its own attempts
    assert graph.calls == []


def test_a_burst_that_exhausts_its_attempts_goes_to_the_dlq_together() -> None:
    dead_letters = MemoryDeadLetters()
    ledger = MemoryLedger()
    bus = MemoryBus()
    records = burst(0, 1, 2)

    result = consume_batch(
        records,
        consumer(
            ScriptedGraph(sends=[GraphApiError("131000", meta_code=131000)]),
            ledger=ledger,
            dead_letters=dead_letters,
            bus=bus,
            max_attempts=1,
            burst_window_seconds=WINDOW,
        ),
    )

    assert [o.result for o in result.outcomes] == [Result.DEAD_LETTERED] * 3
    assert result.batch_item_failures() == []
    letters = [(body, letter.wamid, letter.error_code) for body, _, letter in dead_letters.letters]
    assert letters == [(r.body, wamid_of(r.body), "131000") for r in records]
    for r in records[1:]:
        assert ledger.items[wamid_of(r.body)].status is MessageStatus.DEAD_LETTERED
    assert len(bus.of("message.dead_lettered")) == 3


def test_each_message_of_a_burst_is_announced_and_the_reply_names_them_all() -> None:
    bus = MemoryBus()
    records = burst(0, 1)

    consume_batch(records, consumer(bus=bus, burst_window_seconds=WINDOW))

    assert sorted(e.detail_type for e in bus.published) == [
        "message.received",
        "message.received",
        "reply.sent",
    ]
    assert bus.of("reply.sent")[0]["answers"] == [wamid_of(r.body) for r in records]
    assert bus.calls == 1


def test_without_a_window_every_message_is_answered_on_its_own() -> None:
    graph = ScriptedGraph()

    result = consume_batch(burst(0, 1, 2), consumer(graph))

    assert [o.result for o in result.outcomes] == [Result.REPLIED] * 3
    assert len(graph.sent()) == 3
