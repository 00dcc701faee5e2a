"""`-c eventBusName=…`: the consumer is told the bus, may put events on that bus and nothing
else, and an alarm watches for events the bus refused."""

from __future__ import annotations

import json

import pytest

from functions.common.names import ENV_EVENT_BUS_NAME, ENV_EVENT_DETAIL, METRIC_EVENTS_NOT_PUBLISHED
from infra.constants import CONSUMER_HANDLER
from infra.context import ContextError, settings_from_context
from tests.infra.conftest import CUSTOM_PROPS, Synthesized, synthesize
from tests.infra.test_stack import _env, grants

pytestmark = pytest.mark.infra

OTHER_ACCOUNTS_BUS = "arn:aws:events:eu-west-1:210987654321:event-bus/crm"


def test_without_a_bus_there_are_no_events_no_grant_no_alarm(default_stack: Synthesized) -> None:
    env = _env(default_stack, CONSUMER_HANDLER)
    assert ENV_EVENT_BUS_NAME not in env
    assert ENV_EVENT_DETAIL not in env
    assert not [a for a in grants(default_stack, CONSUMER_HANDLER) if a.startswith("events:")]
    names = [
        a["Properties"]["AlarmName"]
        for a in default_stack.resources("AWS::CloudWatch::Alarm").values()
    ]
    assert not [n for n in names if METRIC_EVENTS_NOT_PUBLISHED in n]


def test_the_consumer_may_put_events_on_that_bus_only(custom_stack: Synthesized) -> None:
    env = _env(custom_stack, CONSUMER_HANDLER)
    assert env[ENV_EVENT_BUS_NAME] == CUSTOM_PROPS["event_bus_name"]
    assert env[ENV_EVENT_DETAIL] == "full"
    allowed = {
        a: r for a, r in grants(custom_stack, CONSUMER_HANDLER).items() if a.startswith("events:")
    }
    assert list(allowed) == ["events:PutEvents"]
    (resource,) = allowed["events:PutEvents"]
    text = json.dumps(json.loads(resource))
    assert f"event-bus/{CUSTOM_PROPS['event_bus_name']}" in text
    assert "*" not in text.replace('"*"', "")


def test_a_bus_of_another_account_is_granted_by_its_arn() -> None:
    s = synthesize(event_bus_name=OTHER_ACCOUNTS_BUS)

    assert grants(s, CONSUMER_HANDLER)["events:PutEvents"] == {json.dumps(OTHER_ACCOUNTS_BUS)}


def test_refused_events_raise_an_alarm(custom_stack: Synthesized) -> None:
    alarms = custom_stack.resources("AWS::CloudWatch::Alarm")
    (alarm,) = [
        a for a in alarms.values() if a["Properties"]["AlarmName"].endswith("-EventsNotPublished")
    ]
    props = alarm["Properties"]
    assert props["MetricName"] == METRIC_EVENTS_NOT_PUBLISHED
    assert props["Threshold"] == 1
    assert "docs/runbook.md#eventsnotpublished" in props["AlarmDescription"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("eventBusName", "crm bus", "EventBridge event bus"),
        ("eventBusName", "arn:aws:sqs:eu-west-1:123456789012:crm", "EventBridge event bus"),
        ("eventDetail", "everything", "minimal (ids, types and times only) or full"),
    ],
)
def test_malformed_event_settings_stop_synth(key: str, value: str, expected: str) -> None:
    with pytest.raises(ContextError) as raised:
        settings_from_context({"alarmEmail": "none", key: value})
    assert str(raised.value).startswith(f"context key {key}: expected ")
    assert expected in str(raised.value)


def test_event_settings_become_props() -> None:
    settings = settings_from_context(
        {"alarmEmail": "none", "eventBusName": "default", "eventDetail": "FULL"}
    )
    assert settings["event_bus_name"] == "default"
    assert settings["event_detail"] == "full"
