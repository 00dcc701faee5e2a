"""Batching, lanes and retries of the FIFO publisher, against a scripted SQS client."""

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from functions.adapters.sqs_publisher import SqsFifoPublisher, SqsStatusPublisher
from functions.domain.ingest.ports import PublishFailed
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus
from functions.domain.whatsapp.webhook import parse_delivery
from tests.events import builders as b
from tests.fakes import ScriptedSqs, as_sqs

pytestmark = pytest.mark.unit


def records(count: int, senders: int = 1) -> list[QueuedRecord]:
    messages = [b.message(sender=f"4477009{n % senders:05d}") for n in range(count)]
    delivery = parse_delivery(b.webhook(b.change(messages=messages)))
    return [QueuedRecord(received=r, received_at=datetime.now(UTC)) for r in delivery.messages]


def test_batches_of_ten_with_fifo_ids() -> None:
    sqs = ScriptedSqs()
    batch = records(25)

    SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)

    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    assert [e["MessageDeduplicationId"] for e in sqs.accepted] == [r.wamid for r in batch]
    assert {e["MessageGroupId"] for e in sqs.accepted} == {batch[0].group_id}


def test_failed_entries_are_retried_before_the_conversation_moves_on() -> None:
    batch = records(12)
    sqs = ScriptedSqs(fail_times={batch[3].wamid: 2})

    SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)

    assert [len(call) for call in sqs.calls] == [10, 1, 1, 2]
    accepted = [e["MessageDeduplicationId"] for e in sqs.accepted]
    assert sorted(accepted) == sorted(r.wamid for r in batch)
    assert accepted.index(batch[3].wamid) < accepted.index(batch[10].wamid)


def test_entries_that_keep_failing_raise_with_what_was_accepted() -> None:
    batch = records(12)
    sqs = ScriptedSqs(fail_times={batch[0].wamid: 99})
    with pytest.raises(PublishFailed) as caught:
        SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)
    assert caught.value.error_code == "InternalError"
    assert caught.value.accepted == 9  # the rest of the first batch; the second never went out
    assert len(sqs.calls) == 3  # bounded


def test_sender_faults_are_not_retried() -> None:
    batch = records(3)
    sqs = ScriptedSqs(fail_times={batch[1].wamid: 1}, sender_fault=True)
    with pytest.raises(PublishFailed):
        SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)
    assert len(sqs.calls) == 1


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
        SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(records(2))
    assert caught.value.error_code == code
    assert caught.value.accepted == 0


def test_many_conversations_go_out_in_parallel_lanes_each_in_order() -> None:
    batch = records(200, senders=37)
    sqs = ScriptedSqs()

    SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)

    assert len(sqs.accepted) == 200
    for group in {r.group_id for r in batch}:
        expected = [r.wamid for r in batch if r.group_id == group]
        sent = [e["MessageDeduplicationId"] for e in sqs.accepted if e["MessageGroupId"] == group]
        assert sent == expected
    assert all(len(call) <= 10 for call in sqs.calls)


def test_large_bodies_split_batches_under_the_size_limit() -> None:
    big = "x" * 60_000
    messages = [b.message(content={"body": big}) for _ in range(10)]
    delivery = parse_delivery(b.webhook(b.change(messages=messages)))
    batch = [QueuedRecord(received=r, received_at=datetime.now(UTC)) for r in delivery.messages]
    sqs = ScriptedSqs()

    SqsFifoPublisher(as_sqs(sqs), "https://q.fifo").publish(batch)

    for call in sqs.calls:
        assert sum(len(e["MessageBody"].encode()) for e in call) <= 256 * 1024
    assert len(sqs.accepted) == 10


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
