"""Metrics and log lines for what a delivery held and why a request was turned away.

Log lines carry wamids and masked numbers, never message text or secrets.
"""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.masking import mask_phone
from functions.common.names import (
    DIM_ERROR_CODE,
    DIM_FIELD,
    DIM_STATUS,
    METRIC_DELIVERY_FAILED,
    METRIC_IGNORED_CHANGE,
    METRIC_MALFORMED_UPDATES,
    METRIC_MESSAGES_QUEUED,
    METRIC_STATUS_RECEIVED,
    METRIC_STATUSES_QUEUED,
    METRIC_WEBHOOK_ERROR,
)
from functions.common.observability import count_by_dimension, logger, metrics
from functions.domain.ingest.accept import DeliverySummary
from functions.ingest.http import ErrorAnswer


def report_delivery(summary: DeliverySummary) -> None:
    metrics.add_metric(
        name=METRIC_MESSAGES_QUEUED, unit=MetricUnit.Count, value=len(summary.queued)
    )
    count_by_dimension(METRIC_STATUS_RECEIVED, DIM_STATUS, summary.statuses)
    if summary.statuses_queued:
        metrics.add_metric(
            name=METRIC_STATUSES_QUEUED, unit=MetricUnit.Count, value=summary.statuses_queued
        )
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
    if summary.queued:
        # One line per delivery, not per message (a 1,000-message delivery paid more for its log
        # lines than for its signature, parsing and queueing): enough to find any wamid's delivery.
        logger.info(
            "delivery queued",
            extra={
                "queued": len(summary.queued),
                "wamids": [received.message.wamid for received in summary.queued],
                "message_types": Counter(received.message.type for received in summary.queued),
                "phone_number_ids": sorted(
                    {received.business.phone_number_id for received in summary.queued}
                ),
            },
        )
    for status in summary.failed_statuses:
        logger.warning(
            "outbound message failed",
            extra={
                "wamid": status.wamid,
                "status": status.status,
                "recipient": mask_phone(status.recipient_key),
                "error_codes": [error.code_label for error in status.errors],
                "error_titles": [error.title for error in status.errors],
            },
        )


def report_rejection(error: Exception, answer: ErrorAnswer) -> None:
    """Log (and count, where the table says so) a refused request; never the body."""
    extra: dict[str, object] = {"reason": str(error), "http_status": answer.status}
    if answer.metric is not None and answer.by_error_code:
        error_code = str(getattr(error, "error_code", "unknown"))
        count_by_dimension(answer.metric, DIM_ERROR_CODE, {error_code: 1})
        extra["error_code"] = error_code
    elif answer.metric is not None:
        metrics.add_metric(name=answer.metric, unit=MetricUnit.Count, value=1)
    getattr(logger, answer.log_level)(answer.log_message, extra=extra)
