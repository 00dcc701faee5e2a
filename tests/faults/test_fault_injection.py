"""Fault injection through the local pipeline (issue 11, "Proof of reliability"): thousands of
signed webhooks — duplicated, out of order, batched over several business numbers — through the
real ingest handler into moto's FIFO queue, answered by the real consumer handler in its own
process while the fake Graph API answers 130429, 131056, 5xx pages, resets, slow answers, no
answer before the deadline and a burst of 190 (the token rotated in the secret during it), SQS
refuses entries, calls and answers at ingest, and the consumer SIGKILLs itself mid-batch —
between a send and its ledger record among other places. Time is virtual (tests/faults/harness.py).

Then every inbound message must have ended one way: exactly one reply Meta accepted, or on the
DLQ with its reason, or recorded in the ledger as a permanent failure (with its code) or as
uncertain (a run died mid-send: not sent again) — never two replies, never silence. The counts
are printed in pytest's terminal summary. What this can and cannot prove: docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from functions.adapters import aws
from functions.common.observability import logger
from functions.ingest import app as ingest_app
from infra.constants import INBOUND_QUEUE_NAME
from local_pipeline.fake_graph import addressee
from tests.faults.harness import FaultRun, IngestQueueFaults, Settings, inbound_wamid
from tests.faults.plan import traffic

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SETTINGS = Settings(
    seed=20261130,
    conversations=500,
    messages=1200,
    status_posts=1300,
    ticks=120,
    tick_seconds=10.0,
    consumer_timeout_seconds=4.0,
    kill_weights={"after_send": 3},  # the point "never twice" rests on
    kill_timers=2,
    invocations_between_kills=25,
    send_fault_probability=0.25,
    max_faulty_sends=4,
    hang_from_invocations=(60, 230),
    token_expires_at_invocation=150,
    token_rotated_at_invocation=156,
)
ACCEPTED = ("ok", "hang")  # the fake answered 200 with a new wamid ("hang": slowly, in time)


@dataclass
class Ending:
    wamid: str
    accepted: int  # replies Meta accepted for it
    status: str | None  # the ledger's
    outcome: str | None
    error_code: str | None
    dead_letters: list[dict[str, str]]


def test_every_message_ends_answered_once_or_accounted_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    started = time.monotonic()
    run = FaultRun(SETTINGS, tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(run.stop)
        for name, value in run.start().items():
            monkeypatch.setenv(name, value)
        assert run.clock is not None
        monkeypatch.setattr(ingest_app, "datetime", run.clock.datetime_class())
        ingest_sqs = aws.sqs(aws.INGEST_LIMITS)
        monkeypatch.setattr(
            ingest_sqs,
            "send_message_batch",
            IngestQueueFaults(ingest_sqs.send_message_batch, SETTINGS.seed, run.tally),
        )
        # The ingest's JSON lines (one per POST) go to a file beside the consumer's.
        handler: Any = logger.registered_handler
        ingest_log = stack.enter_context((tmp_path / "ingest.log").open("w", encoding="utf-8"))
        stack.callback(handler.setStream, handler.setStream(ingest_log))
        plan = traffic(
            SETTINGS.seed,
            start=run.clock.now(),
            conversations=SETTINGS.conversations,
            messages=SETTINGS.messages,
            status_posts=SETTINGS.status_posts,
            ticks=SETTINGS.ticks,
            tick_seconds=SETTINGS.tick_seconds,
        )
        run.run(plan, ingest_app.handler)
        endings, problems = check(run)
        summary = report(run, endings, wall_seconds=time.monotonic() - started)
    record_property("fault_suite", summary)
    print(summary)
    assert not problems, "\n".join(problems[:40])


def check(run: FaultRun) -> tuple[dict[str, Ending], list[str]]:
    """Each inbound message's ending, and every way one broke the contract."""
    messages = run.traffic.messages
    problems: list[str] = list(run.tally.unexpected)
    accepted: Counter[str] = Counter()
    for request in run.graph.requests:
        wamid = inbound_wamid(request)
        if request.kind != "send" or request.answer not in ACCEPTED:
            continue
        if addressee(request.json) is None:
            continue  # the body never fully arrived (its sender died): Meta answered 400
        if wamid not in messages:
            problems.append(f"a reply to {wamid}, which is no inbound message (a status?)")
            continue
        message = messages[wamid]
        accepted[wamid] += 1
        if request.phone_number_id != message.number[0] or request.json.get("to") != message.sender:
            problems.append(f"the reply to {wamid} left from the wrong number or to someone else")
    letters: dict[str, list[dict[str, str]]] = {}
    for letter in run.dead_letters():
        wamid = json.loads(letter["Body"]).get("wamid", "")
        attributes = letter.get("MessageAttributes") or {}
        letters.setdefault(wamid, []).append(
            {name: value.get("StringValue", "") for name, value in attributes.items()}
        )
    ledger = run.ledger()
    endings: dict[str, Ending] = {}
    for wamid in messages:
        item = ledger.get(wamid, {})
        ending = Ending(
            wamid=wamid,
            accepted=accepted[wamid],
            status=item.get("status"),
            outcome=item.get("outcome"),
            error_code=item.get("error_code"),
            dead_letters=letters.get(wamid, []),
        )
        endings[wamid] = ending
        problems += [f"{wamid}: {problem}" for problem in _broken(ending)]
    assert run.clock is not None
    left = run.clock.queue(INBOUND_QUEUE_NAME)["messages"]
    if left:
        problems.append(f"{left} records are still on the inbound queue")
    return endings, problems


def _broken(ending: Ending) -> list[str]:
    problems = [f"{ending.accepted} replies accepted by Meta"] if ending.accepted > 1 else []
    problems += [
        f"on the DLQ without its reason: {letter}"
        for letter in ending.dead_letters
        if not letter.get("DeadLetterReason") or not letter.get("ErrorCode")
    ]
    if ending.status == "dead_lettered":
        if not ending.dead_letters:
            problems.append("dead-lettered in the ledger, but not on the DLQ")
        if ending.accepted:
            problems.append("dead-lettered, yet Meta accepted a reply")
        return problems
    if ending.status != "done":
        if not ending.dead_letters:  # SQS's own redrive would have put it there
            problems.append(
                f"silence: ledger status {ending.status!r}, {ending.accepted} replies, "
                "not on the DLQ"
            )
        return problems
    expected_replies = _REPLIES_BY_OUTCOME.get(str(ending.outcome))
    if expected_replies is None:
        problems.append(f"silence: done as {ending.outcome!r}, {ending.accepted} replies")
    elif ending.accepted not in expected_replies:
        problems.append(f"done as {ending.outcome}, yet Meta accepted {ending.accepted} replies")
    if ending.outcome == "permanent_failure" and not ending.error_code:
        problems.append("a permanent failure without its code")
    return problems


# A message the ledger finished: how many replies Meta may have accepted for it. Uncertain: a run
# died after claiming the reply and before recording it, so it is not sent again (0 or 1).
_REPLIES_BY_OUTCOME: Final = {
    "replied": (1,),
    "duplicate": (1,),
    "permanent_failure": (0,),
    "uncertain": (0, 1),
}


def report(run: FaultRun, endings: dict[str, Ending], *, wall_seconds: float) -> str:
    tally = run.tally
    kinds: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    permanent: Counter[str] = Counter()
    uncertain: Counter[str] = Counter()
    for ending in endings.values():
        if ending.status == "dead_lettered" or (ending.dead_letters and ending.status != "done"):
            kinds["dead-lettered"] += 1
            letter = ending.dead_letters[0] if ending.dead_letters else {}
            dead[f"{letter.get('DeadLetterReason')} {letter.get('ErrorCode')}"] += 1
        elif ending.outcome == "permanent_failure":
            kinds["permanent"] += 1
            permanent[str(ending.error_code)] += 1
        elif ending.outcome == "uncertain":
            kinds["uncertain"] += 1
            uncertain["reply at Meta" if ending.accepted else "no reply at Meta"] += 1
        elif ending.accepted == 1:
            kinds["replied"] += 1
    results = run.consumer_results()
    expired = Counter(str(r.kind) for r in run.graph.requests if r.answer == "unauthorized")
    sqs_dropped = tally.sqs_entries_accepted - len(tally.message_ids)
    posts = sum(tally.posts.values())

    def listing(counter: Counter[str]) -> str:
        return ", ".join(f"{key} {count}" for key, count in counter.most_common()) or "none"

    return "\n".join(
        [
            f"seed {run.settings.seed}: {posts} webhooks ({listing(tally.posts)}), "
            f"{len(endings)} inbound messages, {tally.virtual_seconds / 3600:.1f} virtual hours "
            f"in {wall_seconds:.0f} s",
            f"  ingest answers: {listing(Counter({str(k): v for k, v in tally.answers.items()}))}"
            f"; SQS faults: {listing(tally.ingest_faults)}",
            f"  replied {kinds['replied']} · dead-lettered {kinds['dead-lettered']} "
            f"({listing(dead)}) · permanent {kinds['permanent']} ({listing(permanent)}) · "
            f"uncertain {kinds['uncertain']} ({listing(uncertain)})",
            f"  duplicates dropped: by SQS {sqs_dropped}, by the ledger "
            f"{results['duplicate']} (+ {results['stale_copy']} stale copies of dead letters)",
            f"  consumer: {tally.invocations} invocations, kills {sum(tally.kills.values())} "
            f"({listing(tally.kills)}), timeouts {tally.timeouts}; {tally.receives} records "
            f"received, {tally.redeliveries} redeliveries "
            f"({tally.redelivered_after_kill} after a kill)",
            f"  Graph API faults: {listing(tally.graph_faults)}; 190 while the token was "
            f"rotated: {listing(expired)}; invocations where Meta hung: {tally.hung_invocations}",
        ]
    )
