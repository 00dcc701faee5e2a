"""The FIFO publisher against a scripted SQS that judges each entry on its own: batching, order
within a conversation when only some entries fail, retries, and the invocation's deadline."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.adapters.sqs_publisher import (
    MAX_ATTEMPTS,
    OUT_OF_TIME,
    SqsFifoPublisher,
    SqsStatusPublisher,
)
from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus
from functions.domain.whatsapp.webhook import parse_delivery
from tests.events import builders as b
from tests.fakes import ScriptedSqs, as_sqs

pytestmark = pytest.mark.unit


def records(count: int, senders: int = 1) -> list[QueuedRecord]:
    """`count` messages round robin over `senders` users: user n's messages in sending order."""
    messages = [b.message(sender=f"4477009{n % senders:05d}") for n in range(count)]
    delivery = parse_delivery(b.webhook(b.change(messages=messages)))
    return [QueuedRecord(received=r, received_at=datetime.now(UTC)) for r in delivery.messages]


def publisher(sqs: ScriptedSqs, **options: float) -> SqsFifoPublisher:
    return SqsFifoPublisher(as_sqs(sqs), "https://q.fifo", **options)


def in_order(batch: list[QueuedRecord], sqs: ScriptedSqs) -> bool:
    """Every conversation sits on the queue in sending order (a prefix of it, when not all of
    it was accepted)."""
    for group in {r.group_id for r in batch}:
        sent = [r.wamid for r in batch if r.group_id == group]
        queued = sqs.queued_order(group)
        if queued != sent[: len(queued)]:
            return False
    return True


def test_one_message_per_conversation_goes_in_batches_of_ten_with_fifo_ids() -> None:
    sqs = ScriptedSqs()
    batch = records(25, senders=25)

    publisher(sqs).publish(batch)

    assert sorted(len(call) for call in sqs.calls) == [5, 10, 10]
    assert sorted(e["MessageDeduplicationId"] for e in sqs.accepted) == sorted(
        r.wamid for r in batch
    )
    assert {e["MessageGroupId"] for e in sqs.accepted} == {r.group_id for r in batch}


def test_the_issue_case_a_refused_first_record_still_comes_first() -> None:
    # SQS would take #1 and #2 of the conversation and refuse #0: #0 sent again would land
    # after them. So #1 is not sent until #0 is in.
    batch = records(3)
    sqs = ScriptedSqs(fail_times={batch[0].wamid: 1})

    publisher(sqs).publish(batch)

    assert sqs.queued_order(batch[0].group_id) == [r.wamid for r in batch]
    assert [[e["MessageDeduplicationId"] for e in call] for call in sqs.calls] == [
        [batch[0].wamid],
        [batch[0].wamid],
        [batch[1].wamid],
        [batch[2].wamid],
    ]


def test_a_refusal_holds_back_only_its_own_conversation() -> None:
    batch = records(6, senders=3)  # users a, b, c, a, b, c
    a0, b0 = batch[0], batch[1]
    sqs = ScriptedSqs(fail_times={a0.wamid: 2})

    publisher(sqs).publish(batch)

    assert in_order(batch, sqs)
    first, second, third, fourth = (
        [e["MessageDeduplicationId"] for e in call] for call in sqs.calls
    )
    assert first == [r.wamid for r in batch[:3]]  # every conversation's oldest record
    assert second == [a0.wamid, batch[4].wamid, batch[5].wamid]  # a0 again; b and c move on
    assert (third, fourth) == ([a0.wamid], [batch[3].wamid])  # a's next only after a0
    assert sqs.queued_order(b0.group_id) == [b0.wamid, batch[4].wamid]
    assert len(sqs.accepted) == 6


def test_entries_that_keep_failing_stop_their_conversation_and_raise() -> None:
    batch = records(6, senders=2)  # users a, b, a, b, a, b
    sqs = ScriptedSqs(fail_times={batch[2].wamid: 99})

    with pytest.raises(PublishFailed) as caught:
        publisher(sqs).publish(batch)

    assert caught.value.error_code == "InternalError"
    assert caught.value.accepted == 4  # a's first, and all of b's
    sent = [e["MessageDeduplicationId"] for call in sqs.calls for e in call]
    assert sent.count(batch[2].wamid) == MAX_ATTEMPTS  # bounded
    assert batch[4].wamid not in sent  # never sent ahead of the record that would not go
    assert in_order(batch, sqs)


def test_sender_faults_are_not_retried() -> None:
    batch = records(3)
    sqs = ScriptedSqs(fail_times={batch[1].wamid: 1}, sender_fault=True)

    with pytest.raises(PublishFailed) as caught:
        publisher(sqs).publish(batch)

    assert caught.value.accepted == 1
    assert [e["MessageDeduplicationId"] for call in sqs.calls for e in call] == [
        batch[0].wamid,
        batch[1].wamid,
    ]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessageBatch"
            ),
            "AWS.SimpleQueueService.NonExistentQueue",
        ),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "EndpointConnectionError"),
    ],
)
def test_whole_call_failures_raise_publish_failed(error: Exception, code: str) -> None:
    sqs = ScriptedSqs(raise_error=error)

    with pytest.raises(PublishFailed) as caught:
        publisher(sqs).publish(records(2))

    assert caught.value.error_code == code
    assert caught.value.accepted == 0
    assert len(sqs.calls) == MAX_ATTEMPTS


def test_no_call_starts_that_could_outlast_the_invocation() -> None:
    # The SQS client's longest call is 3 s; each (hanging) call uses it all.
    clock = {"left": 7.5}

    def hangs() -> None:
        clock["left"] -= 3.0
        raise ReadTimeoutError(endpoint_url="https://sqs")

    sqs = ScriptedSqs(on_call=hangs)

    with pytest.raises(PublishFailed) as caught:
        publisher(sqs, longest_call_seconds=3.0).publish(
            records(2), remaining_seconds=lambda: clock["left"]
        )

    assert len(sqs.calls) == 0  # `on_call` raised before recording: count the clock instead
    assert clock["left"] == pytest.approx(1.5)  # two calls started (7.5 and 4.5 s left)
    assert caught.value.error_code == "ReadTimeoutError"  # what went wrong, not just the clock


def test_without_time_for_one_call_nothing_is_sent() -> None:
    sqs = ScriptedSqs()

    with pytest.raises(PublishFailed) as caught:
        publisher(sqs, longest_call_seconds=3.0).publish(records(2), remaining_seconds=lambda: 2.9)

    assert caught.value.error_code == OUT_OF_TIME
    assert sqs.calls == []


def test_many_conversations_go_out_in_parallel_each_in_order() -> None:
    batch = records(200, senders=37)
    sqs = ScriptedSqs()

    publisher(sqs).publish(batch)

    assert len(sqs.accepted) == 200
    assert in_order(batch, sqs)
    assert all(len(call) <= 10 for call in sqs.calls)
    # 37 conversations of 5 or 6 messages: five rounds of 37 heads (four batches each) and one
    # of 15 (two): 22 calls, where batching without regard to order would take 20
    assert len(sqs.calls) == 22


def test_large_bodies_split_batches_under_the_size_limit() -> None:
    big = "x" * 60_000
    messages = [b.message(content={"body": big}, sender=f"4477009{n:05d}") for n in range(10)]
    delivery = parse_delivery(b.webhook(b.change(messages=messages)))
    batch = [QueuedRecord(received=r, received_at=datetime.now(UTC)) for r in delivery.messages]
    sqs = ScriptedSqs()

    publisher(sqs).publish(batch)

    for call in sqs.calls:
        assert sum(len(e["MessageBody"].encode()) for e in call) <= 256 * 1024
    assert len(sqs.accepted) == 10


@settings(derandomize=True, database=None, deadline=None, max_examples=150)
@given(
    senders=st.integers(1, 12),
    count=st.integers(1, 40),
    failures=st.dictionaries(st.integers(0, 39), st.integers(1, 4), max_size=8),
    sender_faults=st.booleans(),
)
def test_whatever_sqs_refuses_every_conversation_stays_in_order(
    senders: int, count: int, failures: dict[int, int], sender_faults: bool
) -> None:
    batch = records(count, senders)
    fail_times = {batch[i].wamid: n for i, n in failures.items() if i < count}
    sqs = ScriptedSqs(fail_times=dict(fail_times), sender_fault=sender_faults)

    try:
        publisher(sqs).publish(batch)
        complete = True
    except PublishFailed as failed:
        complete = False
        accepted = failed.accepted

    # Never two records of one conversation in one call, never a record before its elders
    for call in sqs.calls:
        groups = [e["MessageGroupId"] for e in call]
        assert len(groups) == len(set(groups)) <= 10
    assert in_order(batch, sqs)
    ids = [e["MessageDeduplicationId"] for e in sqs.accepted]
    assert len(ids) == len(set(ids))  # each record queued once
    if complete:
        assert len(ids) == count
    else:
        assert accepted == len(ids) < count
    if not fail_times:
        # All accepted at once: one call per ten heads per round, nothing more
        sizes = [sum(1 for r in batch if r.group_id == g) for g in {r.group_id for r in batch}]
        rounds = (sum(1 for size in sizes if size > r) for r in range(max(sizes)))
        assert len(sqs.calls) == sum(math.ceil(heads / 10) for heads in rounds)


def statuses(count: int) -> list[QueuedStatus]:
    delivery = parse_delivery(b.webhook(b.change(statuses=[b.status() for _ in range(count)])))
    return [QueuedStatus.from_update(s, datetime.now(UTC)) for s in delivery.statuses]


def test_statuses_go_to_a_standard_queue_in_batches_without_fifo_ids() -> None:
    sqs = ScriptedSqs()
    batch = statuses(25)

    SqsStatusPublisher(as_sqs(sqs), "https://statuses").publish(batch)

    assert sorted(len(call) for call in sqs.calls) == [5, 10, 10]
    assert sorted(e["MessageBody"] for e in sqs.accepted) == sorted(s.to_json() for s in batch)
    assert not any("MessageGroupId" in e or "MessageDeduplicationId" in e for e in sqs.accepted)


def test_a_status_the_queue_keeps_refusing_raises() -> None:
    batch = statuses(3)
    sqs = ScriptedSqs(fail_times={batch[1].to_json(): 99})
    with pytest.raises(PublishFailed, match="2 of 3 statuses"):
        SqsStatusPublisher(as_sqs(sqs), "https://statuses").publish(batch)
