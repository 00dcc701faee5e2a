"""The on-call view: one dashboard read top to bottom, and alarms that page through one SNS topic.

Custom metrics are the Powertools EMF metrics named in `functions/common/names.py`; Powertools adds
the `service` dimension to each, so every custom metric here is addressed with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.common.names import (
    CONSUMER_SERVICE,
    DIM_ERROR_CLASS,
    DIM_ERROR_CODE,
    DIM_SERVICE,
    ERROR_CLASS_AUTH_CONFIG,
    ERROR_CLASS_QUALITY_POLICY,
    INGEST_SERVICE,
    METRIC_DELIVERY_FAILED,
    METRIC_END_TO_END_LATENCY,
    METRIC_EVENTS_NOT_PUBLISHED,
    METRIC_EVENTS_PUBLISHED,
    METRIC_GRAPH_API_ERROR,
    METRIC_GRAPH_API_ERROR_CLASS,
    METRIC_HANDLER_LATENCY,
    METRIC_INVALID_SIGNATURE,
    METRIC_LATE_FAILURE_CLASS,
    METRIC_LATE_FAILURES,
    METRIC_LATE_FALLBACKS,
    METRIC_MESSAGES_QUEUED,
    METRIC_READ_RECEIPT_SENT,
    METRIC_REPLIES_DELIVERED,
    METRIC_REPLIES_READ,
    METRIC_REPLIES_RESENT,
    METRIC_REPLY_DELIVERY_LATENCY,
    METRIC_REPLY_SENT,
    METRIC_REPLY_UNCERTAIN,
    METRIC_STATUSES_QUEUED,
    METRIC_STATUSES_UNMATCHED,
)
from infra.constants import (
    ACK_LATENCY_BREACHING_WINDOWS,
    ACK_LATENCY_TARGET_P50_MS,
    ACK_LATENCY_TARGET_P99_MS,
    ALARM_WINDOW_MINUTES,
    INGEST_5XX_ALARM_COUNT,
    TABLE_SYSTEM_ERRORS_ALARM_COUNT,
    TABLE_THROTTLES_ALARM_COUNT,
)
from infra.nag import acknowledge

RUNBOOK = "docs/runbook.md"
_MINUTE = Duration.minutes(1)
_WINDOW = Duration.minutes(ALARM_WINDOW_MINUTES)


@dataclass(frozen=True, slots=True)
class MonitoredResources:
    stage: apigw.Stage
    ingest: lambda_.IFunction
    consumer: lambda_.IFunction
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue
    status_queue: sqs.IQueue
    status_dead_letter_queue: sqs.IQueue
    table: dynamodb.ITable
    table_operations: Sequence[str]  # what the consumer calls on the table: GetItem, ...


class Monitoring(Construct):
    """Dashboard + alarms -> SNS topic (optionally with an e-mail subscription)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resources: MonitoredResources,
        metrics_namespace: str,
        oldest_message_alarm_seconds: int,
        bad_signature_alarm_count: int,
        alarm_email: str | None = None,
        events_published: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self._namespace = metrics_namespace
        self._prefix = Stack.of(self).stack_name
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name="whatsapp-relay alarms", enforce_ssl=True
        )
        acknowledge(
            self.topic,
            "AwsSolutions-SNS2",
            "CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key, "
            "and the notifications carry alarm names and numbers only: no message content, no "
            "phone numbers. A customer managed key would cost more than what it protects.",
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        action = cw_actions.SnsAction(self.topic)
        r = resources
        self.alarms = self._alarms(r, oldest_message_alarm_seconds, bad_signature_alarm_count)
        if events_published:
            alarm = self._alarm(
                "EventsNotPublished",
                self.custom(METRIC_EVENTS_NOT_PUBLISHED, CONSUMER_SERVICE, period=_WINDOW),
                threshold=1,
                what="The event bus refused events (even once more): subscribers missed facts. "
                "Replies are unaffected.",
            )
            self.alarms[alarm.node.id] = alarm
        for alarm in self.alarms.values():
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self._let_the_alarms_publish()
        self.dashboard = self._dashboard(r, oldest_message_alarm_seconds)

    def _let_the_alarms_publish(self) -> None:
        """`enforce_ssl` gives the topic a policy of its own, which replaces SNS's default one:
        without this statement nothing may publish, CloudWatch included. Only this stack's
        alarms, named one by one (a pattern like `<stack>-*` would also admit the alarms of a
        stack named `<stack>-dev`), in this account; the TLS-only Deny still applies."""
        stack = Stack.of(self)
        alarm_arns = [
            stack.format_arn(
                service="cloudwatch",
                resource="alarm",
                resource_name=self._alarm_name(alarm.node.id),
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            for alarm in self.alarms.values()
        ]
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ThisStacksAlarmsMayPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": alarm_arns},
                },
            )
        )

    # --- metrics ------------------------------------------------------------------------------

    def custom(
        self,
        name: str,
        service: str,
        *,
        period: Duration = _MINUTE,
        label: str | None = None,
        dimensions: dict[str, str] | None = None,
    ) -> cw.Metric:
        """A Powertools metric of one function: dimensions `service` (+ the given ones), summed."""
        return cw.Metric(
            namespace=self._namespace,
            metric_name=name,
            dimensions_map={DIM_SERVICE: service, **(dimensions or {})},
            statistic=cw.Stats.SUM,
            period=period,
            label=label,
        )

    def _by_error_code(self, name: str, service: str, label: str) -> cw.MathExpression:
        """Every `ErrorCode` of one metric, one line each: for graphs, never for alarms."""
        search = (
            f"SEARCH('{{{self._namespace},{DIM_SERVICE},{DIM_ERROR_CODE}}} "
            f'MetricName="{name}" {DIM_SERVICE}="{service}"\', \'Sum\', 60)'
        )
        # A dynamic label names each line after its code (a fixed one would repeat on all).
        dynamic = f"{label} ${{PROP('Dim.{DIM_ERROR_CODE}')}}"
        return cw.MathExpression(expression=search, label=dynamic, period=_MINUTE)

    def _table_sum(self, r: MonitoredResources, metric_name: str, label: str) -> cw.MathExpression:
        """A table metric summed over the operations the consumer calls, per 5 minutes.

        DynamoDB publishes these per operation and only when one happens, so each series is
        filled with 0: a plain `a + b` has no value where any operand has none, and an alarm on
        it would miss throttling that only one operation sees.
        """
        series = {
            f"{metric_name.lower()}_{operation.lower()}": r.table.metric(
                metric_name,
                # a dimensions_map replaces the TableName dimension `metric` would add
                dimensions_map={"TableName": r.table.table_name, "Operation": operation},
                statistic=cw.Stats.SUM,
                period=_WINDOW,
            )
            for operation in r.table_operations
        }
        return cw.MathExpression(
            expression=" + ".join(f"FILL({metric_id}, 0)" for metric_id in series),
            using_metrics=series,
            label=label,
            period=_WINDOW,
        )

    def _late_failures_needing_attention(self) -> cw.MathExpression:
        """Late failures (a reply's `failed` status) of the classes that need a human: auth/config
        and quality/policy, summed per 5 minutes (each series filled: one alone must alarm)."""
        series = {
            name: self.custom(
                METRIC_LATE_FAILURE_CLASS,
                CONSUMER_SERVICE,
                period=_WINDOW,
                dimensions={DIM_ERROR_CLASS: error_class},
            )
            for name, error_class in (
                ("auth", ERROR_CLASS_AUTH_CONFIG),
                ("policy", ERROR_CLASS_QUALITY_POLICY),
            )
        }
        return cw.MathExpression(
            expression=" + ".join(f"FILL({name}, 0)" for name in series),
            using_metrics=series,
            label="late auth/config and quality/policy failures",
            period=_WINDOW,
        )

    # --- alarms -------------------------------------------------------------------------------

    def _alarm_name(self, name: str) -> str:
        return f"{self._prefix}-{name}"

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        *,
        threshold: float,
        what: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> cw.Alarm:
        return cw.Alarm(
            self,
            name,
            alarm_name=self._alarm_name(name),
            alarm_description=f"{what} Runbook: {RUNBOOK}#{name.lower()}",
            metric=metric,
            threshold=threshold,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _alarms(
        self, r: MonitoredResources, oldest_seconds: int, bad_signatures: int
    ) -> dict[str, cw.Alarm]:
        alarms = [
            self._alarm(
                "DeadLetterQueueNotEmpty",
                r.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=_MINUTE, statistic=cw.Stats.MAXIMUM
                ),
                threshold=1,
                what="A message exhausted its retries and was not answered.",
            ),
            self._alarm(
                "OldestMessageTooOld",
                r.queue.metric_approximate_age_of_oldest_message(
                    period=_MINUTE, statistic=cw.Stats.MAXIMUM
                ),
                threshold=oldest_seconds,
                what=f"A queued message has waited {oldest_seconds} s or more for its reply.",
            ),
            self._alarm(
                "Ingest5xx",
                r.stage.metric_server_error(period=_WINDOW, statistic=cw.Stats.SUM),
                threshold=INGEST_5XX_ALARM_COUNT,
                what="The webhook answered 5xx: deliveries were not queued; Meta is retrying.",
            ),
            self._alarm(
                "AckLatencyP99",
                r.stage.metric_latency(period=_WINDOW, statistic=cw.Stats.p(99)),
                threshold=ACK_LATENCY_TARGET_P99_MS,
                evaluation_periods=3,
                datapoints_to_alarm=ACK_LATENCY_BREACHING_WINDOWS,
                what="Webhook p99 latency is over Meta's 1 s standard.",
            ),
            self._alarm(
                "GraphAuthErrors",
                self.custom(
                    METRIC_GRAPH_API_ERROR_CLASS,
                    CONSUMER_SERVICE,
                    period=_WINDOW,
                    dimensions={DIM_ERROR_CLASS: ERROR_CLASS_AUTH_CONFIG},
                ),
                threshold=1,
                what="Meta refused the access token or the configuration (codes 0, 190, 10, 3, "
                "200-299, 131005, 33): no replies go out until a human fixes it.",
            ),
            self._alarm(
                "GraphQualityPolicyErrors",
                self.custom(
                    METRIC_GRAPH_API_ERROR_CLASS,
                    CONSUMER_SERVICE,
                    period=_WINDOW,
                    dimensions={DIM_ERROR_CLASS: ERROR_CLASS_QUALITY_POLICY},
                ),
                threshold=1,
                what="Meta restricted the number or account for quality or policy reasons.",
            ),
            self._alarm(
                "LateFailuresNeedAttention",
                self._late_failures_needing_attention(),
                threshold=1,
                what="Meta accepted replies, then reported them failed with an auth/config or "
                "quality/policy code (a late failure): they are resent slowly until someone acts.",
            ),
            self._alarm(
                "StatusDeadLetterQueueNotEmpty",
                r.status_dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=_MINUTE, statistic=cw.Stats.MAXIMUM
                ),
                threshold=1,
                what="A status of one of our replies kept failing and went to the status DLQ: "
                "that reply's state (and a late failure's follow-up) may be stale.",
            ),
            self._alarm(
                "RepliesUncertain",
                self.custom(METRIC_REPLY_UNCERTAIN, CONSUMER_SERVICE, period=_WINDOW),
                threshold=1,
                what="A consumer run died while a reply was being sent: it may or may not have "
                "reached the user, and it is not sent again (never twice).",
            ),
            self._alarm(
                "BadSignatureSpike",
                self.custom(METRIC_INVALID_SIGNATURE, INGEST_SERVICE, period=_WINDOW),
                threshold=bad_signatures,
                what="Many webhook POSTs failed the HMAC check: a wrong appSecret, or probing.",
            ),
            self._alarm(
                "ConsumerErrors",
                r.consumer.metric_errors(period=_WINDOW, statistic=cw.Stats.SUM),
                threshold=1,
                what="The consumer Lambda failed a whole invocation (a crash, not a Meta error).",
            ),
            self._alarm(
                "ConsumerThrottles",
                r.consumer.metric_throttles(period=_WINDOW, statistic=cw.Stats.SUM),
                threshold=1,
                what="The consumer Lambda was throttled: account concurrency is exhausted.",
            ),
            self._alarm(
                "IdempotencyTableThrottles",
                self._table_sum(r, "ThrottledRequests", "throttled requests"),
                threshold=TABLE_THROTTLES_ALARM_COUNT,
                what="DynamoDB throttled the consumer's idempotency table: records fail and wait "
                "for SQS to redeliver them.",
            ),
            self._alarm(
                "IdempotencyTableErrors",
                self._table_sum(r, "SystemErrors", "system errors"),
                threshold=TABLE_SYSTEM_ERRORS_ALARM_COUNT,
                what="DynamoDB answered the consumer's idempotency table with server errors.",
            ),
        ]
        return {alarm.node.id: alarm for alarm in alarms}

    # --- dashboard ----------------------------------------------------------------------------

    def _dashboard(self, r: MonitoredResources, oldest_seconds: int) -> cw.Dashboard:
        p50 = cw.HorizontalAnnotation(
            value=ACK_LATENCY_TARGET_P50_MS, label="Meta p50 target 250 ms", color=cw.Color.ORANGE
        )
        p99 = cw.HorizontalAnnotation(
            value=ACK_LATENCY_TARGET_P99_MS, label="Meta p99 limit 1 s", color=cw.Color.RED
        )
        stage = r.stage
        dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self._prefix,
            default_interval=Duration.hours(3),
        )
        dashboard.add_widgets(
            cw.TextWidget(
                markdown=(
                    "## whatsapp-relay\nHealthy: alarms green, 5xx at 0, latency under the "
                    "lines, queue age flat, DLQ at 0, replies tracking inbound. Every alarm has "
                    f"a section in `{RUNBOOK}`."
                ),
                width=8,
                height=4,
            ),
            cw.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=16, height=4
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Webhook requests / min",
                left=[
                    stage.metric_count(period=_MINUTE, label="requests"),
                    stage.metric_client_error(period=_MINUTE, label="4xx"),
                    self.custom(
                        METRIC_INVALID_SIGNATURE, INGEST_SERVICE, label="4xx bad signature"
                    ),
                    stage.metric_server_error(period=_MINUTE, label="5xx (Meta retries)"),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Ack latency (ms) vs Meta's standard",
                left=[
                    stage.metric_latency(period=_MINUTE, statistic=cw.Stats.p(50), label="p50"),
                    stage.metric_latency(period=_MINUTE, statistic=cw.Stats.p(99), label="p99"),
                ],
                left_annotations=[p50, p99],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Inbound queue",
                left=[
                    r.queue.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="waiting"
                    ),
                    r.queue.metric_approximate_number_of_messages_not_visible(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="in flight / backing off"
                    ),
                ],
                right=[
                    r.queue.metric_approximate_age_of_oldest_message(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="oldest message (s)"
                    )
                ],
                right_annotations=[
                    cw.HorizontalAnnotation(value=oldest_seconds, label="alarm", color=cw.Color.RED)
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Dead-letter queue (should be 0)",
                left=[
                    r.dead_letter_queue.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="messages"
                    )
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Messages / min",
                left=[
                    self.custom(METRIC_MESSAGES_QUEUED, INGEST_SERVICE, label="inbound queued"),
                    self.custom(METRIC_REPLY_SENT, CONSUMER_SERVICE, label="replies sent"),
                    self.custom(METRIC_READ_RECEIPT_SENT, CONSUMER_SERVICE, label="marked read"),
                ],
                right=[
                    cw.Metric(
                        namespace=self._namespace,
                        metric_name=METRIC_END_TO_END_LATENCY,
                        dimensions_map={DIM_SERVICE: CONSUMER_SERVICE},
                        statistic=cw.Stats.p(99),
                        period=_MINUTE,
                        label="webhook -> reply p99 (ms)",
                    )
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Failures by ErrorCode / min",
                left=[
                    self._by_error_code(METRIC_GRAPH_API_ERROR, CONSUMER_SERVICE, "Graph API"),
                    self._by_error_code(METRIC_DELIVERY_FAILED, INGEST_SERVICE, "delivery"),
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Replies on the customers' phones / min",
                left=[
                    self.custom(METRIC_REPLY_SENT, CONSUMER_SERVICE, label="sent (accepted)"),
                    self.custom(METRIC_REPLIES_DELIVERED, CONSUMER_SERVICE, label="delivered"),
                    self.custom(METRIC_REPLIES_READ, CONSUMER_SERVICE, label="read"),
                    self.custom(METRIC_LATE_FALLBACKS, CONSUMER_SERVICE, label="late fallbacks"),
                    self.custom(METRIC_REPLIES_RESENT, CONSUMER_SERVICE, label="resent"),
                ],
                right=[
                    cw.Metric(
                        namespace=self._namespace,
                        metric_name=METRIC_REPLY_DELIVERY_LATENCY,
                        dimensions_map={DIM_SERVICE: CONSUMER_SERVICE},
                        statistic=cw.Stats.p(percentile),
                        period=_MINUTE,
                        label=f"customer's message -> reply delivered p{percentile} (ms)",
                    )
                    for percentile in (50, 99)
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Late failures by ErrorCode / min (a reply Meta accepted, then failed)",
                left=[self._by_error_code(METRIC_LATE_FAILURES, CONSUMER_SERVICE, "late")],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Status queue",
                left=[
                    self.custom(METRIC_STATUSES_QUEUED, INGEST_SERVICE, label="statuses queued"),
                    self.custom(
                        METRIC_STATUSES_UNMATCHED, CONSUMER_SERVICE, label="not ours (dropped)"
                    ),
                    r.status_queue.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="waiting"
                    ),
                ],
                right=[
                    r.status_queue.metric_approximate_age_of_oldest_message(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="oldest status (s)"
                    )
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Status dead-letter queue (should be 0)",
                left=[
                    r.status_dead_letter_queue.metric_approximate_number_of_messages_visible(
                        period=_MINUTE, statistic=cw.Stats.MAXIMUM, label="statuses"
                    )
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Lambda errors and throttles",
                left=[
                    r.ingest.metric_errors(period=_MINUTE, label="ingest errors"),
                    r.ingest.metric_throttles(period=_MINUTE, label="ingest throttles"),
                    r.consumer.metric_errors(period=_MINUTE, label="consumer errors"),
                    r.consumer.metric_throttles(period=_MINUTE, label="consumer throttles"),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Lambda duration p99 (ms)",
                left=[
                    r.ingest.metric_duration(
                        period=_MINUTE, statistic=cw.Stats.p(99), label="ingest"
                    ),
                    r.consumer.metric_duration(
                        period=_MINUTE, statistic=cw.Stats.p(99), label="consumer"
                    ),
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Idempotency table: throttles and errors / 5 min (should be 0)",
                left=[
                    self._table_sum(r, "ThrottledRequests", "throttled requests"),
                    self._table_sum(r, "SystemErrors", "system errors"),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Idempotency table: consumed capacity units / min",
                left=[
                    r.table.metric_consumed_write_capacity_units(
                        period=_MINUTE, statistic=cw.Stats.SUM, label="write"
                    ),
                    r.table.metric_consumed_read_capacity_units(
                        period=_MINUTE, statistic=cw.Stats.SUM, label="read"
                    ),
                ],
                width=12,
            ),
        )
        handler_latency = {
            stat: cw.Metric(
                namespace=self._namespace,
                metric_name=METRIC_HANDLER_LATENCY,
                dimensions_map={DIM_SERVICE: CONSUMER_SERVICE},
                statistic=cw.Stats.p(stat),
                period=_MINUTE,
                label=f"p{stat}",
            )
            for stat in (50, 99)
        }
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Reply handler time (ms; empty with the rules file)",
                left=list(handler_latency.values()),
                width=12,
            ),
            cw.GraphWidget(
                title="Events to the bus / min (empty without eventBusName)",
                left=[
                    self.custom(METRIC_EVENTS_PUBLISHED, CONSUMER_SERVICE, label="published"),
                    self.custom(
                        METRIC_EVENTS_NOT_PUBLISHED, CONSUMER_SERVICE, label="not published"
                    ),
                ],
                width=12,
            ),
        )
        return dashboard
