"""Following our replies to the customer's phone: one status record in, its effects exactly once.

Meta reports what happened to each message we sent as `statuses[]` entries: `sent`, `delivered`,
`read` (`played` for voice), or `failed` with an error code - in any order, sometimes twice, and
for failures often long after the send call returned 200. Ingest queues each one as a status
record (docs/contract.md, "Statuses"); the consumer follows it here.

The lifecycle never goes backwards: the reply's item in the ledger keeps one timestamp per status
(the first Meta gave, `if_not_exists`), and the reply's state is derived from which timestamps
exist (`reply_state`), whatever order they arrived in. One status costs one ledger write, which
returns the reply as it was before it: comparing before and after tells, exactly once, that the
reply was first delivered or first read, that its state changed, or that it failed.

A late failure is acted on with the error policy of a synchronous one, once per reply: the write
that records the failure also takes the follow-up for this status record (its SQS message id)
unless another record took it, so a duplicate `failed` never acts twice.
- 131047 (the 24-hour window closed) on a free-form reply: the configured fallback template, once,
  threaded on the inbound message, to the recipient and from the number the reply used.
- transient classes: resend what was sent, at most `MAX_RESENDS` times along one chain; a refused
  resend retries by the status record's SQS visibility, bounded by the consumer's `max_attempts`.
- permanent classes: recorded on the reply item (code and class), counted, logged.
Every follow-up send is claimed before it goes out and recorded (as a reply of its own, kind
`fallback` or `resend`, pointing at the original, whose statuses are then followed too) right
after; a run that dies in between leaves a claim that is never sent again (uncertain).

A status for a reply the ledger does not know is retried a few times shortly (it may have
raced ahead of the reply's record), then counted and dropped: not ours, or long forgotten.

A "reply status changed" event has one source: `StatusOutcome.change`, set exactly once per move
of a reply's state (by the write that moved it). The consumer's telemetry logs it today ("reply
status changed"); a publisher of such events takes it from the same place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from functions.domain.consumer.error_policy import (
    CODE_REPLY_UNKNOWN,
    CODE_STORE_UNAVAILABLE,
    WINDOW_CLOSED_CODE,
    Action,
    ErrorClassPolicy,
    classify,
)
from functions.domain.consumer.ports import (
    GraphApiError,
    ReplyRecord,
    SentReply,
    StatusWrite,
    StoreUnavailable,
)
from functions.domain.whatsapp.outbound import InvalidOutbound, addressed_body, rendered
from functions.domain.whatsapp.queued_record import QueuedStatus

if TYPE_CHECKING:
    from functions.domain.consumer.consume import Consumer

# The states of a reply, lowest first. `failed` ranks below `delivered`: a message Meta says it
# delivered reached the phone, whatever else was reported about it.
LIFECYCLE: Final = ("accepted", "sent", "failed", "delivered", "read", "played")
_RANK: Final = {state: rank for rank, state in enumerate(LIFECYCLE)}
REPLY_STATUSES: Final = frozenset(LIFECYCLE) - {"accepted"}
FAILED: Final = "failed"
DELIVERED: Final = "delivered"
READ: Final = "read"
# A reply is resent at most this many times along its chain (a resend that fails late again is
# resent once more, and so on).
MAX_RESENDS: Final = 2
# A status of an unknown reply is looked at again while it is this fresh (by Meta's timestamp)
# and it has been received fewer times than this: the send's record may not be written yet.
UNMATCHED_FRESH_SECONDS: Final = 600
UNMATCHED_MAX_RECEIVES: Final = 4
SERVICE_WINDOW: Final = timedelta(hours=24)
FALLBACK: Final = "fallback"
RESEND: Final = "resend"


def reply_state(statuses: Mapping[str, float]) -> str:
    """The furthest state the known statuses reach ("accepted" when none is known)."""
    known = (name for name in statuses if name in _RANK)
    return max(known, key=_RANK.__getitem__, default=LIFECYCLE[0])


def reached(statuses: Mapping[str, float], state: str) -> bool:
    """Whether the known statuses put the reply at `state` or beyond it (delivered, read...)."""
    return _RANK[reply_state(statuses)] >= _RANK[state]


class StatusResult(Enum):
    RECORDED = "recorded"  # the reply's item took this status (it may have known it already)
    UNMATCHED = "unmatched"  # no reply of ours by that wamid: dropped (or looked at again soon)
    IGNORED = "ignored"  # a status replies do not keep (Meta's `deleted`, `warning`...)


class FollowUpResult(Enum):
    SENT = "sent"  # the fallback or the resend went out
    NOT_NEEDED = "not_needed"  # permanent, a template refused, no template, resent enough
    TAKEN = "taken"  # another status record took this reply's follow-up (a duplicate)
    DONE_BEFORE = "done_before"  # sent or given up earlier
    RETRY = "retry"  # Meta refused the send; the status record comes back later
    GAVE_UP = "gave_up"  # refused for good, or its attempts ran out: recorded
    UNCERTAIN = "uncertain"  # an earlier run died while sending it: never sent again


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A reply's state moved: what a "reply status changed" event says. Made once per move, by
    the write that moved it - the one point such an event is published from."""

    reply_wamid: str
    inbound_wamid: str
    kind: str  # reply, fallback or resend
    previous: str
    current: str
    at: float  # Meta's timestamp of the status that moved it
    error_code: str | None = None  # failed: Meta's code


@dataclass(frozen=True, slots=True)
class Retry:
    """The status record is to come back later (through its SQS visibility)."""

    code: str
    policy: ErrorClassPolicy
    attempt: int  # the backoff's attempt number
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class FollowUpFailure:
    code: str
    error_class: str
    http_status: int | None = None
    fbtrace_id: str | None = None
    details: str = ""


@dataclass(slots=True)
class StatusOutcome:
    """What following one status did; telemetry reports it."""

    reply_wamid: str
    status: str
    at: float | None = None
    result: StatusResult = StatusResult.IGNORED
    reply: ReplyRecord | None = None  # the reply as it was before this status
    change: StatusChange | None = None
    first_delivered: bool = False
    first_read: bool = False
    delivery_latency_ms: float | None = None  # the customer's message -> delivered
    error_code: str | None = None  # failed
    error_class: str | None = None
    first_failure: bool = False  # the first `failed` recorded for this reply
    first_report: bool = False  # this status was not known for the reply before (an event)
    follow_up: FollowUpResult | None = None
    follow_up_kind: str | None = None
    follow_up_wamid: str | None = None
    follow_up_reason: str = ""
    follow_up_failures: list[FollowUpFailure] = field(default_factory=list)
    retry: Retry | None = None
    store_write_failed: bool = False
    reason: str = ""

    @property
    def inbound_wamid(self) -> str | None:
        return self.reply.reply.inbound_wamid if self.reply is not None else None


def follow_status(
    status: QueuedStatus, consumer: Consumer, *, token: str, receive_count: int
) -> StatusOutcome:
    """Record one status of one of our replies and act on it. `token` names this status record
    (its SQS message id: the same on every receive of it, another for Meta's duplicates)."""
    outcome = StatusOutcome(reply_wamid=status.reply_wamid, status=status.status)
    if status.status not in REPLY_STATUSES:
        return outcome
    at = status.at if status.at is not None else status.received_at.timestamp()
    outcome.at = at
    write = StatusWrite(reply_wamid=status.reply_wamid, status=status.status, at=at)
    if status.status == FAILED:
        code = status.errors[0].code_label if status.errors else "unknown"
        policy = classify(code)
        outcome.error_code, outcome.error_class = code, policy.name
        write = StatusWrite(
            reply_wamid=status.reply_wamid,
            status=FAILED,
            at=at,
            error_code=code,
            error_class=policy.name,
            follow_up_owner=token,
            claim_first_attempt=_may_send(code, policy),
        )
    try:
        before = consumer.ledger.record_status(write)
    except StoreUnavailable as error:
        outcome.reason = str(error)
        store = classify(CODE_STORE_UNAVAILABLE)
        outcome.retry = Retry(CODE_STORE_UNAVAILABLE, store, receive_count)
        return outcome
    if before is None:
        _unmatched(outcome, at, consumer, receive_count)
        return outcome
    outcome.result = StatusResult.RECORDED
    outcome.reply = before
    _lifecycle(outcome, before, status.status, at)
    if status.status == FAILED:
        _FollowUp(outcome, before, consumer, token).run()
    return outcome


def _may_send(code: str, policy: ErrorClassPolicy) -> bool:
    return code == WINDOW_CLOSED_CODE or policy.action is not Action.PERMANENT


def _unmatched(outcome: StatusOutcome, at: float, consumer: Consumer, receive_count: int) -> None:
    """No reply by that wamid. A fresh status may have overtaken the record of its send: look
    again shortly, a few times; anything else is not ours (or long expired): dropped."""
    outcome.result = StatusResult.UNMATCHED
    fresh = consumer.clock().timestamp() - at < UNMATCHED_FRESH_SECONDS
    if fresh and receive_count < UNMATCHED_MAX_RECEIVES:
        outcome.retry = Retry(CODE_REPLY_UNKNOWN, classify(CODE_REPLY_UNKNOWN), receive_count)
        outcome.reason = "no reply by this wamid yet; looking again shortly"
    else:
        outcome.reason = "no reply of ours by this wamid: dropped"


def _lifecycle(outcome: StatusOutcome, before: ReplyRecord, name: str, at: float) -> None:
    after = dict(before.statuses)
    after.setdefault(name, at)
    previous, current = reply_state(before.statuses), reply_state(after)
    reply = before.reply
    if previous != current:
        outcome.change = StatusChange(
            reply_wamid=reply.reply_wamid,
            inbound_wamid=reply.inbound_wamid,
            kind=reply.kind,
            previous=previous,
            current=current,
            at=at,
            error_code=outcome.error_code if current == FAILED else None,
        )
    outcome.first_delivered = not reached(before.statuses, DELIVERED) and reached(after, DELIVERED)
    outcome.first_read = not reached(before.statuses, READ) and reached(after, READ)
    if outcome.first_delivered and reply.inbound_at is not None:
        outcome.delivery_latency_ms = max(0.0, (at - reply.inbound_at) * 1000)
    outcome.first_failure = name == FAILED and FAILED not in before.statuses
    outcome.first_report = name not in before.statuses


@dataclass(frozen=True, slots=True)
class _Plan:
    kind: str | None  # FALLBACK, RESEND, or None: nothing to send
    message: Mapping[str, Any] | None
    reason: str


class _FollowUp:
    """The follow-up of one reply's late failure, for the status record that owns it."""

    def __init__(
        self, outcome: StatusOutcome, before: ReplyRecord, consumer: Consumer, token: str
    ) -> None:
        self.outcome = outcome
        self.before = before
        self.reply = before.reply
        self.consumer = consumer
        self.token = token
        self.code = outcome.error_code or "unknown"

    def run(self) -> None:
        outcome, done = self.outcome, self.before.follow_up
        owner = done.owner
        if owner is not None and owner != self.token:
            outcome.follow_up = FollowUpResult.TAKEN
            outcome.follow_up_reason = "another status record took this reply's follow-up"
            return
        plan = self._plan()
        outcome.follow_up_kind, outcome.follow_up_reason = plan.kind, plan.reason
        if plan.kind is None or plan.message is None:
            outcome.follow_up = FollowUpResult.NOT_NEEDED
            return
        if done.reply_wamid is not None or done.gave_up:
            outcome.follow_up = FollowUpResult.DONE_BEFORE
            outcome.follow_up_wamid = done.reply_wamid
            return
        if owner is None:
            attempt = 1  # the write that took the follow-up claimed its first attempt
        elif done.in_doubt:
            # This record's earlier run claimed a send and never recorded what became of it.
            outcome.follow_up = FollowUpResult.UNCERTAIN
            return
        else:
            attempt = done.refused + 1
            try:
                claimed = self.consumer.ledger.claim_follow_up(
                    self.reply.reply_wamid,
                    owner=self.token,
                    attempt=attempt,
                    now=self.consumer.clock().timestamp(),
                )
            except StoreUnavailable as error:
                self._retry_store(error)
                return
            if not claimed:
                outcome.follow_up = FollowUpResult.DONE_BEFORE
                return
        self._send(plan, attempt)

    def _plan(self) -> _Plan:
        """The error policy applied to a late failure (see the module docstring)."""
        reply, code = self.reply, self.code
        template = self.consumer.rules.fallback_template
        free_form = reply.message.get("type") != "template"
        if code == WINDOW_CLOSED_CODE:
            return self._window_closed_plan(free_form=free_form)
        policy = classify(code)
        if policy.action is Action.PERMANENT:
            return _Plan(None, None, f"{policy.name}: permanent, recorded")
        if reply.generation >= MAX_RESENDS:
            return _Plan(None, None, f"resent {reply.generation} times already")
        if free_form and template is not None and self._window_closed():
            return _Plan(FALLBACK, rendered(template), "resend past the 24-hour window: template")
        return _Plan(RESEND, reply.message, f"{policy.name}: resend what was sent")

    def _window_closed_plan(self, *, free_form: bool) -> _Plan:
        template = self.consumer.rules.fallback_template
        if not free_form:
            return _Plan(None, None, "a template was refused (131047): nothing else may go")
        if template is None:
            return _Plan(None, None, "window closed (131047) and no fallbackTemplate")
        return _Plan(FALLBACK, rendered(template), "window closed (131047): fallback template")

    def _window_closed(self) -> bool:
        inbound_at = self.reply.inbound_at
        now = self.consumer.clock().timestamp()
        return inbound_at is not None and now - inbound_at > SERVICE_WINDOW.total_seconds()

    def _send(self, plan: _Plan, attempt: int) -> None:
        assert plan.kind is not None
        assert plan.message is not None
        outcome, reply = self.outcome, self.reply
        graph = self.consumer.graph
        thread_on = reply.inbound_wamid if plan.kind == FALLBACK or reply.slot == 0 else None
        kind, message = plan.kind, plan.message
        try:
            body = addressed_body(reply.recipient, message, reply_to=thread_on)
            sent_id = graph.send(reply.phone_number_id, body)
        except InvalidOutbound as invalid:
            self._give_up(attempt, "invalid_outbound", str(invalid))
            return
        except GraphApiError as error:
            outcome.follow_up_failures.append(_failure(error))
            template = self.consumer.rules.fallback_template
            if error.code != WINDOW_CLOSED_CODE or kind == FALLBACK or template is None:
                self._refused(error, attempt)
                return
            # A free-form resend the window refused: the template instead, at once.
            kind, message = FALLBACK, rendered(template)
            try:
                body = addressed_body(reply.recipient, message, reply_to=reply.inbound_wamid)
                sent_id = graph.send(reply.phone_number_id, body)
            except GraphApiError as fallback_error:
                outcome.follow_up_failures.append(_failure(fallback_error))
                self._refused(fallback_error, attempt)
                return
        outcome.follow_up = FollowUpResult.SENT
        outcome.follow_up_kind = kind
        outcome.follow_up_wamid = sent_id or ""
        follow_up = SentReply(
            reply_wamid=sent_id or "",
            inbound_wamid=reply.inbound_wamid,
            slot=reply.slot,
            kind=kind,
            phone_number_id=reply.phone_number_id,
            recipient=dict(reply.recipient),
            message=dict(message),
            decision=f"late-{self.code}",
            sent_at=self.consumer.clock().timestamp(),
            inbound_at=reply.inbound_at,
            in_reply_to=reply.in_reply_to,
            burst=reply.burst,
            conversation_id=reply.conversation_id,
            original=reply.reply_wamid,
            generation=reply.generation + 1,
        )
        try:
            self.consumer.ledger.record_follow_up(follow_up)
        except StoreUnavailable as error:
            # Meta accepted it: never retried (that would send it twice). The claim stays, so a
            # later run of this record treats the follow-up as possibly sent.
            outcome.store_write_failed = True
            outcome.reason = str(error)

    def _refused(self, error: GraphApiError, attempt: int) -> None:
        policy = classify(error.code, is_transient=error.is_transient)
        if policy.action is Action.PERMANENT or attempt >= self.consumer.max_attempts:
            self._give_up(attempt, error.code, f"{policy.name}, attempt {attempt}")
            return
        try:
            self.consumer.ledger.settle_follow_up(
                self.reply.reply_wamid, refused=attempt, error_code=error.code, gave_up=False
            )
        except StoreUnavailable as store_error:
            # The claim stays: the next run treats the send as possibly made (never twice).
            self.outcome.store_write_failed = True
            self.outcome.reason = str(store_error)
        self.outcome.follow_up = FollowUpResult.RETRY
        self.outcome.retry = Retry(error.code, policy, attempt, error.retry_after_seconds)

    def _give_up(self, attempt: int, code: str, why: str) -> None:
        self.outcome.follow_up = FollowUpResult.GAVE_UP
        self.outcome.follow_up_reason = f"gave up ({code}): {why}"
        try:
            self.consumer.ledger.settle_follow_up(
                self.reply.reply_wamid, refused=attempt, error_code=code, gave_up=True
            )
        except StoreUnavailable as error:
            self.outcome.store_write_failed = True
            self.outcome.reason = str(error)

    def _retry_store(self, error: StoreUnavailable) -> None:
        self.outcome.reason = str(error)
        self.outcome.retry = Retry(
            CODE_STORE_UNAVAILABLE,
            classify(CODE_STORE_UNAVAILABLE),
            self.before.follow_up.refused + 1,
        )


def _failure(error: GraphApiError) -> FollowUpFailure:
    return FollowUpFailure(
        code=error.code,
        error_class=classify(error.code, is_transient=error.is_transient).name,
        http_status=error.http_status,
        fbtrace_id=error.fbtrace_id,
        details=error.details,
    )
