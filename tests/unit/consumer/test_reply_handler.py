"""The use case with a reply handler, against in-memory fakes: what the handler gets, what it
may return, and the guarantees around it (each reply at most once, failures retried with the
message's own attempts, its time bounded, the business's own numbers never reaching it)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from functions.domain.consumer.consume import Result, consume_batch
from functions.domain.consumer.ports import GraphApiError, MessageStatus
from tests.unit.consumer.builders import (
    BUSINESS_DISPLAY_NUMBER,
    BUSINESS_NUMBER_ID,
    NOW,
    SENDER,
    MemoryDeadLetters,
    MemoryLedger,
    RecordingVisibility,
    ScriptedGraph,
    consumer,
    inbound,
    queued_body,
    record,
    rules,
    wamid_of,
)

pytestmark = pytest.mark.unit


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": body}}


@dataclass
class Handler:
    """A reply handler that records each event and answers from a script (a value, or an
    exception to raise); the last answer repeats."""

    answers: list[object] = field(default_factory=lambda: [text("hi")])
    events: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> object:
        self.events.append(event)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_the_handler_gets_metas_objects_and_its_reply_goes_out_threaded() -> None:
    graph = ScriptedGraph()
    handler = Handler()
    raw = inbound(text="hello")
    item = record(queued_body(raw))

    outcome = consume_batch([item], consumer(graph, reply_handler=handler)).outcomes[0]

    (event,) = handler.events
    assert event == {
        "message": raw,
        "contact": {"profile": {"name": "Sheena"}, "wa_id": SENDER},
        "metadata": {
            "display_phone_number": BUSINESS_DISPLAY_NUMBER,
            "phone_number_id": BUSINESS_NUMBER_ID,
        },
        "burst": [raw],
    }
    assert outcome.result is Result.REPLIED
    assert outcome.decision == "handler"
    assert outcome.handler_latency_ms is not None
    assert [c.kind for c in graph.calls] == ["read", "send"]
    assert graph.read()[0]["typing_indicator"] == {"type": "text"}
    sent = graph.sent()[0]
    assert sent == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": SENDER,
        "type": "text",
        "text": {"body": "hi"},
        "context": {"message_id": wamid_of(item.body)},
    }


def test_metas_contact_object_is_passed_as_the_record_kept_it() -> None:
    handler = Handler()
    body = queued_body(inbound())
    kept = {"profile": {"name": "Sheena"}, "wa_id": SENDER, "user_id": "US.1", "new_field": 1}
    body = body[:-1] + f', "metaContact": {json.dumps(kept)}}}'

    consume_batch([record(body)], consumer(reply_handler=handler))

    assert handler.events[0]["contact"] == kept


def test_a_list_is_sent_in_order_only_the_first_threaded() -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    image = {"type": "image", "image": {"link": "https://example.com/a.png"}}
    handler = Handler(answers=[[text("one"), image, text("three")]])
    item = record()

    outcome = consume_batch([item], consumer(graph, ledger=ledger, reply_handler=handler)).outcomes[
        0
    ]

    sent = graph.sent()
    assert [b["type"] for b in sent] == ["text", "image", "text"]
    assert sent[0]["context"] == {"message_id": wamid_of(item.body)}
    assert "context" not in sent[1]
    assert "context" not in sent[2]
    assert outcome.replies_sent == 3
    # The ledger: begin (no claim: the plan was not known), then a claim before the first send
    # and one write per send that records it and claims the next.
    assert ledger.calls == ["begin", "claim", "record_sent", "record_sent", "record_sent"]
    assert ledger.items[wamid_of(item.body)].sent.keys() == {0, 1, 2}


def test_none_or_an_empty_list_is_no_reply_but_the_message_is_read() -> None:
    answers: tuple[object, ...] = (None, [])
    for answer in answers:
        graph = ScriptedGraph()
        outcome = consume_batch(
            [record()], consumer(graph, reply_handler=Handler([answer]))
        ).outcomes[0]

        assert outcome.result is Result.NO_REPLY
        assert graph.sent() == []
        assert "typing_indicator" not in graph.read()[0]


def test_reactions_and_system_messages_reach_the_handler_which_decides() -> None:
    graph = ScriptedGraph()
    handler = Handler(answers=[{"type": "reaction", "reaction": {"emoji": "\u2764"}}])
    reaction = record(queued_body(inbound("reaction")), group="a")
    system = record(queued_body(inbound("system")), group="b")

    result = consume_batch(
        [reaction, system], consumer(graph, reply_handler=handler, max_workers=1)
    )

    assert [e["message"]["type"] for e in handler.events] == ["reaction", "system"]
    assert [o.result for o in result.outcomes] == [Result.REPLIED, Result.REPLIED]
    sent = graph.sent()
    # A reaction reacts to the message answered, and carries no context.
    assert sent[0]["reaction"] == {"emoji": "\u2764", "message_id": wamid_of(reaction.body)}
    assert "context" not in sent[0]
    # No "typing…" for a reaction.
    assert "typing_indicator" not in graph.read()[0]


def test_the_business_own_numbers_never_reach_the_handler() -> None:
    graph = ScriptedGraph()
    handler = Handler()
    from_ourselves = record(queued_body(inbound(sender=BUSINESS_DISPLAY_NUMBER)), group="a")
    from_our_other_bot = record(queued_body(inbound(sender="15550009999")), group="b")
    listed = rules(ownNumbers=["+1 555 000 9999"])

    result = consume_batch(
        [from_ourselves, from_our_other_bot],
        consumer(graph, reply_handler=handler, reply_rules=listed),
    )

    assert handler.events == []
    assert [o.decision for o in result.outcomes] == ["own-number", "own-number"]
    assert [o.result for o in result.outcomes] == [Result.NO_REPLY, Result.NO_REPLY]
    assert graph.sent() == []


def test_a_duplicate_does_not_run_the_handler_again() -> None:
    handler = Handler()
    ledger = MemoryLedger()
    body = queued_body()

    consume_batch([record(body)], consumer(ledger=ledger, reply_handler=handler))
    again = consume_batch([record(body)], consumer(ledger=ledger, reply_handler=handler))

    assert again.outcomes[0].result is Result.DUPLICATE
    assert len(handler.events) == 1


def test_an_exception_is_a_retry_that_spends_an_attempt_and_keeps_the_traceback() -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    visibility = RecordingVisibility()
    item = record()
    crash = KeyError("order_id")

    result = consume_batch(
        [item],
        consumer(graph, ledger=ledger, visibility=visibility, reply_handler=Handler([crash])),
    )

    outcome = result.outcomes[0]
    assert outcome.result is Result.RETRY
    assert outcome.retry_code == "handler_error"
    assert outcome.retry_class == "handler"
    assert outcome.error is crash
    assert "KeyError" in outcome.reason
    assert outcome.attempts == 1
    assert outcome.handler_latency_ms is not None
    assert result.batch_item_failures() == [{"itemIdentifier": item.message_id}]
    assert 5 <= visibility.timeouts()[item.message_id] <= 20
    assert graph.calls == []  # not even read: it will be tried again
    stored = ledger.items[wamid_of(item.body)]
    assert (stored.status, stored.attempts, stored.claims) == (MessageStatus.ACTIVE, 1, set())


def test_a_handler_that_keeps_failing_is_dead_lettered_after_its_own_attempts() -> None:
    ledger = MemoryLedger()
    dead_letters = MemoryDeadLetters()
    handler = Handler([RuntimeError("database down")])
    body = queued_body()
    results = [
        consume_batch(
            [record(body)],
            consumer(
                ledger=ledger, dead_letters=dead_letters, reply_handler=handler, max_attempts=3
            ),
        ).outcomes[0]
        for _ in range(3)
    ]

    assert [o.result for o in results] == [Result.RETRY, Result.RETRY, Result.DEAD_LETTERED]
    (letter,) = [entry[2] for entry in dead_letters.letters]
    assert (letter.reason, letter.error_code, letter.error_class, letter.attempts) == (
        "attempts_exhausted",
        "handler_error",
        "handler",
        3,
    )
    assert ledger.items[wamid_of(body)].status is MessageStatus.DEAD_LETTERED


def test_a_slow_handler_is_cut_off_at_the_remaining_time_and_retried() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(event: dict[str, Any]) -> object:
        started.set()
        release.wait(30)
        return text("too late")

    graph = ScriptedGraph()
    ledger = MemoryLedger()
    # 5.05 s left, 5 s kept for the sends: the handler gets 0.05 s.
    outcome = consume_batch(
        [record()],
        consumer(graph, ledger=ledger, reply_handler=slow, remaining_seconds=lambda: 5.05),
    ).outcomes[0]
    release.set()

    assert started.is_set()
    assert outcome.result is Result.RETRY
    assert outcome.retry_code == "handler_timeout"
    assert "Python cannot stop it" in outcome.reason
    assert outcome.attempts == 1
    assert graph.calls == []


def test_no_time_left_for_the_handler_is_a_retry_without_an_attempt() -> None:
    handler = Handler()

    outcome = consume_batch(
        [record()], consumer(reply_handler=handler, remaining_seconds=lambda: 4.0)
    ).outcomes[0]

    assert outcome.result is Result.RETRY
    assert outcome.retry_code == "time_budget"
    assert outcome.attempts == 0
    assert handler.events == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("hello", "returned str"),
        ({"type": "text", "text": {"body": "x" * 5000}}, "text.body exceeds 4096 chars"),
        ([text("ok"), {"type": "text", "text": {"body": "x"}, "to": "1"}], "reply 2 of 2"),
    ],
)
def test_an_invalid_reply_is_a_permanent_failure_with_a_clear_reason(
    answer: object, reason: str
) -> None:
    graph = ScriptedGraph()
    ledger = MemoryLedger()
    item = record()

    result = consume_batch([item], consumer(graph, ledger=ledger, reply_handler=Handler([answer])))

    outcome = result.outcomes[0]
    assert outcome.result is Result.PERMANENT
    assert outcome.permanent_code == "invalid_outbound"
    assert reason in outcome.reason
    assert result.batch_item_failures() == []
    assert graph.sent() == []  # nothing of the list goes out
    assert len(graph.read()) == 1
    stored = ledger.items[wamid_of(item.body)]
    assert (stored.status, stored.error_code) == (MessageStatus.DONE, "invalid_outbound")


def test_a_crash_between_two_sends_never_sends_a_reply_twice() -> None:
    """The run dies after the first send was recorded, while sending the second: the next
    attempt (the handler runs again, answering the same) sends only the third; the second may
    have gone out, so it is not sent again (uncertain)."""
    ledger = MemoryLedger()
    plan = [text("one"), text("two"), text("three")]
    body = queued_body()
    dying = ScriptedGraph()

    def die_on_second_send() -> None:
        if len(dying.sent()) == 2:
            raise SystemExit("the execution environment died")

    dying.on_send = die_on_second_send
    with pytest.raises(SystemExit):
        consume_batch([record(body)], consumer(dying, ledger=ledger, reply_handler=Handler([plan])))
    ledger.items[wamid_of(body)].lease_until = 0  # the dead run's lease runs out

    graph = ScriptedGraph()
    handler = Handler([plan])
    outcome = consume_batch(
        [record(body)], consumer(graph, ledger=ledger, reply_handler=handler)
    ).outcomes[0]

    assert len(handler.events) == 1  # the handler may run more than once for a message
    assert [b["text"]["body"] for b in dying.sent()] == ["one", "two"]
    assert [b["text"]["body"] for b in graph.sent()] == ["three"]
    assert outcome.result is Result.REPLIED
    assert outcome.uncertain_slots == 1
    assert ledger.items[wamid_of(body)].status is MessageStatus.DONE


def test_replies_are_slots_a_handler_answering_differently_cannot_double() -> None:
    ledger = MemoryLedger()
    body = queued_body()
    first = ScriptedGraph(sends=[None, _retryable()])
    consume_batch(
        [record(body)],
        consumer(first, ledger=ledger, reply_handler=Handler([[text("a"), text("b")]])),
    )
    # Meta refused slot 1 (retryable): slot 0 stays sent. The second run answers three things.
    second = ScriptedGraph()
    consume_batch(
        [record(body)],
        consumer(second, ledger=ledger, reply_handler=Handler([[text("x"), text("y"), text("z")]])),
    )

    assert [b["text"]["body"] for b in first.sent()] == ["a", "b"]
    assert [b["text"]["body"] for b in second.sent()] == ["y", "z"]


def test_an_old_message_gets_the_fallback_template_instead_of_free_form_replies() -> None:
    graph = ScriptedGraph()
    handler = Handler([[text("one"), text("two")]])
    raw = inbound()
    raw["timestamp"] = str(int((NOW - timedelta(hours=30)).timestamp()))

    outcome = consume_batch(
        [record(queued_body(raw))], consumer(graph, reply_handler=handler)
    ).outcomes[0]

    assert outcome.decision == "window-closed"
    assert [b["type"] for b in graph.sent()] == ["template"]
    assert graph.sent()[0]["template"]["name"] == "hello_world"


def test_the_handler_gets_a_copy_it_may_change() -> None:
    def vandal(event: dict[str, Any]) -> object:
        event["message"].clear()
        event["burst"].clear()
        return text("ok")

    graph = ScriptedGraph()
    item = record()

    outcome = consume_batch([item], consumer(graph, reply_handler=vandal)).outcomes[0]

    assert outcome.result is Result.REPLIED
    assert graph.sent()[0]["context"] == {"message_id": wamid_of(item.body)}
    assert graph.sent()[0]["to"] == SENDER


def _retryable() -> GraphApiError:
    return GraphApiError("131000", meta_code=131000, http_status=500)
