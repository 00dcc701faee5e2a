"""Names and settings shared by the CDK stack, the local pipeline and the tests.

Pure constants (no aws_cdk import), so the local pipeline can create the very same queues,
table and secret that the stack creates without loading CDK.
"""

from typing import Final

STACK_NAME: Final = "WhatsAppRelay"

# Function entry points (runtime contract) and the package directory shipped as their code.
INGEST_HANDLER: Final = "functions.ingest.app.handler"
CONSUMER_HANDLER: Final = "functions.consumer.app.handler"

# Resource names used where a fixed name is needed (the local pipeline; CDK lets CloudFormation
# name the deployed resources, so several stacks can live in one account).
INBOUND_QUEUE_NAME: Final = "whatsapp-relay-inbound.fifo"
DEAD_LETTER_QUEUE_NAME: Final = "whatsapp-relay-inbound-dlq.fifo"
IDEMPOTENCY_TABLE_NAME: Final = "whatsapp-relay-idempotency"
SECRET_NAME: Final = "whatsapp-relay/credentials"  # noqa: S105 - a name, not a secret

# Lambda sizing, with units in the names.
INGEST_MEMORY_MB: Final = 256
INGEST_TIMEOUT_SECONDS: Final = 10
CONSUMER_MEMORY_MB: Final = 512
CONSUMER_TIMEOUT_SECONDS: Final = 30

# Queueing. SQS wants the visibility timeout at least 6x the consumer's timeout.
VISIBILITY_TIMEOUT_SECONDS: Final = 6 * CONSUMER_TIMEOUT_SECONDS
DEFAULT_MAX_RECEIVE_COUNT: Final = 8
DLQ_RETENTION_DAYS: Final = 14
INBOUND_RETENTION_DAYS: Final = 4
CONSUMER_BATCH_SIZE: Final = 10
DEFAULT_MAX_CONCURRENCY: Final = 5

# Idempotency table schema (contract).
IDEMPOTENCY_PARTITION_KEY: Final = "id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expiration"
