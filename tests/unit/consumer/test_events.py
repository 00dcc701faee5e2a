"""The SQS event is read into plain records."""

from __future__ import annotations

import pytest

from functions.consumer.events import inbox_records

pytestmark = pytest.mark.unit


def test_records_carry_group_receive_count_and_receipt() -> None:
    event = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "rh1",
                "body": "{}",
                "attributes": {"ApproximateReceiveCount": "3", "MessageGroupId": "g"},
                "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q.fifo",
            },
            {"messageId": "m2", "body": None, "attributes": {"ApproximateReceiveCount": "x"}},
            "garbage",
        ]
    }

    first, second = inbox_records(event)

    assert (first.message_id, first.group_id, first.receive_count) == ("m1", "g", 3)
    assert (first.receipt_handle, first.event_source_arn) == (
        "rh1",
        "arn:aws:sqs:eu-west-1:1:q.fifo",
    )
    assert (second.group_id, second.receive_count, second.body) == ("m2", 1, "")


def test_an_event_without_records_is_an_empty_batch() -> None:
    assert inbox_records({}) == []
