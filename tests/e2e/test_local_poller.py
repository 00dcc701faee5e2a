"""The local SQS event source against moto's server, with stand-in consumers: batches, partial
failures, visibility, receive counts, FIFO group locking and redrive to the DLQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from infra.constants import DEFAULT_MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT_SECONDS
from local_pipeline.config import LOCAL_REGION
from local_pipeline.emulator import Queues, aws_client, create_queues, create_resources
from local_pipeline.poller import BatchResult, InvalidBatchResponse, SqsEventSource, failed_ids

pytestmark = pytest.mark.integration

Invocation = tuple[dict[str, Any], Any]


def send(sqs: Any, queue_url: str, wamid: str, group: str = "g1") -> None:
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(
            {"wamid": wamid, "contact": {"waId": "16505551234"}, "message": {"type": "text"}}
        ),
        MessageGroupId=group,
        MessageDeduplicationId=wamid,
    )


class StandIn:
    """A consumer that fails the wamids in `fail` (making them visible again at once)."""

    def __init__(self, sqs: Any, queue_url: str, fail: set[str] | None = None) -> None:
        self.sqs, self.queue_url = sqs, queue_url
        self.fail = fail or set()
        self.invocations: list[Invocation] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.invocations.append((event, context))
        failures = []
        for record in event["Records"]:
            if json.loads(record["body"])["wamid"] in self.fail:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=0,
                )
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}


@pytest.fixture(scope="module")
def sqs(moto_endpoint: str) -> Any:
    return aws_client("sqs", moto_endpoint)


@pytest.fixture
def resources(moto_endpoint: str, sqs: Any) -> Queues:
    suffix = uuid.uuid4().hex[:10]
    return create_queues(moto_endpoint, max_receive_count=2, name_suffix=suffix, sqs=sqs)


def event_source(
    sqs: Any,
    resources: Queues,
    handler: Callable[[dict[str, Any], Any], Any],
    results: list[BatchResult] | None = None,
) -> SqsEventSource:
    source = SqsEventSource(
        sqs,
        queue_url=resources.queue_url,
        handler=handler,
        region=LOCAL_REGION,
        on_batch=results.append if results is not None else None,
    )
    source.watch_visibility(sqs)
    return source


def visible_count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_resources_match_the_stack_settings(moto_endpoint: str, sqs: Any) -> None:
    resources = create_resources(
        moto_endpoint, app_secret="s", verify_token="v", access_token="a", name_suffix="stack"
    )
    attributes = sqs.get_queue_attributes(QueueUrl=resources.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["FifoQueue"] == "true"
    assert int(attributes["VisibilityTimeout"]) == VISIBILITY_TIMEOUT_SECONDS
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == DEFAULT_MAX_RECEIVE_COUNT
    assert redrive["deadLetterTargetArn"].endswith(resources.dlq_url.rsplit("/", 1)[-1])
    table = aws_client("dynamodb", moto_endpoint).describe_table(TableName=resources.table_name)
    assert table["Table"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    secret = aws_client("secretsmanager", moto_endpoint).get_secret_value(
        SecretId=resources.secret_id
    )
    assert json.loads(secret["SecretString"]) == {
        "appSecret": "s",
        "verifyToken": "v",
        "accessToken": "a",
    }


def test_event_has_lambda_sqs_shape_and_success_deletes(sqs: Any, resources: Queues) -> None:
    # Given two messages in two conversations
    send(sqs, resources.queue_url, "wamid.a", group="g1")
    send(sqs, resources.queue_url, "wamid.b", group="g2")
    consumer = StandIn(sqs, resources.queue_url)
    results: list[BatchResult] = []
    # When the event source polls once
    result = event_source(sqs, resources, consumer, results).poll_once()
    # Then the consumer got one Lambda SQS event with both records
    assert result is not None
    assert results == [result]
    event, context = consumer.invocations[0]
    assert len(event["Records"]) == 2
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == resources.queue_arn
    assert record["awsRegion"] == LOCAL_REGION
    assert record["md5OfBody"]
    for key in ("ApproximateReceiveCount", "SentTimestamp", "MessageGroupId", "SequenceNumber"):
        assert key in record["attributes"], key
    assert record["attributes"]["MessageDeduplicationId"] in {"wamid.a", "wamid.b"}
    assert 0 < context.get_remaining_time_in_millis() <= 30_000
    # And both were deleted; the console sees masked senders only
    assert visible_count(sqs, resources.queue_url) == 0
    assert {outcome.sender for outcome in result.records} == {"*******1234"}
    assert all(outcome.succeeded for outcome in result.records)


def test_failed_records_stay_and_come_back_with_a_higher_receive_count(
    sqs: Any, resources: Queues
) -> None:
    # Given a batch where one record fails and sets its visibility to 0
    send(sqs, resources.queue_url, "wamid.ok", group="g1")
    send(sqs, resources.queue_url, "wamid.bad", group="g2")
    consumer = StandIn(sqs, resources.queue_url, fail={"wamid.bad"})
    source = event_source(sqs, resources, consumer)
    # When polled
    first = source.poll_once()
    # Then only the failed one is left, with the visibility the consumer set noted
    assert first is not None
    [failed] = first.failed
    assert failed.wamid == "wamid.bad"
    assert failed.visibility_timeout == 0
    assert failed.receive_count == 1
    # And it comes back on the next poll with its receive count raised
    second = source.poll_once()
    assert second is not None
    assert [(r.wamid, r.receive_count) for r in second.records] == [("wamid.bad", 2)]


def test_redrive_moves_a_record_to_the_dlq_after_max_receives(sqs: Any, resources: Queues) -> None:
    # Given a record that always fails, and maxReceiveCount 2
    send(sqs, resources.queue_url, "wamid.poison")
    source = event_source(sqs, resources, StandIn(sqs, resources.queue_url, fail={"wamid.poison"}))
    assert source.max_receive_count == 2
    # When it fails twice
    counts = []
    for _ in range(2):
        result = source.poll_once()
        assert result is not None
        counts.append(result.records[0].receive_count)
    # Then the next receive moves it to the DLQ instead of handing it out
    assert counts == [1, 2]
    assert source.poll_once() is None
    dead = sqs.receive_message(QueueUrl=resources.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["wamid"] for m in dead] == ["wamid.poison"]


def test_a_handler_that_raises_fails_the_whole_batch(sqs: Any, resources: Queues) -> None:
    send(sqs, resources.queue_url, "wamid.1", group="g1")
    send(sqs, resources.queue_url, "wamid.2", group="g2")

    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("consumer bug")

    result = event_source(sqs, resources, broken).poll_once()
    assert result is not None
    assert result.error == "RuntimeError: consumer bug"
    assert len(result.failed) == 2
    assert visible_count(sqs, resources.queue_url) == 2


def test_an_unknown_item_identifier_fails_the_whole_batch(sqs: Any, resources: Queues) -> None:
    send(sqs, resources.queue_url, "wamid.1")

    def wrong(event: dict[str, Any], context: Any) -> Any:
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}

    result = event_source(sqs, resources, wrong).poll_once()
    assert result is not None
    assert result.error is not None
    assert "InvalidBatchResponse" in result.error
    assert visible_count(sqs, resources.queue_url) == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, {"m1"}),
    ],
)
def test_failed_ids_reads_partial_batch_responses(response: Any, expected: set[str]) -> None:
    assert failed_ids(response, {"m1", "m2"}) == expected


@pytest.mark.parametrize(
    "response",
    ["oops", {"batchItemFailures": "m1"}, {"batchItemFailures": [{"itemIdentifier": ""}]}],
)
def test_failed_ids_refuses_malformed_responses(response: Any) -> None:
    with pytest.raises(InvalidBatchResponse):
        failed_ids(response, {"m1"})


def test_fifo_group_waits_while_a_record_of_it_is_in_flight(sqs: Any, resources: Queues) -> None:
    # Given two messages of one conversation, the first failing with a long visibility timeout
    send(sqs, resources.queue_url, "wamid.first", group="conversation")

    class SlowRetry(StandIn):
        def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
            self.invocations.append((event, context))
            for record in event["Records"]:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=60,
                )
            return {
                "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]
            }

    source = event_source(sqs, resources, SlowRetry(sqs, resources.queue_url))
    first = source.poll_once()
    assert first is not None
    assert first.failed[0].visibility_timeout == 60
    send(sqs, resources.queue_url, "wamid.second", group="conversation")
    # Then the second is not handed out while the first waits for its retry
    assert source.poll_once() is None
