"""The consumer's use case: a batch of queued records in, one outcome per record out.

Per record (docs/contract.md, "Consumer"): take the message in the ledger (a duplicate, a
message another execution holds, or a stale copy of a dead-lettered one stops here); mark it read
(with "typing…" when a reply is coming); send the replies the rules choose, from the receiving
number, the first threaded on the wamid; turn every Graph API failure into the action the error
policy names. A failed read receipt is recorded, never stops the reply.

Per batch: FIFO semantics per conversation (`MessageGroupId`). Within a group records run in
order, and once one fails it and every later record of the group are reported as failures
without being processed; different groups run concurrently. Failed records get their
visibility timeout raised by the policy's backoff — the function never sleeps.

Retry budgets are the message's own: the ledger counts a message's failed attempts, never the
receives it spent held back behind a neighbour, and the backoff grows with that count. When a
message's own attempts run out (or a record cannot be read at all) the consumer puts it on the
dead-letter queue itself, with the reason as message attributes, and reports it done. SQS's
`maxReceiveCount` stays as the backstop for runs that die (docs/decisions.md).

Status records (what Meta says became of our replies) are followed by `statuses.py`; this
module only hands them over (`_follow_status`).

"Never twice": the slot of a reply is claimed in the ledger right before its send and recorded
as sent right after it, in the same write that remembers the reply for its statuses. A run that
dies between the two leaves the claim behind; the next attempt does not send that slot again
(an "uncertain" reply, counted and alarmed) — a missing reply is visible, a doubled one reaches
the customer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from functions.common.names import DEFAULT_MAX_ATTEMPTS
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
    BeginResult,
    DeadLetter,
    DeadLetterFailed,
    DeadLetters,
    FailedAttempt,
    Finished,
    GraphApi,
    GraphApiError,
    Ledger,
    MessageHistory,
    MessageStatus,
    SentReply,
    StoreUnavailable,
    VisibilityChange,
    VisibilityControl,
)
from functions.domain.consumer.reply_rules import ReplyDecision, ReplyRules
from functions.domain.consumer.statuses import StatusOutcome, follow_status
from functions.domain.whatsapp.outbound import (
    InvalidOutbound,
    OutboundMessage,
    Reaction,
    Template,
    mark_read_body,
    send_body,
)
from functions.domain.whatsapp.queued_record import (
    QueuedRecord,
    QueuedStatus,
    UnreadableRecord,
    read_record,
)

CODE_INTERNAL_ERROR = "internal_error"
CODE_INVALID_OUTBOUND = "invalid_outbound"  # a reply Meta would refuse as built: permanent
CODE_TIME_BUDGET = "time_budget"  # not started: too little time left in the invocation
CODE_HELD_BACK = "held_back"  # not started: an earlier record of its conversation failed
# Visibility for records held back behind a failed record of their conversation: visible again
# at once, so the failed record's own backoff alone decides when the conversation resumes (FIFO
# delivers nothing of a group while its failed head is invisible).
HELD_BACK_VISIBILITY_SECONDS = 0
# Meta's customer-service window: free-form replies only within 24 h of the user's message.
SERVICE_WINDOW = timedelta(hours=24)
REASON_ATTEMPTS_EXHAUSTED = "attempts_exhausted"
REASON_UNREADABLE = "unreadable"


class Result(Enum):
    REPLIED = "replied"
    NO_REPLY = "no_reply"  # rules chose not to answer (reaction, own number, no default...)
    PERMANENT = "permanent_failure"  # recorded, not retried
    DUPLICATE = "duplicate"  # already answered earlier
    UNCERTAIN = "uncertain"  # an earlier attempt died mid-send; not sent again
    DEAD_LETTERED = "dead_lettered"  # on the DLQ now, with its reason
    STALE_COPY = "stale_copy"  # a copy of a message that is already on the DLQ
    RETRY = "retry"  # reported in batchItemFailures with a backoff
    HELD_BACK = "held_back"  # an earlier record of its conversation failed (or no time left)
    INTERNAL_ERROR = "internal_error"  # a bug: reported as failure, logged with traceback
    STATUS = "status"  # a status of one of our replies, followed (`RecordOutcome.status`)

    @property
    def failed(self) -> bool:
        return self in _FAILED_RESULTS


_FAILED_RESULTS = frozenset({Result.RETRY, Result.HELD_BACK, Result.INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """One SQS record, as the entry point extracts it from the event."""

    message_id: str
    body: str
    group_id: str
    receive_count: int
    receipt_handle: str = ""
    event_source_arn: str = ""
    enqueued_at: float | None = None  # epoch seconds SQS accepted this copy (SentTimestamp)


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
    replies_sent: int = 0  # accepted by Meta in this attempt
    reply_type: str | None = None
    reply_wamid: str | None = None
    template_fallback: bool = False
    latency_ms: float | None = None
    attempts: int | None = None  # the message's own failed attempts so far
    retry_code: str | None = None
    retry_class: str | None = None
    delay_seconds: int | None = None
    permanent_code: str | None = None
    dead_letter: DeadLetter | None = None
    unreadable: bool = False
    uncertain_slots: int = 0
    store_write_failed: bool = False
    reason: str = ""
    error: BaseException | None = None
    status: StatusOutcome | None = None  # a status record: what following it did

    @property
    def failed(self) -> bool:
        return self.result.failed

    @property
    def reply_sent(self) -> bool:
        return self.replies_sent > 0


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
    ledger: Ledger
    dead_letters: DeadLetters
    visibility: VisibilityControl
    rules: ReplyRules
    clock: Callable[[], datetime]
    remaining_seconds: Callable[[], float] = lambda: float("inf")
    random_unit: Callable[[], float] = random.random
    max_workers: int = 10
    # A conversation's second and later records start only with at least this much time left
    # (or twice its slowest record so far, if more).
    min_seconds_to_start: float = 0.0
    # A message's own failed attempts before the consumer dead-letters it.
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


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
        # An unreadable record is nobody's message: it never holds back the records behind
        # it, its own conversation's included (docs/contract.md).
        if outcome.failed and not outcome.unreadable:
            blocker = (CODE_HELD_BACK, f"behind {record.message_id} of the same conversation")
    return outcomes


def _guarded(record: InboxRecord, consumer: Consumer) -> RecordOutcome:
    """`consume_record`, with a bug in it turned into a failed record (logged with traceback by
    telemetry) instead of a failed batch. A bug is not one of the message's own attempts (the
    ledger may not even have been written), so its backoff follows the receive count and SQS's
    `maxReceiveCount` bounds it."""
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
        queued = read_record(record.body)
    except UnreadableRecord as error:
        outcome.unreadable = True
        outcome.reason = str(error)
        _dead_letter_unreadable(outcome, consumer)
        return outcome
    if isinstance(queued, QueuedStatus):
        _follow_status(queued, outcome, consumer)
        return outcome
    received = queued.received
    outcome.wamid = queued.wamid
    outcome.message_type = received.message.type
    outcome.sender = received.sender_key
    decision = _within_window(consumer.rules.decide(received), queued, consumer)
    outcome.decision = decision.reason
    plan = [decision.reply] if decision.reply is not None else []

    now = consumer.clock()
    try:
        begun = consumer.ledger.begin(
            queued.wamid,
            now=now.timestamp(),
            lease_until=now.timestamp() + max(0.0, consumer.remaining_seconds()),
            claim_slot=0 if plan else None,
            enqueued_at=record.enqueued_at,
        )
    except StoreUnavailable as error:
        outcome.reason = str(error)
        _retry_without_attempt(outcome, CODE_STORE_UNAVAILABLE, consumer)
        return outcome
    if begun.result is BeginResult.ALREADY_DONE:
        outcome.result = Result.DUPLICATE
    elif begun.result is BeginResult.ALREADY_DEAD_LETTERED:
        outcome.result = Result.STALE_COPY
    elif begun.result is BeginResult.BUSY:
        _retry_without_attempt(outcome, CODE_IN_PROGRESS, consumer)
    else:
        _Attempt(queued, decision, begun.history, consumer, outcome).run(plan)
    return outcome


def _follow_status(status: QueuedStatus, outcome: RecordOutcome, consumer: Consumer) -> None:
    """A status of one of our replies: `statuses.follow_status` does the work; a retry it asks
    for goes through the same visibility backoff as a message's."""
    record = outcome.record
    followed = follow_status(
        status, consumer, token=record.message_id, receive_count=record.receive_count
    )
    outcome.status = followed
    outcome.wamid = followed.inbound_wamid
    outcome.reply_wamid = status.reply_wamid
    outcome.store_write_failed = followed.store_write_failed
    outcome.reason = followed.reason
    retry = followed.retry
    if retry is None:
        outcome.result = Result.STATUS
        return
    outcome.result = Result.RETRY
    _schedule(outcome, retry.code, retry.policy, retry.retry_after, consumer, attempt=retry.attempt)


def _within_window(
    decision: ReplyDecision, queued: QueuedRecord, consumer: Consumer
) -> ReplyDecision:
    """A free-form reply to a message older than Meta's 24-hour window (a backlog redriven days
    later) would be refused with 131047: send the fallback template straight away instead.

    Only this message's own time is known here; had the user written again since, the window
    would be open and the template is merely the safe choice. Without a template the free-form
    reply is tried and Meta decides."""
    template = consumer.rules.fallback_template
    sent_at = queued.received.message.sent_at
    if (
        decision.reply is None
        or isinstance(decision.reply, Template)
        or template is None
        or sent_at is None
        or consumer.clock() - sent_at <= SERVICE_WINDOW
    ):
        return decision
    return ReplyDecision(template, "window-closed", decision.recipient)


class _Attempt:
    """One attempt at one message, once the ledger has given it to us."""

    def __init__(
        self,
        queued: QueuedRecord,
        decision: ReplyDecision,
        history: MessageHistory,
        consumer: Consumer,
        outcome: RecordOutcome,
    ) -> None:
        self.queued = queued
        self.wamid = queued.wamid
        self.decision = decision
        self.history = history
        self.consumer = consumer
        self.outcome = outcome
        # A redriven dead letter starts a fresh budget.
        dead = history.status is MessageStatus.DEAD_LETTERED
        self.attempts_before = 0 if dead else history.attempts
        outcome.attempts = self.attempts_before

    def run(self, plan: Sequence[OutboundMessage]) -> None:
        self._mark_read()
        if not plan:
            self.outcome.result = Result.NO_REPLY
            self._finish(Finished(Result.NO_REPLY.value), release_slot=None)
            return
        if not self._send_all(plan):
            return  # refused (settled), or Meta accepted a send the ledger could not record
        outcome = self.outcome
        if outcome.replies_sent:
            outcome.result = Result.REPLIED
            outcome.latency_ms = max(
                0.0, (self.consumer.clock() - self.queued.received_at).total_seconds() * 1000
            )
        else:
            # Every slot was sent, or may have been, by an earlier attempt that did not finish.
            outcome.result = Result.UNCERTAIN if outcome.uncertain_slots else Result.DUPLICATE

    def _mark_read(self) -> None:
        reply = self.decision.reply
        typing = (
            reply is not None
            and self.consumer.rules.typing_indicator
            and not isinstance(reply, Reaction)
        )
        try:
            self.consumer.graph.mark_read(
                self.queued.received.business.phone_number_id,
                mark_read_body(self.wamid, typing_indicator=typing),
            )
            self.outcome.read_receipt_sent = True
        except GraphApiError as error:
            self.outcome.failures.append(_failure("read", error))  # the reply still goes out

    def _send_all(self, plan: Sequence[OutboundMessage]) -> bool:
        """Send each slot not sent before, in order, each at most once. True when every slot is
        settled and the message is finished in the ledger."""
        ledger = self.consumer.ledger
        claimed_slot: int | None = 0  # `begin` claimed slot 0
        finished = False
        for slot, message in enumerate(plan):
            last = slot == len(plan) - 1
            if slot in self.history.sent or slot in self.history.claimed:
                # Sent by an earlier attempt, or it may have been: never again.
                self.outcome.uncertain_slots += slot not in self.history.sent
                continue
            if claimed_slot != slot:
                try:
                    ledger.claim(self.wamid, slot, now=self.consumer.clock().timestamp())
                except StoreUnavailable as error:
                    self.outcome.reason = str(error)
                    _retry_without_attempt(self.outcome, CODE_STORE_UNAVAILABLE, self.consumer)
                    return False
            sent = self._send_slot(slot, message)
            if sent is None:
                return False
            claimed_slot = None if last else slot + 1
            try:
                ledger.record_sent(
                    sent,
                    claim_next=claimed_slot,
                    finished=Finished(Result.REPLIED.value) if last else None,
                )
            except StoreUnavailable as error:
                # Meta accepted it: never retried (that would send it twice). The claim stays,
                # so a later delivery of this wamid treats the slot as possibly sent.
                self.outcome.store_write_failed = True
                self.outcome.reason = str(error)
                self.outcome.result = Result.REPLIED
                return False
            finished = last
        if not finished:
            # The last slot was skipped: nothing else finishes the message.
            result = Result.REPLIED if self.outcome.replies_sent else Result.UNCERTAIN
            if not self.outcome.replies_sent and not self.outcome.uncertain_slots:
                result = Result.DUPLICATE
            self._finish(Finished(result.value), release_slot=None)
        return True

    def _send_slot(self, slot: int, message: OutboundMessage) -> SentReply | None:
        """Send one claimed slot (with the 131047 template fallback); the accepted reply, or
        None once the refusal has been settled."""
        consumer, outcome = self.consumer, self.outcome
        phone_number_id = self.queued.received.business.phone_number_id
        recipient = self.decision.recipient
        kind = "reply"
        try:
            body = send_body(recipient, message, reply_to=self.wamid if slot == 0 else None)
        except InvalidOutbound as invalid:
            # Meta would refuse it the same way every time: a permanent failure, said plainly.
            self.outcome.reason = str(invalid)
            self.outcome.result = Result.PERMANENT
            self.outcome.permanent_code = CODE_INVALID_OUTBOUND
            self._finish(Finished(Result.PERMANENT.value, CODE_INVALID_OUTBOUND), release_slot=slot)
            return None
        try:
            reply_id = consumer.graph.send(phone_number_id, body)
        except GraphApiError as error:
            failure = _failure("send", error)
            outcome.failures.append(failure)
            template = consumer.rules.fallback_template
            if (
                failure.code != WINDOW_CLOSED_CODE
                or template is None
                or isinstance(message, Template)
            ):
                self._settle_refusal(failure, error, slot)
                return None
            try:
                body = send_body(recipient, template, reply_to=self.wamid)
                reply_id = consumer.graph.send(phone_number_id, body)
            except GraphApiError as fallback_error:
                fallback_failure = _failure("fallback", fallback_error)
                outcome.failures.append(fallback_failure)
                self._settle_refusal(fallback_failure, fallback_error, slot)
                return None
            outcome.template_fallback = True
            kind = "fallback"
        outcome.replies_sent += 1
        message_type = str(body["type"])
        outcome.reply_type = message_type
        outcome.reply_wamid = outcome.reply_wamid or reply_id
        inbound_at = self.queued.received.message.sent_at
        return SentReply(
            reply_wamid=reply_id or "",
            inbound_wamid=self.wamid,
            slot=slot,
            kind=kind,
            phone_number_id=phone_number_id,
            recipient={key: str(body[key]) for key in ("to", "recipient") if key in body},
            message={"type": message_type, message_type: body[message_type]},
            decision=self.decision.reason,
            sent_at=consumer.clock().timestamp(),
            inbound_at=inbound_at.timestamp() if inbound_at is not None else None,
        )

    def _settle_refusal(self, failure: CallFailure, error: GraphApiError, slot: int) -> None:
        """Meta refused the send (an answer arrived, so it did not go out): release the slot,
        then record it for good, retry it later, or dead-letter it when its own attempts are
        spent."""
        policy = classify(failure.code, is_transient=error.is_transient)
        if policy.action is Action.PERMANENT:
            self.outcome.result = Result.PERMANENT
            self.outcome.permanent_code = failure.code
            self._finish(Finished(Result.PERMANENT.value, failure.code), release_slot=slot)
            return
        self._fail(failure.code, policy, error.retry_after_seconds, slot)

    def _fail(
        self, code: str, policy: ErrorClassPolicy, retry_after: float | None, slot: int
    ) -> None:
        consumer, outcome = self.consumer, self.outcome
        attempts = self.attempts_before + 1
        outcome.attempts = attempts
        now = consumer.clock().timestamp()
        dead_lettered = attempts >= consumer.max_attempts and _send_dead_letter(
            DeadLetter(
                reason=REASON_ATTEMPTS_EXHAUSTED,
                error_code=code,
                error_class=policy.name,
                attempts=attempts,
                last_attempt_at=now,
                wamid=self.wamid,
            ),
            consumer,
            outcome,
        )
        failure = FailedAttempt(
            attempts=attempts,
            error_code=code,
            error_class=policy.name,
            at=now,
            release_slot=slot,
            dead_lettered=dead_lettered,
        )
        try:
            consumer.ledger.record_failure(self.wamid, failure)
        except StoreUnavailable as error:
            # The slot stays claimed: a later attempt treats it as possibly sent (uncertain),
            # never sends it twice.
            outcome.store_write_failed = True
            outcome.reason = str(error)
        if dead_lettered:
            outcome.result = Result.DEAD_LETTERED
            outcome.retry_code = code
            outcome.retry_class = policy.name
            return
        outcome.result = Result.RETRY
        _schedule(outcome, code, policy, retry_after, consumer, attempt=attempts)

    def _finish(self, finished: Finished, *, release_slot: int | None) -> None:
        try:
            self.consumer.ledger.finish(self.wamid, finished, release_slot=release_slot)
        except StoreUnavailable as error:
            # Nothing was sent that a retry could double: the next delivery does it again.
            self.outcome.store_write_failed = True
            self.outcome.reason = str(error)


def _dead_letter_unreadable(outcome: RecordOutcome, consumer: Consumer) -> None:
    """No code can read it (not JSON, an unknown schema version...): to the DLQ at once, where
    an operator looks; retried only while the DLQ itself refuses it."""
    letter = DeadLetter(
        reason=REASON_UNREADABLE,
        error_code=CODE_POISON,
        error_class=classify(CODE_POISON).name,
        attempts=outcome.record.receive_count,
        last_attempt_at=consumer.clock().timestamp(),
    )
    if _send_dead_letter(letter, consumer, outcome):
        outcome.result = Result.DEAD_LETTERED
        return
    _retry_without_attempt(outcome, CODE_POISON, consumer)


def _send_dead_letter(letter: DeadLetter, consumer: Consumer, outcome: RecordOutcome) -> bool:
    try:
        consumer.dead_letters.send(outcome.record.body, outcome.record.group_id, letter)
    except DeadLetterFailed as error:
        outcome.reason = str(error)
        return False
    outcome.dead_letter = letter
    return True


def _retry_without_attempt(outcome: RecordOutcome, code: str, consumer: Consumer) -> None:
    """Retry later without spending one of the message's own attempts: the store was down, or
    another execution holds the message — nothing was tried."""
    outcome.result = Result.RETRY
    _schedule(outcome, code, classify(code), None, consumer)


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
    *,
    attempt: int | None = None,
) -> None:
    """The record's backoff: by its own attempt number when it has one, else by its receive
    count (a bug, a store outage) — those are bounded by SQS's `maxReceiveCount`."""
    outcome.retry_code = code
    outcome.retry_class = policy.name
    backoff = policy.backoff
    if backoff is None:  # a permanent class reached a retry path: retry like an unknown code
        backoff = classify("").backoff
    assert backoff is not None
    outcome.delay_seconds = delay_seconds(
        backoff,
        attempt if attempt is not None else outcome.record.receive_count,
        retry_after_seconds=retry_after,
        random_unit=consumer.random_unit,
    )
