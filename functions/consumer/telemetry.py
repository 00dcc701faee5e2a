"""Metrics and log lines for a consumed batch, emitted from the handler's thread.

Every failure emits a metric with an `ErrorCode` dimension. Log lines carry the wamid and the SQS
`messageId`, numbers masked; never message text, never a token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.masking import mask_phone
from functions.common.names import (
    DIM_ERROR_CLASS,
    DIM_ERROR_CODE,
    METRIC_ANSWERED_IN_BURST,
    METRIC_DEAD_LETTERED,
    METRIC_DUPLICATE_SKIPPED,
    METRIC_END_TO_END_LATENCY,
    METRIC_EVENTS_NOT_PUBLISHED,
    METRIC_EVENTS_PUBLISHED,
    METRIC_GRAPH_API_ERROR,
    METRIC_GRAPH_API_ERROR_CLASS,
    METRIC_HANDLER_LATENCY,
    METRIC_LATE_FAILURE_CLASS,
    METRIC_LATE_FAILURES,
    METRIC_LATE_FALLBACKS,
    METRIC_PERMANENT_FAILURE,
    METRIC_POISON_RECORD,
    METRIC_READ_RECEIPT_SENT,
    METRIC_REPLIES_DELIVERED,
    METRIC_REPLIES_READ,
    METRIC_REPLIES_RESENT,
    METRIC_REPLY_DELIVERY_LATENCY,
    METRIC_REPLY_SENT,
    METRIC_REPLY_UNCERTAIN,
    METRIC_RETRY_SCHEDULED,
    METRIC_STATUSES_UNMATCHED,
    METRIC_TEMPLATE_FALLBACK,
)
from functions.common.observability import count_by_dimension, logger, metrics
from functions.domain.consumer.consume import BatchResult, RecordOutcome, Result
from functions.domain.consumer.error_policy import CODE_HANDLER_ERROR, CODE_HANDLER_TIMEOUT
from functions.domain.consumer.statuses import (
    FALLBACK,
    FollowUpResult,
    StatusOutcome,
    StatusResult,
    reply_state,
)

CODE_CONFIGURATION = "configuration"

_COUNTED_RESULTS = {
    Result.DUPLICATE: METRIC_DUPLICATE_SKIPPED,
    Result.IN_BURST: METRIC_ANSWERED_IN_BURST,
}

# result -> (log level, message). Records that failed a call but are done log at WARNING.
_LOG_LINES = {
    Result.INTERNAL_ERROR: ("error", "record failed on an unexpected error"),
    Result.DEAD_LETTERED: ("error", "record put on the dead-letter queue"),
    Result.STALE_COPY: ("info", "a copy of a dead-lettered message; dropped"),
    Result.PERMANENT: ("warning", "reply refused permanently; not retried"),
    Result.UNCERTAIN: (
        "warning",
        "an earlier attempt died while sending this reply; not sending it twice",
    ),
    Result.RETRY: ("warning", "record will be retried"),
    Result.HELD_BACK: ("info", "record held back behind its conversation"),
    Result.WAITING: ("info", "first of a burst: waiting for the rest of it"),
    Result.IN_BURST: ("info", "answered as part of its burst"),
}


def report_batch(result: BatchResult) -> None:
    graph_errors: Counter[str] = Counter()
    graph_error_classes: Counter[str] = Counter()
    permanent: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    dead_lettered: Counter[str] = Counter()
    unpublished: Counter[str] = Counter()
    totals = _report_statuses(result, graph_errors, graph_error_classes)
    for outcome in result.outcomes:
        totals[METRIC_EVENTS_PUBLISHED] += outcome.events_published
        totals[METRIC_EVENTS_NOT_PUBLISHED] += len(outcome.events_unpublished)
        unpublished.update(failure.error_code for failure in outcome.events_unpublished)
        graph_errors.update(failure.code for failure in outcome.failures)
        graph_error_classes.update(failure.error_class for failure in outcome.failures)
        totals[METRIC_READ_RECEIPT_SENT] += outcome.read_receipt_sent
        totals[METRIC_REPLY_SENT] += outcome.replies_sent
        totals[METRIC_TEMPLATE_FALLBACK] += outcome.template_fallback
        totals[METRIC_POISON_RECORD] += outcome.unreadable
        # Per reply left unsent because an earlier run may have sent it (of a list, some may be).
        totals[METRIC_REPLY_UNCERTAIN] += outcome.uncertain_slots
        if outcome.dead_letter is not None:
            dead_lettered[outcome.dead_letter.error_code] += 1
        if outcome.result in _COUNTED_RESULTS:
            totals[_COUNTED_RESULTS[outcome.result]] += 1
        if outcome.permanent_code is not None:
            permanent[outcome.permanent_code] += 1
        if outcome.retry_code is not None:
            retries[outcome.retry_code] += 1
        if outcome.latency_ms is not None:
            metrics.add_metric(
                name=METRIC_END_TO_END_LATENCY,
                unit=MetricUnit.Milliseconds,
                value=outcome.latency_ms,
            )
        if outcome.handler_latency_ms is not None:
            metrics.add_metric(
                name=METRIC_HANDLER_LATENCY,
                unit=MetricUnit.Milliseconds,
                value=outcome.handler_latency_ms,
            )
        _log(outcome)
        if outcome.events_unpublished:
            logger.warning(
                "events not published to the bus; the reply is unaffected",
                extra={
                    "sqs_message_id": outcome.record.message_id,
                    "wamid": outcome.wamid,
                    "event_ids": [f.event.event_id for f in outcome.events_unpublished],
                    "error_codes": sorted({f.error_code for f in outcome.events_unpublished}),
                },
            )
    for name, count in totals.items():
        if count:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    count_by_dimension(METRIC_GRAPH_API_ERROR, DIM_ERROR_CODE, graph_errors)
    count_by_dimension(METRIC_GRAPH_API_ERROR_CLASS, DIM_ERROR_CLASS, graph_error_classes)
    count_by_dimension(METRIC_PERMANENT_FAILURE, DIM_ERROR_CODE, permanent)
    count_by_dimension(METRIC_RETRY_SCHEDULED, DIM_ERROR_CODE, retries)
    count_by_dimension(METRIC_DEAD_LETTERED, DIM_ERROR_CODE, dead_lettered)
    count_by_dimension(METRIC_EVENTS_NOT_PUBLISHED, DIM_ERROR_CODE, unpublished)
    if result.visibility_not_changed:
        logger.warning(
            "visibility timeout not raised; the records return after the queue's default",
            extra={"sqs_message_ids": list(result.visibility_not_changed)},
        )


def _report_statuses(
    result: BatchResult, graph_errors: Counter[str], graph_error_classes: Counter[str]
) -> Counter[str]:
    """The statuses' own metrics (late failures, the delivery latency); their counts returned,
    their follow-ups' Graph API errors added to the batch's."""
    late_failures: Counter[str] = Counter()
    late_failure_classes: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for outcome in result.outcomes:
        followed = outcome.status
        if followed is None:
            continue
        graph_errors.update(failure.code for failure in followed.follow_up_failures)
        graph_error_classes.update(f.error_class for f in followed.follow_up_failures)
        if followed.first_failure and followed.error_code and followed.error_class:
            late_failures[followed.error_code] += 1
            late_failure_classes[followed.error_class] += 1
        totals.update(_status_counts(followed))
        if followed.delivery_latency_ms is not None:
            metrics.add_metric(
                name=METRIC_REPLY_DELIVERY_LATENCY,
                unit=MetricUnit.Milliseconds,
                value=followed.delivery_latency_ms,
            )
    count_by_dimension(METRIC_LATE_FAILURES, DIM_ERROR_CODE, late_failures)
    count_by_dimension(METRIC_LATE_FAILURE_CLASS, DIM_ERROR_CLASS, late_failure_classes)
    return totals


def _status_counts(followed: StatusOutcome) -> Counter[str]:
    """Each effect of a status counted once: the ledger write said it was the first."""
    counts: Counter[str] = Counter()
    counts[METRIC_REPLIES_DELIVERED] += followed.first_delivered
    counts[METRIC_REPLIES_READ] += followed.first_read
    dropped = followed.result is StatusResult.UNMATCHED and followed.retry is None
    counts[METRIC_STATUSES_UNMATCHED] += dropped
    counts[METRIC_REPLY_UNCERTAIN] += followed.follow_up is FollowUpResult.UNCERTAIN
    if followed.follow_up is FollowUpResult.SENT:
        kind = followed.follow_up_kind
        counts[METRIC_LATE_FALLBACKS if kind == FALLBACK else METRIC_REPLIES_RESENT] += 1
    return counts


# The user's reply handler failed: said as such, so its owner finds it among the retries.
_HANDLER_LOG_LINES = {
    CODE_HANDLER_ERROR: ("error", "the reply handler raised; the message will be retried"),
    CODE_HANDLER_TIMEOUT: (
        "warning",
        "the reply handler did not return in time; the message will be retried",
    ),
}


def _log(outcome: RecordOutcome) -> None:
    if outcome.status is not None:
        _log_status(outcome, outcome.status)
        return
    level, message = _LOG_LINES.get(
        outcome.result,
        ("warning", "record done with a failed call")
        if outcome.failures
        else ("info", "record done"),
    )
    if outcome.result is Result.RETRY:
        level, message = _HANDLER_LOG_LINES.get(outcome.retry_code or "", (level, message))
    extra = _fields(outcome)
    # A bug, or what the reply handler raised: with its traceback.
    getattr(logger, level)(message, extra=extra, exc_info=outcome.error)


def _fields(outcome: RecordOutcome) -> dict[str, object]:
    optional: dict[str, object] = {
        "sender": mask_phone(outcome.sender) if outcome.sender else None,
        "message_type": outcome.message_type,
        "decision": outcome.decision or None,
        "read_receipt": "sent"
        if outcome.read_receipt_sent
        else ("failed" if any(f.step == "read" for f in outcome.failures) else None),
        "reply_wamid": outcome.reply_wamid,
        "reply_type": outcome.reply_type,
        "template_fallback": outcome.template_fallback or None,
        "latency_ms": None if outcome.latency_ms is None else round(outcome.latency_ms, 1),
        "handler_latency_ms": None
        if outcome.handler_latency_ms is None
        else round(outcome.handler_latency_ms, 1),
        "error_code": outcome.retry_code or outcome.permanent_code,
        "error_class": outcome.retry_class,
        "visibility_timeout_seconds": outcome.delay_seconds,
        "reason": outcome.reason or None,
        "attempts": outcome.attempts,
        "dead_letter_reason": outcome.dead_letter.reason if outcome.dead_letter else None,
        "uncertain_slots": outcome.uncertain_slots or None,
        "burst_of": outcome.burst_of,
        "burst_size": outcome.burst_size if outcome.burst_size > 1 else None,
        "store_write_failed": outcome.store_write_failed or None,
        "graph_errors": [
            {
                "step": f.step,
                "code": f.code,
                "class": f.error_class,
                "http_status": f.http_status,
                "fbtrace_id": f.fbtrace_id,
                "details": f.details,
            }
            for f in outcome.failures
        ]
        or None,
    }
    return {
        "sqs_message_id": outcome.record.message_id,
        "wamid": outcome.wamid,
        "result": outcome.result.value,
        "receive_count": outcome.record.receive_count,
    } | {key: value for key, value in optional.items() if value is not None}


def _log_status(outcome: RecordOutcome, followed: StatusOutcome) -> None:
    """One line per status record. A change of the reply's state is the "reply status changed"
    line; a late failure is a WARNING; a status of no reply of ours is INFO."""
    reply = followed.reply
    if followed.result is StatusResult.UNMATCHED:
        level, message = "info", "status of no reply we know"
    elif followed.follow_up is not None and followed.follow_up is not FollowUpResult.TAKEN:
        level, message = "warning", "reply failed after it was sent"
    elif followed.change is not None:
        level, message = "info", "reply status changed"
    else:
        level, message = "info", "reply status already known"
    optional: dict[str, object] = {
        "status": followed.status,
        "status_at": _iso(followed.at),
        "reply_kind": reply.reply.kind if reply else None,
        "reply_state": followed.change.current if followed.change else None,
        "previous_state": followed.change.previous if followed.change else None,
        "known_state": reply_state(reply.statuses) if reply and not followed.change else None,
        "recipient": _masked_recipient(reply.reply.recipient) if reply else None,
        "phone_number_id": reply.reply.phone_number_id if reply else None,
        "delivery_latency_ms": None
        if followed.delivery_latency_ms is None
        else round(followed.delivery_latency_ms),
        "error_code": outcome.retry_code or followed.error_code,
        "error_class": outcome.retry_class or followed.error_class,
        "follow_up": followed.follow_up.value if followed.follow_up else None,
        "follow_up_kind": followed.follow_up_kind,
        "follow_up_wamid": followed.follow_up_wamid,
        "follow_up_reason": followed.follow_up_reason or None,
        "visibility_timeout_seconds": outcome.delay_seconds,
        "reason": outcome.reason or None,
        "store_write_failed": outcome.store_write_failed or None,
        "graph_errors": [
            {
                "step": "follow_up",
                "code": f.code,
                "class": f.error_class,
                "http_status": f.http_status,
                "fbtrace_id": f.fbtrace_id,
                "details": f.details,
            }
            for f in followed.follow_up_failures
        ]
        or None,
    }
    extra = {
        "sqs_message_id": outcome.record.message_id,
        "wamid": outcome.wamid,
        "reply_wamid": followed.reply_wamid,
        "result": outcome.result.value,
        "receive_count": outcome.record.receive_count,
    } | {key: value for key, value in optional.items() if value is not None}
    getattr(logger, level)(message, extra=extra)


def _masked_recipient(recipient: Mapping[str, str]) -> str:
    return mask_phone(recipient.get("to") or recipient.get("recipient") or "")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def report_unusable_configuration(error: Exception) -> None:
    """The function cannot run at all (settings or reply rules): the whole batch is retried."""
    count_by_dimension(METRIC_RETRY_SCHEDULED, DIM_ERROR_CODE, {CODE_CONFIGURATION: 1})
    logger.error(
        "consumer misconfigured; the batch is retried until this is fixed",
        extra={"reason": str(error), "error_code": CODE_CONFIGURATION},
        # A reply handler that does not import: its own traceback says where.
        exc_info=error if error.__cause__ is not None else None,
    )
