"""The whole relay in one stack: the stack composes, each construct owns one concern."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Aws, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_GRAPH_API_URL,
    DEFAULT_GRAPH_API_VERSION,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_METRICS_NAMESPACE,
    ENV_BURST_WINDOW_SECONDS,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_EVENT_BUS_NAME,
    ENV_EVENT_DETAIL,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_MAX_ATTEMPTS,
    ENV_QUEUE_URL,
    ENV_REPLY_HANDLER,
    ENV_REPLY_RULES_PATH,
    ENV_SECRET_ID,
    ENV_STATUS_QUEUE_URL,
    EVENT_DETAIL_MINIMAL,
    INGEST_SERVICE,
    MAX_BURST_WINDOW_SECONDS,
)
from infra.constants import (
    CONSUMER_BATCH_SIZE,
    CONSUMER_HANDLER,
    CONSUMER_MEMORY_MB,
    CONSUMER_TIMEOUT_SECONDS,
    DEFAULT_API_BURST_LIMIT,
    DEFAULT_API_RATE_LIMIT_PER_SECOND,
    DEFAULT_BAD_SIGNATURE_ALARM_COUNT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS,
    DEFAULT_REPLY_RULES_FILE,
    EMAIL_ADDRESS,
    INGEST_HANDLER,
    INGEST_MEMORY_MB,
    INGEST_TIMEOUT_SECONDS,
    LOG_RETENTION_DAYS,
    OUTPUT_ACCESS_LOG_GROUP,
    OUTPUT_ALARM_RECIPIENT,
    OUTPUT_ALARM_TOPIC_ARN,
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_DASHBOARD_URL,
    OUTPUT_DLQ_URL,
    OUTPUT_INGEST_LOG_GROUP,
    OUTPUT_QUEUE_URL,
    OUTPUT_SECRET_ARN,
    OUTPUT_STATUS_DLQ_URL,
    OUTPUT_STATUS_QUEUE_URL,
    OUTPUT_TABLE_NAME,
    OUTPUT_WEBHOOK_URL,
    STATUS_BATCH_SIZE,
    STATUS_MAX_CONCURRENCY,
)
from infra.function_factory import LOG_LEVELS, FunctionDefaults, python_function
from infra.monitoring import MonitoredResources, Monitoring
from infra.nag import acknowledge
from infra.queueing import InboundQueues, StatusQueues
from infra.reply_handler_check import locate_handler
from infra.reply_rules_check import check_reply_rules, deployed_path
from infra.state import CredentialsSecret, IdempotencyTable
from infra.webhook_api import WebhookApi

# What the consumer (Powertools idempotency and the reply ledger) calls on its table: the grant and
# the table's alarms are both made from this one list.
# The ledger's calls (docs/contract.md): UpdateItem and TransactWriteItems; the table alarms watch
# both. IAM authorizes a transaction per item action (its Update and Put), so the role needs only
# those two. Nothing reads or deletes.
TABLE_OPERATIONS = ("UpdateItem", "TransactWriteItems")
TABLE_IAM_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")

# SQS lets one event source mapping run between 2 and 1,000 concurrent batches.
MIN_MAX_CONCURRENCY = 2
MAX_MAX_CONCURRENCY = 1000
MAX_SQS_FIFO_BATCH_SIZE = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayProps:
    """What differs between deployments; every default comes from infra/constants.py."""

    code: lambda_.Code  # the shared asset (infra.bundling.bundled_code() in app.py)
    # Who receives the alarms. No default: None (nobody, until someone subscribes to the topic)
    # has to be chosen as explicitly as an address.
    alarm_email: str | None
    api_rate_limit_per_second: int = DEFAULT_API_RATE_LIMIT_PER_SECOND
    api_burst_limit: int = DEFAULT_API_BURST_LIMIT
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    consumer_max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    consumer_batch_size: int = CONSUMER_BATCH_SIZE
    graph_api_url: str = DEFAULT_GRAPH_API_URL
    graph_api_version: str = DEFAULT_GRAPH_API_VERSION
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    log_level: str = DEFAULT_LOG_LEVEL
    log_retention_days: int = LOG_RETENTION_DAYS
    oldest_message_alarm_seconds: int = DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS
    bad_signature_alarm_count: int = DEFAULT_BAD_SIGNATURE_ALARM_COUNT
    web_acl_arn: str | None = None
    # Queues, table and secret outlive the stack (and a replacement) unless this is False.
    retain_data: bool = True
    # Repository-relative; must also be in `code` (bundled_code(extra_files=...) puts it there).
    reply_rules_file: str = DEFAULT_REPLY_RULES_FILE
    # `module.path:function` in this repository; its package must also be in `code` (app.py:
    # reply_handler_files). None: the reply rules answer.
    reply_handler: str | None = None
    # An existing EventBridge bus (name or ARN) for the relay's events; None: no events.
    event_bus_name: str | None = None
    event_detail: str = EVENT_DETAIL_MINIMAL
    # > 0: a conversation's first message waits this long for the rest of its burst.
    burst_window_seconds: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.consumer_batch_size <= MAX_SQS_FIFO_BATCH_SIZE:
            raise ValueError(f"consumer_batch_size must be 1..{MAX_SQS_FIFO_BATCH_SIZE}")
        if not MIN_MAX_CONCURRENCY <= self.consumer_max_concurrency <= MAX_MAX_CONCURRENCY:
            raise ValueError(
                f"consumer_max_concurrency must be {MIN_MAX_CONCURRENCY}..{MAX_MAX_CONCURRENCY}"
            )
        if self.api_rate_limit_per_second < 1 or self.api_burst_limit < 1:
            raise ValueError("api_rate_limit_per_second and api_burst_limit must be positive")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        backstop = self.max_attempts * self.consumer_batch_size
        if self.max_receive_count < backstop:
            raise ValueError(
                f"max_receive_count must be at least max_attempts x consumer_batch_size "
                f"({backstop}): records held back behind a failing neighbour are received again"
            )
        if self.alarm_email is not None and not EMAIL_ADDRESS.fullmatch(self.alarm_email):
            raise ValueError(f"alarm_email must be an e-mail address, not {self.alarm_email!r}")
        log_retention(self.log_retention_days)  # raises on a retention CloudWatch refuses
        check_reply_rules(self.reply_rules_file)  # raises on rules the consumer would refuse
        if self.reply_handler is not None:
            locate_handler(self.reply_handler)  # raises on a handler that is not there
        if not 0 <= self.burst_window_seconds <= MAX_BURST_WINDOW_SECONDS:
            raise ValueError(f"burst_window_seconds must be 0..{MAX_BURST_WINDOW_SECONDS}")


class WhatsAppRelayStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: RelayProps,
        description: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id, description=description)
        retention = log_retention(props.log_retention_days)
        data_removal = RemovalPolicy.RETAIN if props.retain_data else RemovalPolicy.DESTROY

        queues = InboundQueues(
            self,
            "Queues",
            max_receive_count=props.max_receive_count,
            removal_policy=data_removal,
        )
        statuses = StatusQueues(
            self,
            "Statuses",
            max_receive_count=props.max_receive_count,
            removal_policy=data_removal,
        )
        table = IdempotencyTable(self, "Idempotency", removal_policy=data_removal).table
        secret = CredentialsSecret(self, "Credentials", removal_policy=data_removal).secret

        defaults = FunctionDefaults(
            code=props.code,
            metrics_namespace=props.metrics_namespace,
            log_level=props.log_level,
            log_retention=retention,
        )
        ingest = python_function(
            self,
            "Ingest",
            handler=INGEST_HANDLER,
            service_name=INGEST_SERVICE,
            description="whatsapp-relay ingest: verify the webhook, queue each message and status",
            memory_mb=INGEST_MEMORY_MB,
            timeout_seconds=INGEST_TIMEOUT_SECONDS,
            environment={
                ENV_QUEUE_URL: queues.queue.queue_url,
                ENV_STATUS_QUEUE_URL: statuses.queue.queue_url,
                ENV_SECRET_ID: secret.secret_arn,
            },
            defaults=defaults,
        )
        consumer = python_function(
            self,
            "Consumer",
            handler=CONSUMER_HANDLER,
            service_name=CONSUMER_SERVICE,
            description="whatsapp-relay consumer: mark read, reply, follow the replies' statuses",
            memory_mb=CONSUMER_MEMORY_MB,
            timeout_seconds=CONSUMER_TIMEOUT_SECONDS,
            environment={
                ENV_QUEUE_URL: queues.queue.queue_url,
                ENV_STATUS_QUEUE_URL: statuses.queue.queue_url,
                ENV_DEAD_LETTER_QUEUE_URL: queues.dead_letter_queue.queue_url,
                ENV_MAX_ATTEMPTS: str(props.max_attempts),
                ENV_SECRET_ID: secret.secret_arn,
                ENV_IDEMPOTENCY_TABLE: table.table_name,
                ENV_GRAPH_API_URL: props.graph_api_url,
                ENV_GRAPH_API_VERSION: props.graph_api_version,
                ENV_REPLY_RULES_PATH: deployed_path(props.reply_rules_file),
                **({ENV_REPLY_HANDLER: props.reply_handler} if props.reply_handler else {}),
                **(
                    {ENV_BURST_WINDOW_SECONDS: str(props.burst_window_seconds)}
                    if props.burst_window_seconds
                    else {}
                ),
                **(
                    {
                        ENV_EVENT_BUS_NAME: props.event_bus_name,
                        ENV_EVENT_DETAIL: props.event_detail,
                    }
                    if props.event_bus_name
                    else {}
                ),
            },
            defaults=defaults,
        )
        # Least privilege, spelled out: each statement is exactly what the code calls.
        queues.queue.grant(ingest.function, "sqs:SendMessage")  # SendMessageBatch included
        statuses.queue.grant(ingest.function, "sqs:SendMessage")
        for fn in (ingest.function, consumer.function):
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn]
                )
            )
        table.grant(consumer.function, *TABLE_IAM_ACTIONS)
        # The consumer's own dead letters (attempts exhausted, unreadable records).
        queues.dead_letter_queue.grant(consumer.function, "sqs:SendMessage")
        if props.event_bus_name:
            # events:PutEvents on that one bus: the relay's events, nothing else.
            bus = (
                events.EventBus.from_event_bus_arn(self, "EventBus", props.event_bus_name)
                if props.event_bus_name.startswith("arn:")
                else events.EventBus.from_event_bus_name(self, "EventBus", props.event_bus_name)
            )
            bus.grant_put_events_to(consumer.function)
        # The event source mapping grants Receive/Delete/ChangeMessageVisibility/GetQueueAttributes/
        # GetQueueUrl on the queue (grantConsumeMessages); the consumer itself raises visibility
        # timeouts for backoff, which that grant covers.
        consumer.function.add_event_source(
            event_sources.SqsEventSource(
                queues.queue,
                batch_size=props.consumer_batch_size,
                report_batch_item_failures=True,
                max_concurrency=props.consumer_max_concurrency,
            )
        )
        # Statuses: their own event source, so their volume never takes the conversations'
        # batches; the same grant, on the status queue.
        consumer.function.add_event_source(
            event_sources.SqsEventSource(
                statuses.queue,
                batch_size=STATUS_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=STATUS_MAX_CONCURRENCY,
            )
        )
        for relay_function in (ingest, consumer):
            acknowledge(
                relay_function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray's PutTraceSegments and PutTelemetryRecords (added by active tracing) "
                "support no resource-level permissions: '*' is the only resource they take.",
            )

        api = WebhookApi(
            self,
            "Webhook",
            handler=ingest.function,
            rate_limit_per_second=props.api_rate_limit_per_second,
            burst_limit=props.api_burst_limit,
            log_retention=retention,
            web_acl_arn=props.web_acl_arn,
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            resources=MonitoredResources(
                stage=api.stage,
                ingest=ingest.function,
                consumer=consumer.function,
                queue=queues.queue,
                dead_letter_queue=queues.dead_letter_queue,
                status_queue=statuses.queue,
                status_dead_letter_queue=statuses.dead_letter_queue,
                table=table,
                table_operations=list(TABLE_OPERATIONS),
            ),
            metrics_namespace=props.metrics_namespace,
            oldest_message_alarm_seconds=props.oldest_message_alarm_seconds,
            bad_signature_alarm_count=props.bad_signature_alarm_count,
            alarm_email=props.alarm_email,
            events_published=props.event_bus_name is not None,
        )

        self.queues = queues
        self.statuses = statuses
        self.table = table
        self.secret = secret
        self.ingest = ingest
        self.consumer = consumer
        self.api = api
        self.monitoring = monitoring

        dashboard_url = (
            f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={monitoring.dashboard.dashboard_name}"
        )
        outputs = {
            OUTPUT_WEBHOOK_URL: (api.webhook_url, "Callback URL to register in Meta's app"),
            OUTPUT_DASHBOARD_URL: (dashboard_url, "CloudWatch dashboard"),
            OUTPUT_ALARM_TOPIC_ARN: (monitoring.topic.topic_arn, "SNS topic the alarms notify"),
            OUTPUT_ALARM_RECIPIENT: (alarm_recipient(props.alarm_email), "Who the alarms reach"),
            OUTPUT_QUEUE_URL: (queues.queue.queue_url, "Inbound FIFO queue"),
            OUTPUT_DLQ_URL: (queues.dead_letter_queue.queue_url, "Dead-letter FIFO queue"),
            OUTPUT_STATUS_QUEUE_URL: (statuses.queue.queue_url, "Status queue (standard)"),
            OUTPUT_STATUS_DLQ_URL: (
                statuses.dead_letter_queue.queue_url,
                "The status queue's dead-letter queue",
            ),
            OUTPUT_TABLE_NAME: (table.table_name, "The consumer's ledger (make trace reads it)"),
            OUTPUT_SECRET_ARN: (secret.secret_arn, "Fill with put-secret-value (docs/deploy.md)"),
            OUTPUT_INGEST_LOG_GROUP: (ingest.log_group.log_group_name, "Ingest function logs"),
            OUTPUT_CONSUMER_LOG_GROUP: (consumer.log_group.log_group_name, "Consumer logs"),
            OUTPUT_ACCESS_LOG_GROUP: (api.access_logs.log_group_name, "API access logs (JSON)"),
        }
        for key, (value, meaning) in outputs.items():
            CfnOutput(self, key, value=value, description=meaning)
        if props.alarm_email is None:
            Annotations.of(self).add_warning_v2(
                "whatsapp-relay:no-alarm-subscriber", alarm_recipient(None)
            )


def alarm_recipient(alarm_email: str | None) -> str:
    """The `AlarmRecipient` output: who is told when an alarm fires."""
    if alarm_email is None:
        return (
            f"NOBODY: deployed with alarmEmail=none. Subscribe someone to the "
            f"{OUTPUT_ALARM_TOPIC_ARN} topic, or deploy with -c alarmEmail=<address>"
        )
    return f"{alarm_email} (by e-mail, once the subscription AWS mails there is confirmed)"


LOG_RETENTIONS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def log_retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs accepts only certain retentions; these are the ones this stack offers."""
    if days not in LOG_RETENTIONS:
        raise ValueError(f"log_retention_days must be one of {sorted(LOG_RETENTIONS)}")
    return LOG_RETENTIONS[days]
