"""Alarms (metric, dimensions, statistic, threshold, action) and what the dashboard shows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_METRICS_NAMESPACE,
    DIM_ERROR_CLASS,
    DIM_SERVICE,
    ERROR_CLASS_AUTH_CONFIG,
    ERROR_CLASS_QUALITY_POLICY,
    INGEST_SERVICE,
    METRIC_DELIVERY_FAILED,
    METRIC_GRAPH_API_ERROR,
    METRIC_GRAPH_API_ERROR_CLASS,
    METRIC_INVALID_SIGNATURE,
    METRIC_LATE_FAILURE_CLASS,
    METRIC_LATE_FAILURES,
    METRIC_REPLIES_DELIVERED,
    METRIC_REPLIES_READ,
    METRIC_REPLY_DELIVERY_LATENCY,
    METRIC_REPLY_SENT,
    METRIC_REPLY_UNCERTAIN,
)
from infra.constants import (
    ACK_LATENCY_TARGET_P50_MS,
    ACK_LATENCY_TARGET_P99_MS,
    CONSUMER_HANDLER,
    DEFAULT_BAD_SIGNATURE_ALARM_COUNT,
    DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS,
    STACK_NAME,
    TABLE_SYSTEM_ERRORS_ALARM_COUNT,
    TABLE_THROTTLES_ALARM_COUNT,
)
from infra.stack import TABLE_OPERATIONS
from tests.infra.conftest import CUSTOM_PROPS, Synthesized
from tests.infra.test_stack import role_statements

pytestmark = pytest.mark.infra

GE = "GreaterThanOrEqualToThreshold"


def alarms(s: Synthesized) -> dict[str, dict[str, Any]]:
    """Alarm properties by the alarm's short name (`<stack>-<name>`)."""
    found = {}
    for alarm in s.resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        found[props["AlarmName"].removeprefix(f"{STACK_NAME}-")] = props
    return found


def dimensions(props: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


def queue_ids(s: Synthesized, *, fifo: bool = True) -> tuple[str, str]:
    """(queue, its DLQ): the inbound FIFO queue, or with fifo=False the status queue."""
    for logical_id, queue in s.resources("AWS::SQS::Queue").items():
        props = queue["Properties"]
        if "RedrivePolicy" in props and props.get("FifoQueue", False) is fifo:
            dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            return logical_id, dlq_id
    raise AssertionError("no such queue")


EXPECTED_ALARMS = {
    "DeadLetterQueueNotEmpty",
    "OldestMessageTooOld",
    "Ingest5xx",
    "AckLatencyP99",
    "GraphAuthErrors",
    "GraphQualityPolicyErrors",
    "RepliesUncertain",
    "BadSignatureSpike",
    "ConsumerErrors",
    "ConsumerThrottles",
    "IdempotencyTableThrottles",
    "IdempotencyTableErrors",
    "LateFailuresNeedAttention",
    "StatusDeadLetterQueueNotEmpty",
}


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(
    default_stack: Synthesized,
) -> None:
    topic_id, _ = default_stack.one("AWS::SNS::Topic")
    found = alarms(default_stack)
    assert set(found) == EXPECTED_ALARMS
    for name, props in found.items():
        assert props["AlarmActions"] == [{"Ref": topic_id}], name
        assert props["OKActions"] == [{"Ref": topic_id}], name
        assert props["TreatMissingData"] == "notBreaching", name
        assert "docs/runbook.md#" in props["AlarmDescription"], name


def test_dead_letter_queue_alarm_fires_on_one_message(default_stack: Synthesized) -> None:
    _, dlq_id = queue_ids(default_stack)
    props = alarms(default_stack)["DeadLetterQueueNotEmpty"]
    assert (props["Namespace"], props["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dimensions(props) == {"QueueName": {"Fn::GetAtt": [dlq_id, "QueueName"]}}
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == (
        "Maximum",
        1,
        GE,
    )


def test_status_dead_letter_queue_alarm_watches_the_status_dlq(default_stack: Synthesized) -> None:
    _, status_dlq_id = queue_ids(default_stack, fifo=False)
    props = alarms(default_stack)["StatusDeadLetterQueueNotEmpty"]
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dimensions(props) == {"QueueName": {"Fn::GetAtt": [status_dlq_id, "QueueName"]}}
    assert (props["Statistic"], props["Threshold"]) == ("Maximum", 1)


def test_late_failures_of_the_classes_that_need_a_human_alarm_at_one(
    default_stack: Synthesized,
) -> None:
    props = alarms(default_stack)["LateFailuresNeedAttention"]
    assert (props["Threshold"], props["ComparisonOperator"]) == (1, GE)
    [expression] = [m for m in props["Metrics"] if "Expression" in m]
    series = [m for m in props["Metrics"] if "MetricStat" in m]
    classes = set()
    for query in series:
        metric = query["MetricStat"]["Metric"]
        assert (metric["Namespace"], metric["MetricName"]) == (
            DEFAULT_METRICS_NAMESPACE,
            METRIC_LATE_FAILURE_CLASS,
        )
        dims = dimensions(metric)
        assert dims[DIM_SERVICE] == CONSUMER_SERVICE
        classes.add(dims[DIM_ERROR_CLASS])
        assert f"FILL({query['Id']}, 0)" in expression["Expression"]  # either alone alarms
    assert classes == {ERROR_CLASS_AUTH_CONFIG, ERROR_CLASS_QUALITY_POLICY}


def test_dashboard_shows_what_becomes_of_replies_on_the_phone(default_stack: Synthesized) -> None:
    body = dashboard_body(default_stack)
    phones = json.dumps(_metrics_of(widget(body, "Replies on the customers' phones")))
    for metric in (METRIC_REPLIES_DELIVERED, METRIC_REPLIES_READ):
        assert json.dumps([metric, DIM_SERVICE, CONSUMER_SERVICE])[1:-1] in phones
    latency = [
        m[-1].get("stat")
        for m in _metrics_of(widget(body, "Replies on the customers' phones"))
        if METRIC_REPLY_DELIVERY_LATENCY in m
    ]
    assert sorted(latency) == ["p50", "p99"]
    [late] = _metrics_of(widget(body, "Late failures by ErrorCode"))
    assert f'MetricName="{METRIC_LATE_FAILURES}"' in late[0]["expression"]


@pytest.mark.parametrize(
    ("stack_name", "seconds"),
    [
        ("default_stack", DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS),
        ("custom_stack", CUSTOM_PROPS["oldest_message_alarm_seconds"]),
    ],
)
def test_oldest_message_alarm_watches_the_inbound_queue(
    stack_name: str, seconds: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    queue_id, _ = queue_ids(s)
    props = alarms(s)["OldestMessageTooOld"]
    assert props["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert dimensions(props) == {"QueueName": {"Fn::GetAtt": [queue_id, "QueueName"]}}
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == (
        "Maximum",
        seconds,
        GE,
    )


def test_api_alarms_watch_the_stage_5xx_and_p99_latency(default_stack: Synthesized) -> None:
    api_id, _ = default_stack.one("AWS::ApiGateway::RestApi")
    found = alarms(default_stack)
    five_xx, latency = found["Ingest5xx"], found["AckLatencyP99"]
    for props in (five_xx, latency):
        assert props["Namespace"] == "AWS/ApiGateway"
        assert set(dimensions(props)) == {"ApiName", "Stage"}
    assert (five_xx["MetricName"], five_xx["Statistic"]) == ("5XXError", "Sum")
    assert five_xx["Threshold"] >= 1
    assert latency["MetricName"] == "Latency"
    assert latency["ExtendedStatistic"] == "p99"
    assert latency["Threshold"] == ACK_LATENCY_TARGET_P99_MS == 1000
    assert latency["DatapointsToAlarm"] < latency["EvaluationPeriods"]  # one cold start: no page
    assert api_id


@pytest.mark.parametrize(
    ("alarm", "error_class"),
    [
        ("GraphAuthErrors", ERROR_CLASS_AUTH_CONFIG),
        ("GraphQualityPolicyErrors", ERROR_CLASS_QUALITY_POLICY),
    ],
)
def test_graph_error_class_alarms_fire_on_the_first_occurrence(
    default_stack: Synthesized, alarm: str, error_class: str
) -> None:
    props = alarms(default_stack)[alarm]
    assert props["Namespace"] == DEFAULT_METRICS_NAMESPACE
    assert props["MetricName"] == METRIC_GRAPH_API_ERROR_CLASS
    assert dimensions(props) == {DIM_SERVICE: CONSUMER_SERVICE, DIM_ERROR_CLASS: error_class}
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == ("Sum", 1, GE)


def test_uncertain_reply_alarm_fires_on_the_first_one(default_stack: Synthesized) -> None:
    props = alarms(default_stack)["RepliesUncertain"]
    assert props["MetricName"] == METRIC_REPLY_UNCERTAIN
    assert dimensions(props) == {DIM_SERVICE: CONSUMER_SERVICE}
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == ("Sum", 1, GE)


@pytest.mark.parametrize(
    ("stack_name", "threshold", "namespace"),
    [
        ("default_stack", DEFAULT_BAD_SIGNATURE_ALARM_COUNT, DEFAULT_METRICS_NAMESPACE),
        ("custom_stack", 7, CUSTOM_PROPS["metrics_namespace"]),
    ],
)
def test_bad_signature_spike_alarm(
    stack_name: str, threshold: int, namespace: str, request: pytest.FixtureRequest
) -> None:
    props = alarms(request.getfixturevalue(stack_name))["BadSignatureSpike"]
    assert props["Namespace"] == namespace
    assert props["MetricName"] == METRIC_INVALID_SIGNATURE
    assert dimensions(props) == {DIM_SERVICE: INGEST_SERVICE}
    assert (props["Statistic"], props["Threshold"]) == ("Sum", threshold)


@pytest.mark.parametrize(
    ("alarm", "metric"), [("ConsumerErrors", "Errors"), ("ConsumerThrottles", "Throttles")]
)
def test_consumer_lambda_alarms(default_stack: Synthesized, alarm: str, metric: str) -> None:
    consumer_id, _ = default_stack.one("AWS::Lambda::Function", {"Handler": CONSUMER_HANDLER})
    props = alarms(default_stack)[alarm]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", metric)
    assert dimensions(props) == {"FunctionName": {"Ref": consumer_id}}
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == ("Sum", 1, GE)


@pytest.mark.parametrize(
    ("alarm", "metric", "threshold"),
    [
        ("IdempotencyTableThrottles", "ThrottledRequests", TABLE_THROTTLES_ALARM_COUNT),
        ("IdempotencyTableErrors", "SystemErrors", TABLE_SYSTEM_ERRORS_ALARM_COUNT),
    ],
)
def test_table_alarms_sum_every_operation_the_consumer_calls(
    default_stack: Synthesized, alarm: str, metric: str, threshold: int
) -> None:
    table_id, _ = default_stack.one("AWS::DynamoDB::Table")
    props = alarms(default_stack)[alarm]
    assert (props["Threshold"], props["ComparisonOperator"]) == (threshold, GE)
    [expression] = [m for m in props["Metrics"] if "Expression" in m]
    series = [m for m in props["Metrics"] if "MetricStat" in m]
    assert expression["ReturnData"] is True
    assert all(m["ReturnData"] is False for m in series)
    operations = set()
    for query in series:
        stat = query["MetricStat"]
        assert (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"]) == (
            "AWS/DynamoDB",
            metric,
        )
        dims = dimensions(stat["Metric"])
        assert dims["TableName"] == {"Ref": table_id}  # not every table of the account
        operations.add(dims["Operation"])
        assert (stat["Stat"], stat["Period"]) == ("Sum", 300)
        # a missing series counts as 0: a plain sum would be empty whenever one operation is
        assert f"FILL({query['Id']}, 0)" in expression["Expression"]
    assert operations == set(TABLE_OPERATIONS)
    # and the consumer's role may make exactly those calls: a transaction is authorized per item
    # action (its Update and Put), the rest by their own names
    needed = {"PutItem", "UpdateItem"} if "TransactWriteItems" in operations else set()
    needed |= operations - {"TransactWriteItems"}
    granted = {
        action.removeprefix("dynamodb:")
        for statement in role_statements(default_stack, CONSUMER_HANDLER)
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if action.startswith("dynamodb:")
    }
    assert granted == needed


def test_email_subscription_only_when_an_address_is_given(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    assert default_stack.resources("AWS::SNS::Subscription") == {}
    topic_id, _ = custom_stack.one("AWS::SNS::Topic")
    _, subscription = custom_stack.one("AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == CUSTOM_PROPS["alarm_email"]
    assert subscription["Properties"]["TopicArn"] == {"Ref": topic_id}


def dashboard_body(s: Synthesized) -> dict[str, Any]:
    """The dashboard JSON with CloudFormation tokens replaced by their JSON text."""
    _, dashboard = s.one("AWS::CloudWatch::Dashboard")
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
    return dict(json.loads(text))


def _metrics_of(widget: dict[str, Any]) -> list[list[Any]]:
    return list(widget.get("properties", {}).get("metrics", []))


def widget(body: dict[str, Any], title_start: str) -> dict[str, Any]:
    for candidate in body["widgets"]:
        if candidate.get("properties", {}).get("title", "").startswith(title_start):
            return dict(candidate)
    raise AssertionError(f"no widget titled {title_start!r}")


def test_dashboard_shows_latency_against_metas_standard(default_stack: Synthesized) -> None:
    latency = widget(dashboard_body(default_stack), "Ack latency")
    lines = {a["value"] for a in latency["properties"]["annotations"]["horizontal"]}
    assert lines == {ACK_LATENCY_TARGET_P50_MS, ACK_LATENCY_TARGET_P99_MS}
    stats = {m[-1].get("stat") for m in _metrics_of(latency)}
    assert stats == {"p50", "p99"}


def test_dashboard_splits_4xx_by_bad_signature(default_stack: Synthesized) -> None:
    requests = widget(dashboard_body(default_stack), "Webhook requests")
    flat = json.dumps(_metrics_of(requests))
    for metric in ("Count", "4XXError", "5XXError"):
        assert f'"{metric}"' in flat
    assert json.dumps([METRIC_INVALID_SIGNATURE, DIM_SERVICE, INGEST_SERVICE])[1:-1] in flat


def test_dashboard_graphs_failures_by_error_code_with_search(default_stack: Synthesized) -> None:
    failures = widget(dashboard_body(default_stack), "Failures by ErrorCode")
    expressions = [m[0]["expression"] for m in _metrics_of(failures)]
    assert any(
        f'MetricName="{METRIC_GRAPH_API_ERROR}"' in e and f'service="{CONSUMER_SERVICE}"' in e
        for e in expressions
    )
    assert any(
        f'MetricName="{METRIC_DELIVERY_FAILED}"' in e and f'service="{INGEST_SERVICE}"' in e
        for e in expressions
    )
    assert all(e.startswith("SEARCH('{" + DEFAULT_METRICS_NAMESPACE) for e in expressions)


def test_dashboard_has_every_panel_on_call_needs(default_stack: Synthesized) -> None:
    body = dashboard_body(default_stack)
    titles = [w.get("properties", {}).get("title", "") for w in body["widgets"]]
    for start in (
        "Alarms",
        "Webhook requests",
        "Ack latency",
        "Inbound queue",
        "Dead-letter queue",
        "Messages / min",
        "Failures by ErrorCode",
        "Lambda errors and throttles",
        "Lambda duration",
        "Idempotency table: throttles and errors",
        "Idempotency table: consumed capacity",
        "Replies on the customers' phones",
        "Late failures by ErrorCode",
        "Status queue",
        "Status dead-letter queue",
    ):
        assert any(t.startswith(start) for t in titles), start
    queue = json.dumps(_metrics_of(widget(body, "Inbound queue")))
    assert "ApproximateAgeOfOldestMessage" in queue
    assert "ApproximateNumberOfMessagesVisible" in queue
    messages = json.dumps(_metrics_of(widget(body, "Messages / min")))
    assert json.dumps([METRIC_REPLY_SENT, DIM_SERVICE, CONSUMER_SERVICE])[1:-1] in messages
    assert len(widget(body, "Alarms")["properties"]["alarms"]) == len(EXPECTED_ALARMS)
    table = json.dumps(widget(body, "Idempotency table: throttles")["properties"]["metrics"])
    assert '"ThrottledRequests"' in table
    assert '"SystemErrors"' in table


def test_runbook_has_a_section_for_every_alarm_the_descriptions_link_to(
    default_stack: Synthesized,
) -> None:
    from infra.bundling import REPO_ROOT

    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    headings = {line[3:].strip() for line in runbook.splitlines() if line.startswith("## ")}
    for name, props in alarms(default_stack).items():
        assert name in headings, f"docs/runbook.md lacks '## {name}'"
        assert props["AlarmDescription"].endswith(f"#{name.lower()}")
