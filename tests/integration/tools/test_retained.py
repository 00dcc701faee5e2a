"""`make destroy` first lists what the deletion keeps (tools/retained.py), read from the deployed
template's DeletionPolicy, against moto's CloudFormation."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from tests.conftest import TEST_REGION, boto_client
from tools import retained

pytestmark = pytest.mark.integration


def deploy(aws: str, resources: dict[str, object]) -> str:
    name = f"relay-{uuid.uuid4().hex[:8]}"
    boto_client("cloudformation", aws).create_stack(
        StackName=name, TemplateBody=json.dumps({"Resources": resources})
    )
    return name


def test_retained_resources_are_listed_with_how_to_remove_them(aws: str) -> None:
    # Given a stack with a retained queue and table, and a topic that goes with the stack
    suffix = uuid.uuid4().hex[:8]
    stack = deploy(
        aws,
        {
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {"QueueName": f"inbound-{suffix}"},
            },
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",
                "Properties": {
                    "TableName": f"idempotency-{suffix}",
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                },
            },
            "Topic": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Delete"},
        },
    )
    out = io.StringIO()

    # When `make destroy` asks what will be kept
    code = retained.main(["--stack-name", stack, "--region", TEST_REGION], out=out)

    # Then the queue and the table are named, each with its clean-up command; the topic is not
    found = retained.retained_resources(boto_client("cloudformation", aws), stack)
    assert code == 0
    assert [(r.logical_id, r.type) for r in found] == [
        ("Table", "AWS::DynamoDB::Table"),
        ("Queue", "AWS::SQS::Queue"),
    ]
    text = out.getvalue()
    assert "keeps these 2 resources" in text
    assert f"aws dynamodb delete-table --table-name idempotency-{suffix}" in text
    assert "aws sqs delete-queue --queue-url " in text
    assert f"inbound-{suffix}" in text
    assert "SNS::Topic" not in text


def test_a_throw_away_stack_says_nothing_is_kept(aws: str) -> None:
    stack = deploy(aws, {"Topic": {"Type": "AWS::SNS::Topic"}})
    out = io.StringIO()
    assert retained.main(["--stack-name", stack, "--region", TEST_REGION], out=out) == 0
    assert "none is retained" in out.getvalue()


def test_no_stack_is_an_error_that_stops_make_destroy(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert retained.main(["--stack-name", "no-such-stack", "--region", TEST_REGION]) == 1
    assert capsys.readouterr().err.startswith("error: ")
