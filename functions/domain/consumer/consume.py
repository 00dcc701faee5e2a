"""The consumer's use case: a batch of queued records in, one outcome per record out.

Per record (docs/contract.md, "Consumer"): skip it if it was already answered (same wamid, any
delivery, 8 days); mark it read (with "typing…" when a reply is coming); send the reply the rules
choose, from the receiving number, threaded on the wamid; turn every Graph API failure into the
action the error policy names. A failed read receipt is recorded, never stops the reply.

Per batch: FIFO semantics per conversation (`MessageGroupId`). Within a group records run in
order, and once one fails it and every later record of the group are reported as failures
without being processed (an unreadable record excepted: it fails alone); different groups run
concurrently. Failed records get their visibility
timeout raised by the policy's backoff — the function never sleeps.

"Never twice" has two guards (see docs/decisions.md):
- `OncePerMessage` (Powertools Idempotency): a completed wamid is replayed, not redone; a wamid
  in progress elsewhere becomes a short retry, not a second send.
- `ReplyLedger`: a claim written before the send and dropped only when the Graph API answered
  with an error. A process that dies between claim and answer leaves the claim behind, so the
  redelivery does not send again (it records an "uncertain" reply instead).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from functions.domain.consumer.backoff import delay_seconds
from functions.domain.consumer.error_policy import (
    CODE_IN_PROGRESS,
    CODE_POISON,
    CODE_STORE_UNAVAILABLE,
    WINDOW_CLOSED_CODE,
    Action,
    ErrorClassPolicy,
    classify,
)
from functions.domain.consumer.ports import (
    AlreadyInProgress,
    GraphApi,
    GraphApiError,
    OncePerMessage,
    ReplyLedger,
    StoreUnavailable,
    VisibilityChange,
    VisibilityControl,
)
from functions.domain.consumer.reply_rules import ReplyDecision, ReplyRules
from functions.domain.whatsapp.outbound import (
    OutboundMessage,
    Reaction,
    Recipient,
    mark_read_body,
    send_body,
)
from functions.domain.whatsapp.queued_record import QueuedRecord, UnreadableRecord

CODE_INTERNAL_ERROR = "internal_error"
CODE_TIME_BUDGET = "time_budget"  # not started: too little time left in the invocation
CODE_HELD_BACK = "held_back"  # not started: an earlier record of its conversation failed
# Visibility for records held back behind a failed record of their conversation: visible again
# at once, so the failed record's own backoff alone decides when the conversation resumes (FIFO
# delivers nothing of a group while its failed head is invisible).
HELD_BACK_VISIBILITY_SECONDS = 0


class Result(Enum):
    REPLIED = "replied"
    NO_REPLY = "no_reply"  # rules chose not to answer (reaction, own number, no default...)
    PERMANENT = "permanent_failure"  # recorded, not retried
    DUPLICATE = "duplicate"  # already answered earlier
    UNCERTAIN = "uncertain"  # an earlier attempt died mid-send; not sent again
    RETRY = "retry"  # reported in batchItemFailures with a backoff
    HELD_BACK = "held_back"  # an earlier record of its conversation failed (or no time left)
    POISON = "poison"  # unreadable record
    INTERNAL_ERROR = "internal_error"  # a bug: reported as failure, logged with traceback

    @property
    def failed(self) -> bool:
        return self in _FAILED_RESULTS


_FAILED_RESULTS = frozenset({Result.RETRY, Result.HELD_BACK, Result.POISON, Result.INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """One SQS record, as the entry point extracts it from the event."""

    message_id: str
    body: str
    group_id: str
    receive_count: int
    receipt_handle: str = ""
    event_source_arn: str = ""


@dataclass(frozen=True, slots=True)
class CallFailure:
    step: str  # "read", "send" or "fallback"
    code: str
    error_class: str
    action: Action
    http_status: int | None = None
    fbtrace_id: str | None = None
    details: str = ""


@dataclass(slots=True)
class RecordOutcome:
    record: InboxRecord
    result: Result = Result.NO_REPLY
    wamid: str | None = None
    message_type: str | None = None
    sender: str = ""  # raw: telemetry masks it before logging
    decision: str = ""
    failures: list[CallFailure] = field(default_factory=list)
    read_receipt_sent: bool = False
    reply_sent: bool = False
    reply_type: str | None = None
    reply_wamid: str | None = None
    template_fallback: bool = False
    latency_ms: float | None = None
    retry_code: str | None = None
    retry_class: str | None = None
    delay_seconds: int | None = None
    permanent_code: str | None = None
    claim_release_failed: bool = False
    reason: str = ""
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.result.failed


@dataclass(frozen=True, slots=True)
class BatchResult:
    outcomes: tuple[RecordOutcome, ...]
    visibility_not_changed: tuple[str, ...] = ()

    def batch_item_failures(self) -> list[dict[str, str]]:
        return [
            {"itemIdentifier": outcome.record.message_id}
            for outcome in self.outcomes
            if outcome.failed
        ]


@dataclass(frozen=True, slots=True)
class Consumer:
    """Everything the use case needs from outside, injected."""

    graph: GraphApi
    once: OncePerMessage
    ledger: ReplyLedger
    visibility: VisibilityControl
    rules: ReplyRules
    clock: Callable[[], datetime]
    remaining_seconds: Callable[[], float] = lambda: float("inf")
    random_unit: Callable[[], float] = random.random
    max_workers: int = 10
    # A conversation's second and later records start only with at least this much time left
    # (or twice its slowest record so far, if more).
    min_seconds_to_start: float = 0.0


class _RetryLater(Exception):
    def __init__(self, failure: CallFailure, policy: ErrorClassPolicy, retry_after: float | None):
        super().__init__(failure.code)
        self.failure = failure
        self.policy = policy
        self.retry_after = retry_after


# --- the batch --------------------------------------------------------------------------------


def consume_batch(records: Sequence[InboxRecord], consumer: Consumer) -> BatchResult:
    groups: dict[str, list[InboxRecord]] = {}
    for record in records:
        groups.setdefault(record.group_id or record.message_id, []).append(record)
    if not groups:
        return BatchResult(outcomes=())
    workers = max(1, min(consumer.max_workers, len(groups)))
    if workers == 1:
        results = [_consume_group(group, consumer) for group in groups.values()]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="group") as pool:
            results = list(pool.map(lambda g: _consume_group(g, consumer), groups.values()))
    by_id = {outcome.record.message_id: outcome for group in results for outcome in group}
    outcomes = tuple(by_id[record.message_id] for record in records)
    changes = [
        VisibilityChange(
            message_id=o.record.message_id,
            receipt_handle=o.record.receipt_handle,
            event_source_arn=o.record.event_source_arn,
            timeout_seconds=o.delay_seconds,
        )
        for o in outcomes
        if o.failed and o.delay_seconds is not None and o.record.receipt_handle
    ]
    not_changed = consumer.visibility.change(changes) if changes else []
    return BatchResult(outcomes=outcomes, visibility_not_changed=tuple(not_changed))


def _consume_group(records: Sequence[InboxRecord], consumer: Consumer) -> list[RecordOutcome]:
    outcomes: list[RecordOutcome] = []
    blocker: tuple[str, str] | None = None  # (code, reason)
    slowest_seconds = 0.0
    for index, record in enumerate(records):
        # The first record of a conversation always runs (an invocation starts with its whole
        # timeout); a later one only when twice the slowest so far still fits, so a slow Graph
        # API cannot push a send past the function's timeout.
        budget = max(consumer.min_seconds_to_start, 2 * slowest_seconds)
        if blocker is None and index > 0 and consumer.remaining_seconds() < budget:
            blocker = (CODE_TIME_BUDGET, "too little time left in this invocation")
        if blocker is not None:
            outcomes.append(
                RecordOutcome(
                    record=record,
                    result=Result.HELD_BACK,
                    retry_code=blocker[0],
                    reason=blocker[1],
                    delay_seconds=HELD_BACK_VISIBILITY_SECONDS,
                )
            )
            continue
        started = consumer.clock()
        outcome = _guarded(record, consumer)
        slowest_seconds = max(slowest_seconds, (consumer.clock() - started).total_seconds())
        outcomes.append(outcome)
        # An unreadable record is nobody's message: it goes to the DLQ on its own and never
        # fails the rest of the batch (docs/contract.md), its own conversation included.
        if outcome.failed and outcome.result is not Result.POISON:
            blocker = (CODE_HELD_BACK, f"behind {record.message_id} of the same conversation")
    return outcomes


def _guarded(record: InboxRecord, consumer: Consumer) -> RecordOutcome:
    """`consume_record`, with a bug in it turned into a failed record (logged with traceback by
    telemetry) instead of a failed batch."""
    try:
        return consume_record(record, consumer)
    except Exception as error:  # noqa: BLE001 - reported, with traceback, by telemetry
        outcome = RecordOutcome(record=record, result=Result.INTERNAL_ERROR, error=error)
        _schedule(outcome, CODE_INTERNAL_ERROR, classify(CODE_INTERNAL_ERROR), None, consumer)
        return outcome


# --- one record -------------------------------------------------------------------------------


def consume_record(record: InboxRecord, consumer: Consumer) -> RecordOutcome:
    outcome = RecordOutcome(record=record)
    try:
        queued = QueuedRecord.from_json(record.body)
    except UnreadableRecord as error:
        outcome.result = Result.POISON
        outcome.reason = str(error)
        _schedule(outcome, CODE_POISON, classify(CODE_POISON), None, consumer)
        return outcome
    received = queued.received
    outcome.wamid = queued.wamid
    outcome.message_type = received.message.type
    outcome.sender = received.sender_key
    decision = consumer.rules.decide(received)
    outcome.decision = decision.reason

    def work() -> Mapping[str, Any]:
        _respond(queued, decision, consumer, outcome)
        return {"result": outcome.result.value, "replyId": outcome.reply_wamid}

    try:
        done = consumer.once.run(queued.wamid, work)
    except _RetryLater as retry:
        outcome.result = Result.RETRY
        _schedule(outcome, retry.failure.code, retry.policy, retry.retry_after, consumer)
    except AlreadyInProgress:
        outcome.result = Result.RETRY
        _schedule(outcome, CODE_IN_PROGRESS, classify(CODE_IN_PROGRESS), None, consumer)
    except StoreUnavailable as error:
        outcome.result = Result.RETRY
        outcome.reason = str(error)
        _schedule(outcome, CODE_STORE_UNAVAILABLE, classify(CODE_STORE_UNAVAILABLE), None, consumer)
    else:
        if done.replayed:
            outcome.result = Result.DUPLICATE
    return outcome


def _respond(
    queued: QueuedRecord, decision: ReplyDecision, consumer: Consumer, outcome: RecordOutcome
) -> None:
    received = queued.received
    wamid = queued.wamid
    phone_number_id = received.business.phone_number_id
    reply = decision.reply
    typing = (
        reply is not None and consumer.rules.typing_indicator and not isinstance(reply, Reaction)
    )
    try:
        consumer.graph.mark_read(phone_number_id, mark_read_body(wamid, typing_indicator=typing))
        outcome.read_receipt_sent = True
    except GraphApiError as error:
        outcome.failures.append(_failure("read", error))  # recorded; the reply still goes out

    if reply is None:
        outcome.result = Result.NO_REPLY
        return
    if not consumer.ledger.claim(wamid):
        outcome.result = Result.UNCERTAIN
        return
    try:
        reply_id = _send(phone_number_id, decision.recipient, reply, wamid, consumer)
        outcome.reply_type = reply.type
    except GraphApiError as error:
        failure = _failure("send", error)
        outcome.failures.append(failure)
        template = consumer.rules.fallback_template
        if failure.code != WINDOW_CLOSED_CODE or template is None:
            _settle(failure, error, wamid, consumer, outcome)
            return
        try:
            reply_id = _send(phone_number_id, decision.recipient, template, wamid, consumer)
        except GraphApiError as fallback_error:
            fallback_failure = _failure("fallback", fallback_error)
            outcome.failures.append(fallback_failure)
            _settle(fallback_failure, fallback_error, wamid, consumer, outcome)
            return
        outcome.template_fallback = True
        outcome.reply_type = template.type
    outcome.reply_sent = True
    outcome.reply_wamid = reply_id
    outcome.latency_ms = max(0.0, (consumer.clock() - queued.received_at).total_seconds() * 1000)
    outcome.result = Result.REPLIED


def _send(
    phone_number_id: str,
    recipient: Recipient | None,
    message: OutboundMessage,
    wamid: str,
    consumer: Consumer,
) -> str | None:
    return consumer.graph.send(phone_number_id, send_body(recipient, message, reply_to=wamid))


def _settle(
    failure: CallFailure,
    error: GraphApiError,
    wamid: str,
    consumer: Consumer,
    outcome: RecordOutcome,
) -> None:
    """The send was refused: drop the claim, then record it (permanent) or retry later."""
    try:
        consumer.ledger.release(wamid)
    except StoreUnavailable:
        # The retry will find the claim and not resend: reported as uncertain, never doubled.
        outcome.claim_release_failed = True
    policy = classify(failure.code, is_transient=error.is_transient)
    if policy.action is Action.PERMANENT:
        outcome.result = Result.PERMANENT
        outcome.permanent_code = failure.code
        return
    raise _RetryLater(failure, policy, error.retry_after_seconds)


def _failure(step: str, error: GraphApiError) -> CallFailure:
    policy = classify(error.code, is_transient=error.is_transient)
    return CallFailure(
        step=step,
        code=error.code,
        error_class=policy.name,
        action=policy.action,
        http_status=error.http_status,
        fbtrace_id=error.fbtrace_id,
        details=error.details,
    )


def _schedule(
    outcome: RecordOutcome,
    code: str,
    policy: ErrorClassPolicy,
    retry_after: float | None,
    consumer: Consumer,
) -> None:
    outcome.retry_code = code
    outcome.retry_class = policy.name
    backoff = policy.backoff
    if backoff is None:  # a permanent class reached a retry path: retry like an unknown code
        backoff = classify("").backoff
    assert backoff is not None
    outcome.delay_seconds = delay_seconds(
        backoff,
        outcome.record.receive_count,
        retry_after_seconds=retry_after,
        random_unit=consumer.random_unit,
    )
