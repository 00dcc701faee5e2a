"""The exact ChangeMessageVisibilityBatch request, pinned with botocore's Stubber."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from functions.adapters.sqs_visibility import SqsVisibility
from functions.domain.consumer.ports import VisibilityChange

pytestmark = pytest.mark.unit

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbound.fifo"
ARN = "arn:aws:sqs:eu-west-1:123456789012:inbound.fifo"


def test_one_batch_call_with_the_twelve_hour_limit_kept() -> None:
    sqs = boto3.client("sqs", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9")
    changes = [
        VisibilityChange("m1", "rh1", ARN, 16),
        VisibilityChange("m2", "rh2", ARN, 43_200),
        VisibilityChange("m3", "rh3", ARN, 0),
    ]
    with Stubber(sqs) as stub:
        stub.add_response(
            "change_message_visibility_batch",
            {
                "Successful": [{"Id": "0"}, {"Id": "1"}],
                "Failed": [{"Id": "2", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}],
            },
            {
                "QueueUrl": QUEUE_URL,
                "Entries": [
                    {"Id": "0", "ReceiptHandle": "rh1", "VisibilityTimeout": 16},
                    {"Id": "1", "ReceiptHandle": "rh2", "VisibilityTimeout": 42_900},
                    {"Id": "2", "ReceiptHandle": "rh3", "VisibilityTimeout": 0},
                ],
            },
        )

        failed = SqsVisibility(sqs, QUEUE_URL).change(changes)

        stub.assert_no_pending_responses()
    assert failed == ["m3"]


def test_each_record_goes_back_to_the_queue_it_came_from() -> None:
    status_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/statuses"
    sqs = boto3.client("sqs", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9")
    changes = [
        VisibilityChange("m1", "rh1", ARN, 16),
        VisibilityChange("s1", "rh2", "arn:aws:sqs:eu-west-1:123456789012:statuses", 4),
    ]
    with Stubber(sqs) as stub:
        for url, entry in (
            (QUEUE_URL, {"Id": "0", "ReceiptHandle": "rh1", "VisibilityTimeout": 16}),
            (status_url, {"Id": "0", "ReceiptHandle": "rh2", "VisibilityTimeout": 4}),
        ):
            stub.add_response(
                "change_message_visibility_batch",
                {"Successful": [{"Id": "0"}], "Failed": []},
                {"QueueUrl": url, "Entries": [entry]},
            )

        failed = SqsVisibility(sqs, QUEUE_URL, status_url).change(changes)

        stub.assert_no_pending_responses()
    assert failed == []
