"""The SQS event is read into plain records."""

from __future__ import annotations

import pytest

from functions.consumer.events import inbox_records
from tests.unit.consumer.builders import status_body

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


def test_statuses_of_one_reply_share_a_group_so_one_batch_follows_them_in_turn() -> None:
    def status(message_id: str, reply: str) -> dict[str, object]:
        body = status_body(reply, "failed", error_code=131047)
        return {"messageId": message_id, "body": body, "attributes": {}}

    first, duplicate, other, garbage = inbox_records(
        {
            "Records": [
                status("m1", "wamid.A"),
                status("m2", "wamid.A"),
                status("m3", "wamid.B"),
                {"messageId": "m4", "body": "not json", "attributes": {}},
            ]
        }
    )

    assert first.group_id == duplicate.group_id == "reply:wamid.A"
    assert other.group_id == "reply:wamid.B"
    assert garbage.group_id == "m4"
