"""The consumer's use case: a batch of queued records in, one outcome per record out.

Per record (docs/contract.md, "Consumer"): take the message in the ledger (a duplicate, a
message another execution holds, or a stale copy of a dead-lettered one stops here); plan the
answer (`plan.py`: the reply rules, or the user's reply handler once the ledger gave us the
message); mark it read (with "typing…" when a reply is coming); send the planned replies from the
receiving number, the first threaded on the wamid; turn every Graph API failure into the action
the error policy names. A failed read receipt is recorded, never stops the reply.

Per batch: FIFO semantics per conversation (`MessageGroupId`). Within a group records run in
order, and once one fails it and every later record of the group are reported as failures
without being processed; different groups run concurrently. Failed records get their
visibility timeout raised by the policy's backoff — the function never sleeps.

Retry budgets are the message's own: the ledger counts a message's failed attempts, never the
receives it spent held back behind a neighbour, and the backoff grows with that count. When a
message's own attempts run out (or a record cannot be read at all) the consumer puts it on the
dead-letter queue itself, with the reason as message attributes, and reports it done. SQS's
`maxReceiveCount` stays as the backstop for runs that die (docs/decisions.md).

"Never twice": the slot of a reply is claimed in the ledger right before its send and recorded
as sent right after it, in the same write that remembers the reply for its statuses. A run that
dies between the two leaves the claim behind; the next attempt does not send that slot again
(an "uncertain" reply, counted and alarmed) — a missing reply is visible, a doubled one reaches
the customer. Slots are positions in the plan: a reply handler that answers differently on a
second run still gets each position sent at most once.

Status records (what Meta says became of our replies) are followed by `statuses.py`; this
module only hands them over (`_follow_status`) and publishes the "reply status changed" event
for each status first recorded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from functions.common.names import DEFAULT_MAX_ATTEMPTS
from functions.domain.consumer.backoff import delay_seconds
from functions.domain.consumer.error_policy import (
    CODE_BURST_INCOMPLETE,
    CODE_IN_PROGRESS,
    CODE_POISON,
    CODE_STORE_UNAVAILABLE,
    WINDOW_CLOSED_CODE,
    Action,
    ErrorClassPolicy,
    classify,
)
from functions.domain.consumer.plan import (
    DECISION_HANDLER,
    InvalidReplies,
    Plan,
    handler_plan,
    is_template,
    rules_plan,
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
    RelayEvent,
    ReplyHandler,
    SentReply,
    StoreUnavailable,
    Unpublished,
    VisibilityChange,
    VisibilityControl,
)
from functions.domain.consumer.relay_events import RelayEvents
from functions.domain.consumer.reply_handler import HandlerFailed
from functions.domain.consumer.reply_rules import ReplyRules
from functions.domain.consumer.statuses import StatusOutcome, follow_status
from functions.domain.whatsapp.outbound import InvalidOutbound, OutboundMessage, mark_read_body
from functions.domain.whatsapp.outbound_dicts import reply_body
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
WINDOW_CLOSED_WITHIN_SECONDS = 0.5
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
    WAITING = "waiting"  # the first of a burst, held (invisible) while the rest gathers behind
    IN_BURST = "in_burst"  # done: answered as part of the burst of `burst_of`
    STATUS = "status"  # a status of one of our replies, followed (`RecordOutcome.status`)

    @property
    def failed(self) -> bool:
        return self in _FAILED_RESULTS


_FAILED_RESULTS = frozenset({Result.RETRY, Result.HELD_BACK, Result.INTERNAL_ERROR, Result.WAITING})


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
    handler_latency_ms: float | None = None  # how long the reply handler took, when it returned
    attempts: int | None = None  # the message's own failed attempts so far
    retry_code: str | None = None
    retry_class: str | None = None
    delay_seconds: int | None = None
    permanent_code: str | None = None
    dead_letter: DeadLetter | None = None
    unreadable: bool = False
    burst_of: str | None = None  # a burst's other message: the wamid of the burst's first
    burst_size: int = 0  # a burst's first message: how many messages it answered together
    uncertain_slots: int = 0
    store_write_failed: bool = False
    # Facts for other systems (relay_events.py), published once the record is settled.
    events: list[RelayEvent] = field(default_factory=list)
    events_published: int = 0
    events_unpublished: list[Unpublished] = field(default_factory=list)
    reason: str = ""
    error: BaseException | None = None  # a bug, or what the reply handler raised: logged with
    # its traceback
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
    # The user's function (REPLY_HANDLER); None: the reply rules answer.
    reply_handler: ReplyHandler | None = None
    # Of the invocation's remaining time, what the handler may not use: the read receipt, the
    # sends and the ledger writes that follow it.
    handler_reserve_seconds: float = 5.0
    # Events for other systems (EVENT_BUS_NAME); None: none are built or published.
    events: RelayEvents | None = None
    # > 0: a conversation's first message waits up to this long for the rest of its burst,
    # which is then answered once (BURST_WINDOW_SECONDS).
    burst_window_seconds: float = 0.0


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
    """A conversation's records in order, one unit at a time: a message, or a burst of them."""
    outcomes: list[RecordOutcome] = []
    blocker: tuple[str | None, str] | None = None  # (code, reason)
    slowest_seconds = 0.0
    pending = list(records)
    while pending:
        # The first record of a conversation always runs (an invocation starts with its whole
        # timeout); a later one only when twice the slowest so far still fits, so a slow Graph
        # API cannot push a send past the function's timeout.
        budget = max(consumer.min_seconds_to_start, 2 * slowest_seconds)
        if blocker is None and outcomes and consumer.remaining_seconds() < budget:
            blocker = (CODE_TIME_BUDGET, "too little time left in this invocation")
        if blocker is not None:
            outcomes += [_held_back(record, *blocker) for record in pending]
            break
        started = consumer.clock()
        unit = _guarded(pending, consumer)
        slowest_seconds = max(slowest_seconds, (consumer.clock() - started).total_seconds())
        outcomes += unit
        pending = pending[len(unit) :]
        # An unreadable record is nobody's message: it never holds back the records behind
        # it, its own conversation's included (docs/contract.md).
        failed = next((o for o in unit if o.failed and not o.unreadable), None)
        if failed is not None:
            reason = f"behind {failed.record.message_id} of the same conversation"
            # Behind a burst's first message the rest is gathering, not failing.
            code = None if failed.result is Result.WAITING else CODE_HELD_BACK
            blocker = (code, reason)
    return outcomes


def _held_back(record: InboxRecord, code: str | None, reason: str) -> RecordOutcome:
    return RecordOutcome(
        record=record,
        result=Result.HELD_BACK,
        retry_code=code,
        reason=reason,
        delay_seconds=HELD_BACK_VISIBILITY_SECONDS,
    )


def _guarded(pending: Sequence[InboxRecord], consumer: Consumer) -> list[RecordOutcome]:
    """`_consume_unit`, with a bug in it turned into a failed record (logged with traceback by
    telemetry) instead of a failed batch. A bug is not one of the message's own attempts (the
    ledger may not even have been written), so its backoff follows the receive count and SQS's
    `maxReceiveCount` bounds it."""
    try:
        unit = _consume_unit(pending, consumer)
    except Exception as error:  # noqa: BLE001 - reported, with traceback, by telemetry
        outcome = RecordOutcome(record=pending[0], result=Result.INTERNAL_ERROR, error=error)
        _schedule(outcome, CODE_INTERNAL_ERROR, classify(CODE_INTERNAL_ERROR), None, consumer)
        unit = [outcome]
    _publish_events(unit, consumer)
    return unit


def _tell(
    outcome: RecordOutcome, consumer: Consumer, build: Callable[[RelayEvents], RelayEvent]
) -> None:
    """Note a fact for other systems, when events are on; published once the record is
    settled (`_publish_events`), after the ledger has recorded it."""
    if consumer.events is not None:
        outcome.events.append(build(consumer.events))


def _publish_events(unit: Sequence[RecordOutcome], consumer: Consumer) -> None:
    """One PutEvents per unit (a message or a burst) at most. A refusal is counted and logged
    (EventsNotPublished, alarmed), never retried by SQS: the reply it describes is done and
    must not be redone."""
    events = [event for outcome in unit for event in outcome.events]
    if consumer.events is None or not events:
        return
    refused = {id(failure.event): failure for failure in consumer.events.publish(events)}
    for outcome in unit:
        outcome.events_unpublished = [
            refused[id(event)] for event in outcome.events if id(event) in refused
        ]
        outcome.events_published = len(outcome.events) - len(outcome.events_unpublished)


# --- one unit: a message, or a burst of them -------------------------------------------------


def _consume_unit(pending: Sequence[InboxRecord], consumer: Consumer) -> list[RecordOutcome]:
    """The first of `pending`, with the rest of its burst when a burst window is on: the
    outcomes of the records it took, a prefix of `pending`."""
    record = pending[0]
    outcome = RecordOutcome(record=record)
    try:
        queued = read_record(record.body)
    except UnreadableRecord as error:
        outcome.unreadable = True
        outcome.reason = str(error)
        _dead_letter_unreadable(outcome, consumer)
        return [outcome]
    if isinstance(queued, QueuedStatus):
        _follow_status(queued, outcome, consumer)
        return [outcome]
    _describe(outcome, queued)
    window = consumer.burst_window_seconds
    candidates: list[tuple[InboxRecord, QueuedRecord]] = []
    if window > 0:
        closes = queued.received_at + timedelta(seconds=window)
        wait = (closes - consumer.clock()).total_seconds()
        # Within a clock's skew of the end (SQS counts whole seconds): closed, or the head
        # would wait a second time, past its window.
        if wait > WINDOW_CLOSED_WITHIN_SECONDS:
            # The first of a burst: invisible until its window closes. FIFO delivers nothing
            # more of this conversation meanwhile, so the rest of the burst gathers behind it.
            outcome.result = Result.WAITING
            outcome.delay_seconds = max(1, math.ceil(wait))
            outcome.reason = f"waiting {outcome.delay_seconds} s for the rest of its burst"
            return [outcome]
        candidates = _burst_candidates(pending[1:], closes)
    return _consume_burst(record, queued, outcome, candidates, consumer)


def _follow_status(status: QueuedStatus, outcome: RecordOutcome, consumer: Consumer) -> None:
    """A status of one of our replies: `statuses.follow_status` does the work; a retry it asks
    for goes through the same visibility backoff as a message's. A status the reply's item took
    for the first time is the `reply.status_changed` event."""
    record = outcome.record
    followed = follow_status(
        status, consumer, token=record.message_id, receive_count=record.receive_count
    )
    outcome.status = followed
    outcome.wamid = followed.inbound_wamid
    outcome.reply_wamid = status.reply_wamid
    outcome.store_write_failed = followed.store_write_failed
    outcome.reason = followed.reason
    reply = followed.reply
    if reply is not None and followed.at is not None and followed.first_report:
        sent, at = reply.reply, followed.at
        _tell(
            outcome,
            consumer,
            lambda events: events.reply_status_changed(
                reply_wamid=status.reply_wamid,
                status=status.status,
                at=at,
                phone_number_id=sent.phone_number_id,
                in_reply_to=sent.in_reply_to or sent.inbound_wamid,
                conversation_id=sent.conversation_id or None,
                errors=[dict(error) for error in status.raw_errors],
                recipient=sent.recipient.get("to") or sent.recipient.get("recipient"),
            ),
        )
    retry = followed.retry
    if retry is None:
        outcome.result = Result.STATUS
        return
    outcome.result = Result.RETRY
    _schedule(outcome, retry.code, retry.policy, retry.retry_after, consumer, attempt=retry.attempt)


def _describe(outcome: RecordOutcome, queued: QueuedRecord) -> None:
    received = queued.received
    outcome.wamid = queued.wamid
    outcome.message_type = received.message.type
    outcome.sender = received.sender_key


def _burst_candidates(
    following: Sequence[InboxRecord], closes: datetime
) -> list[tuple[InboxRecord, QueuedRecord]]:
    """The records right behind a burst's first that ingest accepted before its window closed;
    the first one that did not (or cannot be read) starts the next unit."""
    candidates = []
    for record in following:
        try:
            queued = QueuedRecord.from_json(record.body)
        except UnreadableRecord:
            break
        if queued.received_at > closes:
            break
        candidates.append((record, queued))
    return candidates


def _consume_burst(
    record: InboxRecord,
    queued: QueuedRecord,
    outcome: RecordOutcome,
    candidates: Sequence[tuple[InboxRecord, QueuedRecord]],
    consumer: Consumer,
) -> list[RecordOutcome]:
    # The rules are pure: without bursts their plan is known now, and `begin` claims its first
    # slot. A reply handler runs only once the ledger has given us the message (a duplicate
    # never runs it); with a burst window the plan waits for the burst's messages to be taken
    # (an earlier attempt may have fixed a burst this batch cannot answer yet).
    plan = None
    read_before_begin = consumer.reply_handler is None and consumer.burst_window_seconds <= 0
    if read_before_begin:
        plan = rules_plan(consumer.rules, [queued], now=consumer.clock())
        outcome.decision = plan.reason
        # Read before the ledger's `begin`, which claims the reply: a run that dies between the
        # claim and the send leaves the reply uncertain (never sent again), so nothing but the
        # send itself may stand between them. The price: a late duplicate gets a second read
        # receipt, which Meta takes as a no-op.
        _mark_read(queued, [queued], plan.typing, consumer, outcome)
    claim_first = plan is not None and bool(plan.replies)
    history = _take(record, queued, outcome, consumer, claim_slot=0 if claim_first else None)
    if history is None:
        return [outcome]  # a duplicate, a stale copy, held elsewhere, or the store is down
    if history.sent or history.claimed:
        # An earlier attempt began sending: the burst it fixed is the one answered now, so no
        # message is answered twice, nor a reply sent for a different set of messages.
        fixed = history.members or ()
        chosen = list(candidates[: len(fixed)])
        if [member.wamid for _, member in chosen] != list(fixed):
            outcome.reason = "the burst's other messages are not all in this batch"
            _retry_without_attempt(outcome, CODE_BURST_INCOMPLETE, consumer)
            return [outcome]
        candidates = chosen
    burst = [queued]
    members: list[RecordOutcome] = []
    taken: list[RecordOutcome] = []
    for member_record, member in candidates:
        member_outcome = RecordOutcome(record=member_record, burst_of=queued.wamid)
        _describe(member_outcome, member)
        members.append(member_outcome)
        if _take(member_record, member, member_outcome, consumer, burst_head=queued.wamid):
            burst.append(member)
            taken.append(member_outcome)
        elif member_outcome.failed and (history.sent or history.claimed):
            # A fixed burst answers for all of its messages or waits: one left out now would
            # be answered again on its own later.
            outcome.reason = f"{member.wamid} of its fixed burst is not available now"
            _retry_without_attempt(outcome, CODE_BURST_INCOMPLETE, consumer)
            return [outcome]
    outcome.burst_size = len(burst)
    if plan is None and consumer.reply_handler is None:
        plan = rules_plan(consumer.rules, burst, now=consumer.clock())
    attempt = _Attempt(burst, history, consumer, outcome, taken)
    attempt.run(plan, first_slot_claimed=claim_first, read=read_before_begin)
    attempt.settle_members()
    return [outcome, *members]


def _take(
    record: InboxRecord,
    queued: QueuedRecord,
    outcome: RecordOutcome,
    consumer: Consumer,
    *,
    claim_slot: int | None = None,
    burst_head: str | None = None,
) -> MessageHistory | None:
    """Take the message in the ledger for this attempt (as a member of `burst_head`'s burst,
    if given): its history, or None when it settled otherwise — a duplicate, a stale copy of a
    dead letter, a message another execution holds, or a store that is down."""
    now = consumer.clock()
    try:
        begun = consumer.ledger.begin(
            queued.wamid,
            now=now.timestamp(),
            lease_until=now.timestamp() + max(0.0, consumer.remaining_seconds()),
            claim_slot=claim_slot,
            enqueued_at=record.enqueued_at,
            burst_head=burst_head,
        )
    except StoreUnavailable as error:
        outcome.reason = str(error)
        _retry_without_attempt(outcome, CODE_STORE_UNAVAILABLE, consumer)
        return None
    if begun.result is BeginResult.ALREADY_DONE:
        outcome.result = Result.DUPLICATE
    elif begun.result is BeginResult.ALREADY_DEAD_LETTERED:
        outcome.result = Result.STALE_COPY
    elif begun.result is BeginResult.BUSY:
        _retry_without_attempt(outcome, CODE_IN_PROGRESS, consumer)
    else:
        if begun.history.status is MessageStatus.NEW:  # first seen: the ledger holds it now
            _tell(
                outcome,
                consumer,
                lambda events: events.message_received(queued, conversation_id=record.group_id),
            )
        return begun.history
    return None


class _Attempt:
    """One attempt at one message — or at a burst, held by its first message — once the ledger
    has given it to us."""

    def __init__(
        self,
        burst: Sequence[QueuedRecord],
        history: MessageHistory,
        consumer: Consumer,
        outcome: RecordOutcome,
        members: Sequence[RecordOutcome] = (),
    ) -> None:
        self.queued = burst[0]  # the message whose ledger item holds the reply slots
        self.wamid = self.queued.wamid
        self.burst = list(burst)
        self.member_wamids = tuple(member.wamid for member in burst[1:])
        self.members = list(members)  # the outcomes of burst[1:]
        self.history = history
        self.consumer = consumer
        self.outcome = outcome
        self.plan = Plan((), "", None, self.wamid)
        # A redriven dead letter starts a fresh budget.
        dead = history.status is MessageStatus.DEAD_LETTERED
        self.attempts_before = 0 if dead else history.attempts
        outcome.attempts = self.attempts_before

    def run(self, plan: Plan | None, *, first_slot_claimed: bool, read: bool = False) -> None:
        """Answer by `plan`, or by the reply handler's when `plan` is None; `read`: the read
        receipt went before the ledger's `begin` (or was tried there)."""
        if plan is None:
            plan = self._ask_handler()
            if plan is None:
                return  # settled: retried, dead-lettered or refused for good
        self.plan = plan
        self.outcome.decision = plan.reason
        if not read:
            self._mark_read(typing=plan.typing)
        if not plan.replies:
            self.outcome.result = Result.NO_REPLY
            self._finish(self._finished(Result.NO_REPLY.value), release_slot=None)
            return
        if not self._send_all(plan.replies, first_slot_claimed=first_slot_claimed):
            return  # refused (settled), or Meta accepted a send the ledger could not record
        outcome = self.outcome
        if outcome.replies_sent:
            outcome.result = Result.REPLIED
            answered = next(q for q in self.burst if q.wamid == plan.thread_on)
            outcome.latency_ms = max(
                0.0, (self.consumer.clock() - answered.received_at).total_seconds() * 1000
            )
        else:
            # Every slot was sent, or may have been, by an earlier attempt that did not finish.
            outcome.result = Result.UNCERTAIN if outcome.uncertain_slots else Result.DUPLICATE

    def _ask_handler(self) -> Plan | None:
        """The reply handler's plan, bounded by the invocation's remaining time; None when it
        failed (the failure is settled here)."""
        consumer, outcome = self.consumer, self.outcome
        handler = consumer.reply_handler
        assert handler is not None
        timeout = consumer.remaining_seconds() - consumer.handler_reserve_seconds
        if timeout <= 0:
            outcome.reason = "too little time left in this invocation for the reply handler"
            _retry_without_attempt(outcome, CODE_TIME_BUDGET, consumer)
            return None
        try:
            plan = handler_plan(
                handler,
                consumer.rules,
                self.burst,
                timeout_seconds=timeout,
                now=consumer.clock(),
            )
        except HandlerFailed as failed:
            outcome.decision = DECISION_HANDLER
            outcome.reason = failed.reason
            outcome.error = failed.error
            outcome.handler_latency_ms = failed.latency_ms
            self._fail(failed.code, classify(failed.code), None, slot=None)
            return None
        except InvalidReplies as invalid:
            # The handler would return the same next time: a permanent failure, said plainly.
            outcome.decision = DECISION_HANDLER
            outcome.handler_latency_ms = invalid.latency_ms
            self._mark_read(typing=False)
            self._refuse_invalid(str(invalid), release_slot=None)
            return None
        outcome.handler_latency_ms = plan.handler_latency_ms
        return plan

    def _mark_read(self, *, typing: bool) -> None:
        _mark_read(self.queued, self.burst, typing, self.consumer, self.outcome)

    def _refuse_invalid(self, reason: str, *, release_slot: int | None) -> None:
        self.outcome.reason = reason
        self.outcome.result = Result.PERMANENT
        self.outcome.permanent_code = CODE_INVALID_OUTBOUND
        self._finish(
            self._finished(Result.PERMANENT.value, CODE_INVALID_OUTBOUND), release_slot=release_slot
        )

    def _finished(self, result: str, error_code: str | None = None) -> Finished:
        """What the message ended with; its burst's other messages end with it."""
        return Finished(result, error_code, members=self.member_wamids)

    def settle_members(self) -> None:
        """A burst's other messages follow its first: done with it, dead-lettered with it, or
        held back behind it (in order) until it is answered."""
        head = self.outcome
        for member in self.members:
            if head.result is Result.DEAD_LETTERED and member.dead_letter is not None:
                member.result = Result.DEAD_LETTERED
            elif head.failed or head.result is Result.DEAD_LETTERED:
                member.result = Result.HELD_BACK
                member.retry_code = CODE_HELD_BACK
                member.reason = f"behind {head.record.message_id}, the first of its burst"
                member.delay_seconds = HELD_BACK_VISIBILITY_SECONDS
            else:
                member.result = Result.IN_BURST

    def _send_all(self, plan: Sequence[OutboundMessage], *, first_slot_claimed: bool) -> bool:
        """Send each slot not sent before, in order, each at most once. True when every slot is
        settled and the message is finished in the ledger."""
        ledger = self.consumer.ledger
        # The rules' first slot was claimed by `begin`; a handler's plan claims each one here.
        claimed_slot: int | None = 0 if first_slot_claimed else None
        finished = False
        for slot, message in enumerate(plan):
            last = slot == len(plan) - 1
            if slot in self.history.sent or slot in self.history.claimed:
                # Sent by an earlier attempt, or it may have been: never again.
                self.outcome.uncertain_slots += slot not in self.history.sent
                continue
            if claimed_slot != slot:
                try:
                    ledger.claim(
                        self.wamid,
                        slot,
                        now=self.consumer.clock().timestamp(),
                        members=self.member_wamids,
                    )
                except StoreUnavailable as error:
                    self.outcome.reason = str(error)
                    _retry_without_attempt(self.outcome, CODE_STORE_UNAVAILABLE, self.consumer)
                    return False
            sent = self._send_slot(slot, message)
            if sent is None:
                return False
            # Meta accepted it: a fact, whether or not the ledger records it below.
            if self.consumer.events is not None:
                self.outcome.events.append(
                    self.consumer.events.reply_sent(
                        sent, conversation_id=self.outcome.record.group_id
                    )
                )
            claimed_slot = None if last else slot + 1
            try:
                ledger.record_sent(
                    sent,
                    claim_next=claimed_slot,
                    finished=self._finished(Result.REPLIED.value) if last else None,
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
            self._finish(self._finished(result.value), release_slot=None)
        return True

    def _send_slot(self, slot: int, message: OutboundMessage) -> SentReply | None:
        """Send one claimed slot (with the 131047 template fallback); the accepted reply, or
        None once the refusal has been settled."""
        consumer, outcome = self.consumer, self.outcome
        phone_number_id = self.queued.received.business.phone_number_id
        recipient = self.plan.recipient
        thread_on = self.plan.thread_on
        kind = "reply"
        try:
            body = reply_body(recipient, message, reply_to=thread_on if slot == 0 else None)
        except InvalidOutbound as invalid:
            # Meta would refuse it the same way every time: a permanent failure, said plainly.
            self._refuse_invalid(str(invalid), release_slot=slot)
            return None
        try:
            reply_id = consumer.graph.send(phone_number_id, body)
        except GraphApiError as error:
            failure = _failure("send", error)
            outcome.failures.append(failure)
            template = consumer.rules.fallback_template
            if failure.code != WINDOW_CLOSED_CODE or template is None or is_template(message):
                self._settle_refusal(failure, error, slot)
                return None
            try:
                body = reply_body(recipient, template, reply_to=thread_on)
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
            decision=self.plan.reason,
            sent_at=consumer.clock().timestamp(),
            inbound_at=inbound_at.timestamp() if inbound_at is not None else None,
            in_reply_to=thread_on if thread_on != self.wamid else None,
            burst=tuple(q.wamid for q in self.burst) if self.member_wamids else (),
            conversation_id=outcome.record.group_id,
        )

    def _settle_refusal(self, failure: CallFailure, error: GraphApiError, slot: int) -> None:
        """Meta refused the send (an answer arrived, so it did not go out): release the slot,
        then record it for good, retry it later, or dead-letter it when its own attempts are
        spent."""
        policy = classify(failure.code, is_transient=error.is_transient)
        if policy.action is Action.PERMANENT:
            self.outcome.result = Result.PERMANENT
            self.outcome.permanent_code = failure.code
            self._finish(self._finished(Result.PERMANENT.value, failure.code), release_slot=slot)
            return
        self._fail(failure.code, policy, error.retry_after_seconds, slot)

    def _fail(
        self, code: str, policy: ErrorClassPolicy, retry_after: float | None, slot: int | None
    ) -> None:
        consumer, outcome = self.consumer, self.outcome
        attempts = self.attempts_before + 1
        outcome.attempts = attempts
        now = consumer.clock().timestamp()
        letter = DeadLetter(
            reason=REASON_ATTEMPTS_EXHAUSTED,
            error_code=code,
            error_class=policy.name,
            attempts=attempts,
            last_attempt_at=now,
            wamid=self.wamid,
        )
        dead_lettered = attempts >= consumer.max_attempts and _send_dead_letter(
            letter, consumer, outcome, self.queued
        )
        # A burst goes to the DLQ together: each of its messages is a record there. Otherwise
        # its messages are released with it for the next attempt.
        members = (
            tuple(
                queued.wamid
                for member, queued in zip(self.members, self.burst[1:], strict=True)
                if _send_dead_letter(replace(letter, wamid=queued.wamid), consumer, member, queued)
            )
            if dead_lettered
            else self.member_wamids
        )
        failure = FailedAttempt(
            attempts=attempts,
            error_code=code,
            error_class=policy.name,
            at=now,
            release_slot=slot,
            dead_lettered=dead_lettered,
            members=members,
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


def _mark_read(
    queued: QueuedRecord,
    burst: Sequence[QueuedRecord],
    typing: bool,
    consumer: Consumer,
    outcome: RecordOutcome,
) -> None:
    """One read receipt, on the burst's latest message (Meta marks the earlier messages of the
    thread read with it), with "typing…" when a reply is coming. A failed one is recorded and
    never stops the reply."""
    try:
        consumer.graph.mark_read(
            queued.received.business.phone_number_id,
            mark_read_body(
                burst[-1].wamid, typing_indicator=typing and consumer.rules.typing_indicator
            ),
        )
        outcome.read_receipt_sent = True
    except GraphApiError as error:
        outcome.failures.append(_failure("read", error))


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


def _send_dead_letter(
    letter: DeadLetter,
    consumer: Consumer,
    outcome: RecordOutcome,
    queued: QueuedRecord | None = None,
) -> bool:
    try:
        consumer.dead_letters.send(outcome.record.body, outcome.record.group_id, letter)
    except DeadLetterFailed as error:
        outcome.reason = str(error)
        return False
    outcome.dead_letter = letter
    _tell(
        outcome,
        consumer,
        lambda events: events.message_dead_lettered(
            letter,
            sqs_message_id=outcome.record.message_id,
            conversation_id=outcome.record.group_id,
            queued=queued,
        ),
    )
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
