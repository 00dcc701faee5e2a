"""Every name that crosses a boundary: environment variables (the runtime contract,
docs/contract.md), metric names and dimensions, and the service names the functions report under.

The CDK stack, the local pipeline and the tests import these instead of repeating strings, so a
rename is one edit. Importing this module is free: constants only.
"""

from typing import Final

# --- environment variables (fixed by the runtime contract, docs/contract.md) --------------------
ENV_QUEUE_URL: Final = "QUEUE_URL"
ENV_SECRET_ID: Final = "WHATSAPP_SECRET_ID"
ENV_GRAPH_API_URL: Final = "GRAPH_API_URL"
ENV_GRAPH_API_VERSION: Final = "GRAPH_API_VERSION"
ENV_IDEMPOTENCY_TABLE: Final = "IDEMPOTENCY_TABLE"
ENV_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"
# Optional: a reply rules file other than the one shipped in functions/consumer/.
ENV_REPLY_RULES_PATH: Final = "REPLY_RULES_PATH"
# Optional: `module.path:function`, the user's reply handler (docs/reply-handler.md).
ENV_REPLY_HANDLER: Final = "REPLY_HANDLER"
# Optional: the EventBridge bus (name or ARN) the consumer publishes its events to
# (docs/events.md), and how much they say: `minimal` (default) or `full` (phone numbers and
# message content too).
ENV_EVENT_BUS_NAME: Final = "EVENT_BUS_NAME"
ENV_EVENT_DETAIL: Final = "EVENT_DETAIL"
# Optional: > 0, a conversation's first message waits up to this many seconds for the rest of
# its burst, answered once (default 0: every message on its own).
ENV_BURST_WINDOW_SECONDS: Final = "BURST_WINDOW_SECONDS"
MAX_BURST_WINDOW_SECONDS: Final = 120
EVENT_DETAIL_MINIMAL: Final = "minimal"
EVENT_DETAIL_FULL: Final = "full"
# The consumer's own dead letters go here (the inbound queue's FIFO DLQ).
ENV_DEAD_LETTER_QUEUE_URL: Final = "DEAD_LETTER_QUEUE_URL"
# Optional: the standard queue for statuses of our own messages (ingest writes, the consumer
# follows them). Unset: ingest only counts statuses.
ENV_STATUS_QUEUE_URL: Final = "STATUS_QUEUE_URL"
# A message's own failed attempts before the consumer dead-letters it.
ENV_MAX_ATTEMPTS: Final = "MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS: Final = 10

DEFAULT_GRAPH_API_URL: Final = "https://graph.facebook.com"
DEFAULT_GRAPH_API_VERSION: Final = "v25.0"

# --- the secret's JSON keys (docs/contract.md) -------------------------------------------------
SECRET_KEY_APP_SECRET: Final = "appSecret"
SECRET_KEY_VERIFY_TOKEN: Final = "verifyToken"
SECRET_KEY_ACCESS_TOKEN: Final = "accessToken"

# --- observability ------------------------------------------------------------------------------
DEFAULT_METRICS_NAMESPACE: Final = "WhatsAppRelay"
INGEST_SERVICE: Final = "whatsapp-relay-ingest"
CONSUMER_SERVICE: Final = "whatsapp-relay-consumer"

# Dimensions. Every metric also carries Powertools' `service` dimension (one of the services
# above). Phone numbers are never a dimension.
DIM_SERVICE: Final = "service"
DIM_ERROR_CODE: Final = "ErrorCode"  # Meta's error.code, or http_503 / timeout / network / ...
DIM_ERROR_CLASS: Final = "ErrorClass"  # a class of the consumer's error policy (see below)
DIM_STATUS: Final = "Status"  # sent / delivered / read / failed / played
DIM_FIELD: Final = "Field"  # webhook change field that is not `messages`

# Ingest metrics.
METRIC_MESSAGES_QUEUED: Final = "InboundMessagesQueued"  # [service]
METRIC_INVALID_SIGNATURE: Final = "InvalidSignature"  # [service]
METRIC_INVALID_PAYLOAD: Final = "InvalidPayload"  # [service] signed, but not a JSON object
METRIC_MALFORMED_UPDATES: Final = "MalformedUpdates"  # [service] pieces skipped in a delivery
METRIC_QUEUE_SEND_FAILED: Final = "QueueSendFailed"  # [service, ErrorCode]
METRIC_STATUS_RECEIVED: Final = "StatusReceived"  # [service, Status]
METRIC_DELIVERY_FAILED: Final = "DeliveryFailed"  # [service, ErrorCode] failed statuses' errors
METRIC_WEBHOOK_ERROR: Final = "WebhookError"  # [service, ErrorCode] value/message-level errors
METRIC_IGNORED_CHANGE: Final = "IgnoredChange"  # [service, Field]
METRIC_STATUSES_QUEUED: Final = "StatusesQueued"  # [service] put on the status queue

# Consumer metrics.
METRIC_REPLY_SENT: Final = "RepliesSent"  # [service]
METRIC_READ_RECEIPT_SENT: Final = "ReadReceiptsSent"  # [service]
METRIC_GRAPH_API_ERROR: Final = "GraphApiError"  # [service, ErrorCode] every failed call
METRIC_GRAPH_API_ERROR_CLASS: Final = "GraphApiErrorClass"  # [service, ErrorClass]
METRIC_PERMANENT_FAILURE: Final = "PermanentFailures"  # [service, ErrorCode]
METRIC_RETRY_SCHEDULED: Final = "RetriesScheduled"  # [service, ErrorCode]
METRIC_DUPLICATE_SKIPPED: Final = "DuplicatesSkipped"  # [service]
METRIC_POISON_RECORD: Final = "PoisonRecords"  # [service] records that could not be parsed
METRIC_DEAD_LETTERED: Final = "DeadLettered"  # [service, ErrorCode] put on the DLQ by the consumer
METRIC_TEMPLATE_FALLBACK: Final = "TemplateFallbacks"  # [service] 131047 answered by a template
# [service] a redelivered message whose earlier attempt died mid-send: not sent again.
METRIC_REPLY_UNCERTAIN: Final = "RepliesUncertain"
METRIC_END_TO_END_LATENCY: Final = (
    "EndToEndLatency"  # [service] ms, webhook receipt -> reply accepted
)
# Statuses of our replies (the consumer follows them; docs/contract.md, "Statuses").
METRIC_REPLIES_DELIVERED: Final = "RepliesDelivered"  # [service] first delivered (or read)
METRIC_REPLIES_READ: Final = "RepliesRead"  # [service] first read (or played)
# [service] ms, the customer's message (Meta's timestamp) -> its reply delivered (Meta's): the
# latency a customer feels, to the second.
METRIC_REPLY_DELIVERY_LATENCY: Final = "ReplyDeliveryLatency"
METRIC_LATE_FAILURES: Final = "LateFailures"  # [service, ErrorCode] a reply's `failed` status
METRIC_LATE_FAILURE_CLASS: Final = "LateFailureClass"  # [service, ErrorClass] the same, by class
METRIC_LATE_FALLBACKS: Final = "LateFallbacksSent"  # [service] template after a late 131047
METRIC_REPLIES_RESENT: Final = "RepliesResent"  # [service] after a late transient failure
METRIC_STATUSES_UNMATCHED: Final = "StatusesUnmatched"  # [service] no reply of ours: dropped
METRIC_HANDLER_LATENCY: Final = "HandlerLatency"  # [service] ms, the reply handler's own time
METRIC_EVENTS_PUBLISHED: Final = "EventsPublished"  # [service] accepted by the event bus
# [service] messages answered together with an earlier one of their conversation (a burst).
METRIC_ANSWERED_IN_BURST: Final = "AnsweredInBurst"
# [service] (alarmed) and [service, ErrorCode]: events the bus did not take, even on a retry.
METRIC_EVENTS_NOT_PUBLISHED: Final = "EventsNotPublished"

# Error classes of the consumer's policy table; `auth_config` and `quality_policy` page someone.
ERROR_CLASS_RATE_LIMIT: Final = "rate_limit"
ERROR_CLASS_PAIR_RATE_LIMIT: Final = "pair_rate_limit"
ERROR_CLASS_TRANSIENT: Final = "transient"
ERROR_CLASS_OUTAGE: Final = "outage"  # the Graph API itself unreachable: 5xx, timeouts, resets
ERROR_CLASS_AUTH_CONFIG: Final = "auth_config"
ERROR_CLASS_QUALITY_POLICY: Final = "quality_policy"
ERROR_CLASS_RECIPIENT: Final = "recipient"
ERROR_CLASS_BAD_REQUEST: Final = "bad_request"
ERROR_CLASS_UNKNOWN: Final = "unknown"
