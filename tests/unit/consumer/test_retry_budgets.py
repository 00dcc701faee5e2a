"""A message's own retry budget: attempts it spent, never receives spent waiting; dead letters
that say why; redrives that start afresh; the 24-hour window known before sending."""

from __future__ import annotations

from datetime import timedelta

from functions.common.names import ERROR_CLASS_PAIR_RATE_LIMIT, ERROR_CLASS_TRANSIENT
from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import GraphApiError, MessageStatus
from tests.unit.consumer.builders import (
    NOW,
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


def meta(code: int) -> GraphApiError:
    return GraphApiError(str(code), meta_code=code, http_status=400)


def test_the_first_pair_rate_refusal_backs_off_seconds_however_often_it_was_received() -> None:
    # Received 9 times while held back behind its neighbours: none of those were its attempts.
    graph = ScriptedGraph(sends=[meta(131056)])
    visibility = RecordingVisibility()
    item = record(receive_count=9)

    outcome = consume_batch([item], consumer(graph, visibility=visibility)).outcomes[0]

    assert outcome.result is Result.RETRY
    assert outcome.retry_class == ERROR_CLASS_PAIR_RATE_LIMIT
    assert outcome.attempts == 1
    assert 6 <= visibility.timeouts()[item.message_id] <= 60


def test_backoff_grows_with_the_messages_own_attempts() -> None:
    body = queued_body()
    ledger = MemoryLedger(items={wamid_of(body): _Item(attempts=3)})
    visibility = RecordingVisibility()
    item = record(body)

    outcome = consume_batch(
        [item], consumer(ScriptedGraph(sends=[meta(131000)]), ledger=ledger, visibility=visibility)
    ).outcomes[0]

    assert outcome.attempts == 4
    assert ledger.items[wamid_of(body)].attempts == 4
    # transient: 5 s * 2^3 = 40 s, equal jitter at 0.5 -> 30 s
    assert visibility.timeouts()[item.message_id] == 30


def test_held_back_records_spend_no_attempts() -> None:
    graph = ScriptedGraph(sends=[meta(131056)])
    ledger = MemoryLedger()
    head, behind = record(group="a"), record(group="a", receive_count=5)

    result = consume_batch([head, behind], consumer(graph, ledger=ledger))

    assert [o.result for o in result.outcomes] == [Result.RETRY, Result.HELD_BACK]
    assert wamid_of(behind.body) not in ledger.items


def test_when_its_own_attempts_run_out_the_consumer_dead_letters_it_with_the_reason() -> None:
    body = queued_body()
    ledger = MemoryLedger(items={wamid_of(body): _Item(attempts=7)})
    dead_letters = MemoryDeadLetters()
    item = record(body, group="conv-1", receive_count=40)

    result = consume_batch(
        [item],
        consumer(
            ScriptedGraph(sends=[meta(131000)]),
            ledger=ledger,
            dead_letters=dead_letters,
            max_attempts=8,
        ),
    )

    outcome = result.outcomes[0]
    assert outcome.result is Result.DEAD_LETTERED
    assert result.batch_item_failures() == []  # off the inbound queue: it is on the DLQ now
    [(letter_body, group, letter)] = dead_letters.letters
    assert (letter_body, group) == (body, "conv-1")
    assert (letter.reason, letter.error_code, letter.error_class, letter.attempts) == (
        "attempts_exhausted",
        "131000",
        ERROR_CLASS_TRANSIENT,
        8,
    )
    assert letter.last_attempt_at == NOW.timestamp()
    assert letter.wamid == wamid_of(body)
    stored = ledger.items[wamid_of(body)]
    assert stored.status is MessageStatus.DEAD_LETTERED
    assert stored.claims == set()


def test_a_dead_letter_the_dlq_refuses_stays_on_the_queue() -> None:
    body = queued_body()
    ledger = MemoryLedger(items={wamid_of(body): _Item(attempts=7)})

    result = consume_batch(
        [record(body)],
        consumer(
            ScriptedGraph(sends=[meta(131000)]),
            ledger=ledger,
            dead_letters=MemoryDeadLetters(refuse=True),
            max_attempts=8,
        ),
    )

    assert result.outcomes[0].result is Result.RETRY
    assert ledger.items[wamid_of(body)].status is MessageStatus.ACTIVE


def test_a_redriven_dead_letter_starts_a_fresh_budget_and_is_answered() -> None:
    body = queued_body()
    dead_at = NOW.timestamp() - 3600
    ledger = MemoryLedger(
        items={
            wamid_of(body): _Item(
                status=MessageStatus.DEAD_LETTERED, attempts=8, dead_lettered_at=dead_at
            )
        }
    )
    redriven = record(body, enqueued_at=dead_at + 60)  # SQS re-enqueues a redriven message
    graph = ScriptedGraph()

    outcome = consume_batch([redriven], consumer(graph, ledger=ledger)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert len(graph.sent()) == 1
    assert ledger.items[wamid_of(body)].status is MessageStatus.DONE


def test_a_copy_enqueued_before_it_was_dead_lettered_is_dropped() -> None:
    # The run that dead-lettered it died before the record was deleted: that copy comes back.
    body = queued_body()
    dead_at = NOW.timestamp() - 10
    ledger = MemoryLedger(
        items={wamid_of(body): _Item(status=MessageStatus.DEAD_LETTERED, dead_lettered_at=dead_at)}
    )
    stale = record(body, enqueued_at=dead_at - 600)
    graph = ScriptedGraph()

    result = consume_batch([stale], consumer(graph, ledger=ledger))

    assert result.outcomes[0].result is Result.STALE_COPY
    assert result.batch_item_failures() == []
    assert graph.sent() == []


def test_a_message_older_than_the_24_hour_window_gets_the_template_directly() -> None:
    two_days_old = inbound(text="hello")
    two_days_old["timestamp"] = str(int((NOW - timedelta(days=2)).timestamp()))
    graph = ScriptedGraph()

    outcome = consume_batch([record(queued_body(two_days_old))], consumer(graph)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert outcome.decision == "window-closed"
    [sent] = graph.sent()
    assert sent["type"] == "template"
    assert sent["context"] == {"message_id": two_days_old["id"]}


def test_the_ledger_remembers_each_reply_for_its_statuses() -> None:
    ledger = MemoryLedger()
    graph = ScriptedGraph()
    message = inbound(text="hello")
    message["timestamp"] = str(int(NOW.timestamp()) - 3)
    body = queued_body(message)

    outcome = consume_batch([record(body)], consumer(graph, ledger=ledger)).outcomes[0]

    assert outcome.reply_wamid is not None
    reply = ledger.replies[outcome.reply_wamid]
    assert reply.inbound_wamid == wamid_of(body)
    assert reply.recipient == {"to": graph.sent()[0]["to"]}
    assert reply.message == {"type": "text", "text": graph.sent()[0]["text"]}
    assert reply.decision == "rule:greeting"
    assert reply.inbound_at == NOW.timestamp() - 3
    # an answered message costs two writes
    assert ledger.calls == ["begin", "record_sent"]
