"""The plan step: what to send in answer to a message (or a burst of them), from the reply rules
or from the user's reply handler.

The rules are pure and cheap, so their plan is known before the ledger is asked (and slot 0 is
claimed in the same write). The handler is user code that may be slow or have effects, so it
runs only once the ledger has given this attempt the message: a duplicate never runs it.

Either way nothing is sent to the business's own numbers or to a message without a sender, and a
message older than Meta's 24-hour window gets the configured template instead of free-form text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from functions.domain.consumer.ports import ReplyHandler
from functions.domain.consumer.reply_handler import call_handler, handler_event
from functions.domain.consumer.reply_rules import ReplyRules, reply_recipient
from functions.domain.whatsapp.outbound import (
    InvalidOutbound,
    MetaMessage,
    OutboundMessage,
    Reaction,
    Recipient,
    Template,
)
from functions.domain.whatsapp.outbound_dicts import parse_replies
from functions.domain.whatsapp.queued_record import QueuedRecord

# Meta's customer-service window: free-form replies only within 24 h of the user's message.
SERVICE_WINDOW: Final = timedelta(hours=24)
DECISION_HANDLER: Final = "handler"
DECISION_WINDOW_CLOSED: Final = "window-closed"


@dataclass(frozen=True, slots=True)
class Plan:
    replies: tuple[OutboundMessage, ...]
    reason: str  # "rule:<name>", "default", "handler", "window-closed", "own-number", ...
    recipient: Recipient | None  # None: nowhere to reply to (the plan then has no replies)
    thread_on: str  # the wamid the first reply threads on
    handler_latency_ms: float | None = None

    @property
    def typing(self) -> bool:
        """Whether "typing…" fits: something other than a reaction is coming."""
        return any(not is_reaction(reply) for reply in self.replies)


class InvalidReplies(InvalidOutbound):
    """The handler returned something that cannot be sent; the message says what and where."""

    def __init__(self, reason: str, *, latency_ms: float) -> None:
        super().__init__(reason)
        self.latency_ms = latency_ms


def rules_plan(rules: ReplyRules, burst: Sequence[QueuedRecord], *, now: datetime) -> Plan:
    """The rules answer the latest message of the burst they have a reply for (a reaction at
    the end of a burst does not hide the question before it)."""
    for queued in reversed(burst):
        decision = rules.decide(queued.received)
        if decision.reply is not None:
            plan = Plan((decision.reply,), decision.reason, decision.recipient, queued.wamid)
            return _within_window(plan, queued, rules, now=now)
    last = burst[-1]
    decision = rules.decide(last.received)
    return Plan((), decision.reason, decision.recipient, last.wamid)


def handler_plan(
    handler: ReplyHandler,
    rules: ReplyRules,
    burst: Sequence[QueuedRecord],
    *,
    timeout_seconds: float,
    now: datetime,
) -> Plan:
    """Ask the handler. Raises `HandlerFailed` (it raised, or ran out of time) or
    `InvalidReplies` (what it returned cannot be sent)."""
    last = burst[-1]
    refusal = rules.unanswerable(last.received)
    if refusal is not None:
        return Plan((), refusal, None, last.wamid)  # never reaches the handler
    answer = call_handler(handler, handler_event(burst), timeout_seconds=timeout_seconds)
    try:
        replies = parse_replies(answer.returned, answering=last.wamid)
    except InvalidOutbound as invalid:
        raise InvalidReplies(str(invalid), latency_ms=answer.latency_ms) from None
    plan = Plan(
        tuple(replies),
        DECISION_HANDLER,
        reply_recipient(last.received),
        last.wamid,
        handler_latency_ms=answer.latency_ms,
    )
    return _within_window(plan, last, rules, now=now)


def _within_window(plan: Plan, queued: QueuedRecord, rules: ReplyRules, *, now: datetime) -> Plan:
    """Free-form replies to a message older than Meta's 24-hour window (a backlog redriven days
    later) would be refused with 131047: the plan's templates stay, the rest become the
    fallback template (once).

    Only this message's own time is known here; had the user written again since, the window
    would be open and the template is merely the safe choice. Without a template the plan is
    tried as it is and Meta decides."""
    template = rules.fallback_template
    sent_at = queued.received.message.sent_at
    free_form = [reply for reply in plan.replies if not is_template(reply)]
    if not free_form or template is None or sent_at is None or now - sent_at <= SERVICE_WINDOW:
        return plan
    templates = tuple(reply for reply in plan.replies if is_template(reply))
    return Plan(
        templates or (template,),
        DECISION_WINDOW_CLOSED,
        plan.recipient,
        plan.thread_on,
        handler_latency_ms=plan.handler_latency_ms,
    )


def is_template(message: OutboundMessage) -> bool:
    return isinstance(message, Template) or (
        isinstance(message, MetaMessage) and message.type == "template"
    )


def is_reaction(message: OutboundMessage) -> bool:
    return isinstance(message, Reaction) or (
        isinstance(message, MetaMessage) and message.type == "reaction"
    )
