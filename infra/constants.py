"""Names and settings shared by the CDK stack, the local pipeline and the tests.

Pure constants (no aws_cdk import), so the local pipeline can create the very same queues,
table and secret that the stack creates without loading CDK.
"""

import re
from typing import Final

STACK_NAME: Final = "WhatsAppRelay"

# Function entry points (runtime contract) and the package directory shipped as their code.
INGEST_HANDLER: Final = "functions.ingest.app.handler"
CONSUMER_HANDLER: Final = "functions.consumer.app.handler"

# Resource names used where a fixed name is needed (the local pipeline; CDK lets CloudFormation
# name the deployed resources, so several stacks can live in one account).
INBOUND_QUEUE_NAME: Final = "whatsapp-relay-inbound.fifo"
DEAD_LETTER_QUEUE_NAME: Final = "whatsapp-relay-inbound-dlq.fifo"
STATUS_QUEUE_NAME: Final = "whatsapp-relay-statuses"
STATUS_DEAD_LETTER_QUEUE_NAME: Final = "whatsapp-relay-statuses-dlq"
IDEMPOTENCY_TABLE_NAME: Final = "whatsapp-relay-idempotency"
SECRET_NAME: Final = "whatsapp-relay/credentials"  # noqa: S105 - a name, not a secret

# Lambda sizing, with units in the names.
INGEST_MEMORY_MB: Final = 256
INGEST_TIMEOUT_SECONDS: Final = 10
CONSUMER_MEMORY_MB: Final = 512
CONSUMER_TIMEOUT_SECONDS: Final = 30

# Queueing. SQS wants the visibility timeout at least 6x the consumer's timeout.
VISIBILITY_TIMEOUT_SECONDS: Final = 6 * CONSUMER_TIMEOUT_SECONDS
# SQS's redrive is only the backstop for runs that die: the consumer dead-letters a message itself
# after its own attempts (DEFAULT_MAX_ATTEMPTS in functions/common/names.py). A record is also
# received each time a record ahead of it in its conversation fails (up to 9 of them in a
# batch), so the backstop stays above batch size x attempts, or held-back records would reach
# the DLQ for their neighbour.
DEFAULT_MAX_RECEIVE_COUNT: Final = 120
DLQ_RETENTION_DAYS: Final = 14
INBOUND_RETENTION_DAYS: Final = 4
CONSUMER_BATCH_SIZE: Final = 10
DEFAULT_MAX_CONCURRENCY: Final = 5
# The status queue (standard): its own event source on the consumer, with its own concurrency,
# so a flood of statuses cannot hold back the replies to customers ("Statuses on a standard
# queue of their own, same consumer" in docs/decisions.md).
STATUS_BATCH_SIZE: Final = 10
STATUS_MAX_CONCURRENCY: Final = 2
STATUS_RETENTION_DAYS: Final = 4

# Idempotency table schema (contract).
IDEMPOTENCY_PARTITION_KEY: Final = "id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expiration"

# --- Lambda packaging and runtime -------------------------------------------------------------
# One Python version for the Lambda runtime and for the wheels bundled into the asset, so the two
# cannot drift apart. The wheels are Linux arm64 (Graviton) ones, installed without Docker.
LAMBDA_PYTHON_VERSION: Final = "3.13"
LAMBDA_WHEEL_PLATFORM: Final = "manylinux2014_aarch64"
FUNCTIONS_PACKAGE_DIR: Final = "functions"
LOG_RETENTION_DAYS: Final = 30
# Where a zip function's code lies in Lambda: the asset's files keep their repository paths
# beneath it (functions/..., and the chosen reply rules file).
LAMBDA_TASK_ROOT: Final = "/var/task"
# The consumer's reply rules unless context replyRulesFile names another (repository-relative).
DEFAULT_REPLY_RULES_FILE: Final = "functions/consumer/reply_rules.json"
DEFAULT_LOG_LEVEL: Final = "INFO"

# --- API --------------------------------------------------------------------------------------
WEBHOOK_PATH: Final = "webhook"
API_STAGE_NAME: Final = "v1"
# Meta retries for days and sends at most a few hundred requests per second per app; these stop a
# flood from reaching Lambda and SQS while leaving room for bursts after an outage.
DEFAULT_API_RATE_LIMIT_PER_SECOND: Final = 500
DEFAULT_API_BURST_LIMIT: Final = 1000

# The alarms need a recipient or this explicit value (context alarmEmail=none: nobody is told).
ALARM_EMAIL_NONE: Final = "none"
# Context dataRemovalPolicy: what happens to the queues, the table and the secret when the stack
# is deleted or one of them is replaced.
DATA_REMOVAL_RETAIN: Final = "retain"
DATA_REMOVAL_DESTROY: Final = "destroy"

# What an alarm e-mail subscription accepts: one address, no display name, a dot in the domain.
EMAIL_ADDRESS: Final = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")

# --- Alarm thresholds (units in the names) ----------------------------------------------------
# Alarms look at windows of this length: long enough that one retried blip does not page.
ALARM_WINDOW_MINUTES: Final = 5
# A reply this late is no longer a conversation: page. Backoff on rate limits stays well below.
DEFAULT_OLDEST_MESSAGE_ALARM_SECONDS: Final = 900
# Meta wants the webhook acknowledged within 250 ms (median) and 1 s (p99).
ACK_LATENCY_TARGET_P50_MS: Final = 250
ACK_LATENCY_TARGET_P99_MS: Final = 1000
ACK_LATENCY_BREACHING_WINDOWS: Final = 2  # of the last 3 windows: a cold start alone never pages
INGEST_5XX_ALARM_COUNT: Final = 5  # per window: Meta retries one blip, a run means lost acks
DEFAULT_BAD_SIGNATURE_ALARM_COUNT: Final = 50  # per window: a wrong appSecret, or someone probing
# Per window, over the operations the consumer calls. botocore retries a throttled or failed
# DynamoDB request itself, so a few are invisible; beyond these, records fail and wait for SQS.
TABLE_THROTTLES_ALARM_COUNT: Final = 10
TABLE_SYSTEM_ERRORS_ALARM_COUNT: Final = 5

# --- Stack outputs (tools/dlq.py and docs read them by these keys) ----------------------------
OUTPUT_WEBHOOK_URL: Final = "WebhookUrl"
OUTPUT_DASHBOARD_URL: Final = "DashboardUrl"
OUTPUT_ALARM_TOPIC_ARN: Final = "AlarmTopicArn"
OUTPUT_ALARM_RECIPIENT: Final = "AlarmRecipient"
OUTPUT_QUEUE_URL: Final = "QueueUrl"
OUTPUT_DLQ_URL: Final = "DeadLetterQueueUrl"
OUTPUT_SECRET_ARN: Final = "SecretArn"  # noqa: S105 - an output key
OUTPUT_CONSUMER_LOG_GROUP: Final = "ConsumerLogGroupName"
OUTPUT_INGEST_LOG_GROUP: Final = "IngestLogGroupName"
OUTPUT_ACCESS_LOG_GROUP: Final = "ApiAccessLogGroupName"
OUTPUT_TABLE_NAME: Final = "IdempotencyTableName"  # the ledger (make trace reads it)
OUTPUT_STATUS_QUEUE_URL: Final = "StatusQueueUrl"
OUTPUT_STATUS_DLQ_URL: Final = "StatusDeadLetterQueueUrl"
