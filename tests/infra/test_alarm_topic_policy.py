"""The alarm topic's policy, evaluated the way SNS evaluates it when a CloudWatch alarm publishes.

The synthesized TopicPolicy is resolved with test values (account, region, the topic's ARN) and
judged by tests/infra/policy_evaluation.py: this stack's alarms may publish over TLS, and nothing
else may - not another account, not a plain-HTTP request, not another stack's alarm, not another
service.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra.constants import STACK_NAME
from tests.infra.conftest import Synthesized
from tests.infra.policy_evaluation import Decision, Request, Unsupported, evaluate, resolve

pytestmark = pytest.mark.infra

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK_NAME}-MonitoringAlarmTopic-ABC123"
CLOUDWATCH = {"Service": "cloudwatch.amazonaws.com"}


def topic_policy(s: Synthesized) -> dict[str, Any]:
    """The topic's policy document with every CloudFormation expression resolved."""
    topic_id, _ = s.one("AWS::SNS::Topic")
    _, policy = s.one("AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    refs = {
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": REGION,
        "AWS::Partition": "aws",
        topic_id: TOPIC_ARN,
    }
    return dict(resolve(policy["Properties"]["PolicyDocument"], refs))


def alarm_names(s: Synthesized) -> list[str]:
    """Every alarm that notifies the topic."""
    topic_id, _ = s.one("AWS::SNS::Topic")
    names = [
        alarm["Properties"]["AlarmName"]
        for alarm in s.resources("AWS::CloudWatch::Alarm").values()
        if {"Ref": topic_id} in alarm["Properties"].get("AlarmActions", [])
    ]
    assert names
    return names


def alarm_publish(
    alarm_name: str,
    *,
    account: str = ACCOUNT,
    secure: bool = True,
    principal: dict[str, str] | None = None,
    region: str = REGION,
) -> Request:
    """What SNS sees when the alarm `alarm_name` of `account` publishes to the topic."""
    return Request(
        principal=principal or CLOUDWATCH,
        action="SNS:Publish",
        resource=TOPIC_ARN,
        context={
            "aws:SecureTransport": "true" if secure else "false",
            "aws:SourceAccount": account,
            "aws:SourceArn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}",
        },
    )


@pytest.mark.parametrize("stack_name", ["default_stack", "custom_stack"])
def test_every_alarm_of_this_stack_may_publish_over_tls(
    stack_name: str, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    policy = topic_policy(s)
    for name in alarm_names(s):
        assert evaluate(policy, alarm_publish(name)) is Decision.ALLOW, name


def test_the_same_alarm_from_another_account_may_not_publish(default_stack: Synthesized) -> None:
    policy = topic_policy(default_stack)
    name = alarm_names(default_stack)[0]
    assert evaluate(policy, alarm_publish(name, account=OTHER_ACCOUNT)) is Decision.IMPLICIT_DENY


def test_a_confused_deputy_naming_this_account_only_in_the_arn_may_not_publish(
    default_stack: Synthesized,
) -> None:
    # aws:SourceAccount is the account the alarm really belongs to; the ARN alone is not enough
    policy = topic_policy(default_stack)
    name = alarm_names(default_stack)[0]
    forged = alarm_publish(name)
    forged = Request(
        principal=forged.principal,
        action=forged.action,
        resource=forged.resource,
        context={**forged.context, "aws:SourceAccount": OTHER_ACCOUNT},
    )
    assert evaluate(policy, forged) is Decision.IMPLICIT_DENY


def test_a_request_without_tls_is_denied_explicitly(default_stack: Synthesized) -> None:
    policy = topic_policy(default_stack)
    name = alarm_names(default_stack)[0]
    assert evaluate(policy, alarm_publish(name, secure=False)) is Decision.EXPLICIT_DENY


@pytest.mark.parametrize(
    "alarm_name",
    [
        "OtherStack-DeadLetterQueueNotEmpty",
        # a stack whose name starts with ours: a `WhatsAppRelay-*` pattern would let it in
        f"{STACK_NAME}-dev-DeadLetterQueueNotEmpty",
        f"{STACK_NAME}-SomeoneElsesAlarm",
    ],
)
def test_alarms_of_other_stacks_may_not_publish(
    default_stack: Synthesized, alarm_name: str
) -> None:
    assert evaluate(topic_policy(default_stack), alarm_publish(alarm_name)) is (
        Decision.IMPLICIT_DENY
    )


def test_this_stacks_alarm_names_in_another_region_may_not_publish(
    default_stack: Synthesized,
) -> None:
    name = alarm_names(default_stack)[0]
    request = alarm_publish(name, region="us-east-1")
    assert evaluate(topic_policy(default_stack), request) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize(
    "principal",
    [
        {"Service": "events.amazonaws.com"},
        {"Service": "s3.amazonaws.com"},
        {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
    ],
)
def test_other_principals_may_not_publish(
    default_stack: Synthesized, principal: dict[str, str]
) -> None:
    name = alarm_names(default_stack)[0]
    request = alarm_publish(name, principal=principal)
    assert evaluate(topic_policy(default_stack), request) is Decision.IMPLICIT_DENY


def test_the_policy_allows_publishing_and_nothing_else(default_stack: Synthesized) -> None:
    policy = topic_policy(default_stack)
    name = alarm_names(default_stack)[0]
    for action in ("sns:Subscribe", "sns:SetTopicAttributes", "sns:DeleteTopic"):
        request = alarm_publish(name)
        request = Request(request.principal, action, request.resource, request.context)
        assert evaluate(policy, request) is Decision.IMPLICIT_DENY, action


def test_without_the_allow_statement_cloudwatch_could_not_publish(
    default_stack: Synthesized,
) -> None:
    """What `enforce_ssl` alone gave: a Deny-only policy, which replaces SNS's default policy,
    so the alarms were refused. Guards the evaluator against calling everything allowed."""
    policy = topic_policy(default_stack)
    deny_only = {**policy, "Statement": [s for s in policy["Statement"] if s["Effect"] == "Deny"]}
    assert deny_only["Statement"], "the TLS-only Deny must stay"
    name = alarm_names(default_stack)[0]
    assert evaluate(deny_only, alarm_publish(name)) is Decision.IMPLICIT_DENY


def test_the_evaluator_refuses_what_it_does_not_model() -> None:
    request = alarm_publish("x")
    for statement in (
        {"Effect": "Allow", "NotPrincipal": "*", "Action": "sns:Publish", "Resource": "*"},
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"aws:SourceAccount": ACCOUNT}},
        },
    ):
        with pytest.raises(Unsupported):
            evaluate({"Statement": [statement]}, request)
    with pytest.raises(Unsupported):
        resolve({"Fn::Sub": "arn:${AWS::Partition}"}, {})
