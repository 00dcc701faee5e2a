"""Metrics and log lines for what a delivery held and why a request was turned away.

Log lines carry wamids and masked numbers, never message text or secrets.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.masking import mask_phone
from functions.common.names import (
    DIM_ERROR_CODE,
    DIM_FIELD,
    DIM_STATUS,
    METRIC_DELIVERY_FAILED,
    METRIC_IGNORED_CHANGE,
    METRIC_INVALID_PAYLOAD,
    METRIC_INVALID_SIGNATURE,
    METRIC_MALFORMED_UPDATES,
    METRIC_MESSAGES_QUEUED,
    METRIC_QUEUE_SEND_FAILED,
    METRIC_STATUS_RECEIVED,
    METRIC_WEBHOOK_ERROR,
)
from functions.common.observability import count_by_dimension, logger, metrics
from functions.common.settings import ConfigurationError
from functions.domain.ingest import DeliverySummary, SignatureRejected
from functions.domain.ports import CredentialsUnavailable, PublishFailed
from functions.domain.webhook import InvalidPayload


def report_delivery(summary: DeliverySummary) -> None:
    metrics.add_metric(
        name=METRIC_MESSAGES_QUEUED, unit=MetricUnit.Count, value=len(summary.queued)
    )
    count_by_dimension(METRIC_STATUS_RECEIVED, DIM_STATUS, summary.statuses)
    count_by_dimension(METRIC_DELIVERY_FAILED, DIM_ERROR_CODE, summary.delivery_failures)
    count_by_dimension(METRIC_WEBHOOK_ERROR, DIM_ERROR_CODE, summary.webhook_errors)
    count_by_dimension(METRIC_IGNORED_CHANGE, DIM_FIELD, summary.ignored_fields)
    if summary.problems:
        metrics.add_metric(
            name=METRIC_MALFORMED_UPDATES, unit=MetricUnit.Count, value=len(summary.problems)
        )
        # Paths only (never values): enough to find the piece in the delivery.
        logger.warning(
            "malformed pieces of a signed delivery were skipped",
            extra={"problems": list(summary.problems[:20]), "count": len(summary.problems)},
        )
    for received in summary.queued:
        logger.info(
            "message queued",
            extra={
                "wamid": received.message.wamid,
                "message_type": received.message.type,
                "sender": mask_phone(received.sender_key),
                "phone_number_id": received.business.phone_number_id,
            },
        )
    for status in summary.failed_statuses:
        logger.warning(
            "outbound message failed",
            extra={
                "wamid": status.wamid,
                "status": status.status,
                "recipient": mask_phone(status.recipient_id),
                "error_codes": [error.code_label for error in status.errors],
                "error_titles": [error.title for error in status.errors],
            },
        )


def report_rejection(error: Exception) -> None:
    if isinstance(error, SignatureRejected):
        metrics.add_metric(name=METRIC_INVALID_SIGNATURE, unit=MetricUnit.Count, value=1)
        logger.warning("webhook rejected", extra={"reason": str(error)})
    elif isinstance(error, InvalidPayload):
        metrics.add_metric(name=METRIC_INVALID_PAYLOAD, unit=MetricUnit.Count, value=1)
        logger.warning("webhook rejected", extra={"reason": str(error)})
    elif isinstance(error, PublishFailed):
        count_by_dimension(METRIC_QUEUE_SEND_FAILED, DIM_ERROR_CODE, {error.error_code: 1})
        logger.error(
            "delivery not queued; Meta will redeliver",
            extra={"reason": str(error), "error_code": error.error_code},
        )
    elif isinstance(error, CredentialsUnavailable | ConfigurationError):
        logger.error("cannot serve webhooks", extra={"reason": str(error)})
    else:
        logger.info("request refused", extra={"reason": str(error)})
