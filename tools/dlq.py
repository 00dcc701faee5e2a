"""Operate the dead-letter queue: see what is in it and why, and move it back.

    python -m tools.dlq inspect [--limit 50] [--why] [--json]
    python -m tools.dlq redrive [--max-per-second N]
    python -m tools.dlq status
    (each also takes --stack-name NAME, or --dlq-url URL [--queue-url URL], and --region;
    or --local / --deployed to choose between a running `make run` and the stack)

Queue URLs come from the stack's CloudFormation outputs unless given. While a `make run` is
running (its `.local/pipeline.json`) and no stack or queue is named, the commands work on the
local pipeline's queues in moto instead, and say so (`--local` insists on it, `--deployed`
ignores it); moto has no StartMessageMoveTask, so `redrive` explains what to do instead.

`inspect` never deletes: it holds each message for a few seconds while it reads the queue (so it
sees each one once) and then makes them all visible again. It prints the queued record's facts -
wamid, message type, masked sender, receive count, age - never message text or a full phone
number; `--why` asks the consumer's logs (CloudWatch Logs Insights) what happened to those wamids.
`redrive` uses SQS's own message-move task (`StartMessageMoveTask`), which moves the messages back
to the inbound queue at a pace SQS controls and can be cancelled from the console.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from functions.adapters.dead_letters import (
    ATTRIBUTE_ATTEMPTS,
    ATTRIBUTE_ERROR_CLASS,
    ATTRIBUTE_ERROR_CODE,
    ATTRIBUTE_LAST_ATTEMPT_AT,
    ATTRIBUTE_REASON,
)
from functions.common.masking import mask_phone
from functions.domain.whatsapp.queued_record import (
    QueuedRecord,
    QueuedStatus,
    UnreadableRecord,
    read_record,
)
from infra.constants import (
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_DLQ_URL,
    OUTPUT_QUEUE_URL,
    STACK_NAME,
)
from local_pipeline.state import (
    NoRunningPipeline,
    PipelineState,
    running_pipeline,
    state_dir_from_env,
)
from tools.stack_outputs import stack_outputs

SQS_RECEIVE_LIMIT = 10
DEFAULT_HOLD_SECONDS = 30
DEFAULT_INSPECT_LIMIT = 50
LOGS_LOOKBACK_HOURS = 24 * 14  # as long as the DLQ keeps a message
LOGS_QUERY_TIMEOUT_SECONDS = 60.0


class DlqToolError(Exception):
    """Something the operator has to fix (a missing output, an unknown queue); printed plainly."""


@dataclass(frozen=True, slots=True)
class Queues:
    dlq_url: str
    queue_url: str | None = None
    consumer_log_group: str | None = None


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One dead-lettered message, as much as can be shown without personal data."""

    message_id: str
    receive_count: int
    age_seconds: float | None
    wamid: str | None = None
    message_type: str | None = None
    sender: str | None = None  # masked
    business_number_id: str | None = None
    received_at: str | None = None
    unreadable: str | None = None  # why the body is not a record (a poison message)
    source_queue_arn: str | None = None
    # Why it is here, as the consumer wrote it on the dead letter (absent: SQS's redrive backstop
    # moved it after maxReceiveCount receives - a run that kept dying).
    reason: str | None = None
    error_code: str | None = None
    error_class: str | None = None
    attempts: int | None = None
    last_attempt_at: str | None = None


# --- finding the queues -----------------------------------------------------------------------


def stack_queues(cloudformation: Any, stack_name: str) -> Queues:
    """The queue URLs and the consumer's log group from the stack's outputs."""
    outputs = stack_outputs(cloudformation, stack_name)
    if OUTPUT_DLQ_URL not in outputs:
        raise DlqToolError(f"stack {stack_name} has no {OUTPUT_DLQ_URL} output")
    return Queues(
        dlq_url=outputs[OUTPUT_DLQ_URL],
        queue_url=outputs.get(OUTPUT_QUEUE_URL),
        consumer_log_group=outputs.get(OUTPUT_CONSUMER_LOG_GROUP),
    )


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


# --- inspect --------------------------------------------------------------------------------


def inspect_dlq(
    sqs: Any,
    dlq_url: str,
    *,
    limit: int = DEFAULT_INSPECT_LIMIT,
    hold_seconds: int = DEFAULT_HOLD_SECONDS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[DlqEntry]:
    """Read up to `limit` messages without deleting any, then make them visible again.

    Each message is held for `hold_seconds` while the queue is read so none is counted twice.
    In a FIFO queue SQS hands out a message group's next messages only when the earlier ones
    are no longer held, so a long conversation may show only its first batch per run.
    """
    held: list[dict[str, Any]] = []
    try:
        while len(held) < limit:
            batch = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, limit - len(held)),
                VisibilityTimeout=hold_seconds,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            held.extend(batch)
    finally:
        _release(sqs, dlq_url, held)
    return [_entry(message, now()) for message in held]


def _release(sqs: Any, queue_url: str, messages: Sequence[dict[str, Any]]) -> None:
    """Make held messages visible again at once (visibility timeout 0)."""
    for start in range(0, len(messages), SQS_RECEIVE_LIMIT):
        chunk = messages[start : start + SQS_RECEIVE_LIMIT]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(chunk)
            ],
        )


def _entry(message: dict[str, Any], now: datetime) -> DlqEntry:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    age = (now.timestamp() * 1000 - int(sent)) / 1000 if sent else None
    letter = {
        name: value.get("StringValue")
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    attempts = letter.get(ATTRIBUTE_ATTEMPTS)
    common = {
        "message_id": message["MessageId"],
        "receive_count": int(attributes.get("ApproximateReceiveCount", 0)),
        "age_seconds": age,
        "source_queue_arn": attributes.get("DeadLetterQueueSourceArn"),
        "reason": letter.get(ATTRIBUTE_REASON),
        "error_code": letter.get(ATTRIBUTE_ERROR_CODE),
        "error_class": letter.get(ATTRIBUTE_ERROR_CLASS),
        "attempts": int(attempts) if attempts and attempts.isdigit() else None,
        "last_attempt_at": letter.get(ATTRIBUTE_LAST_ATTEMPT_AT),
    }
    try:
        record = read_record(message.get("Body", ""))
    except UnreadableRecord as error:
        return DlqEntry(**common, unreadable=str(error))
    if isinstance(record, QueuedStatus):
        # A status of one of our replies (from the status queue's DLQ): its reply's wamid.
        return DlqEntry(
            **common,
            wamid=record.reply_wamid,
            message_type=f"status:{record.status}",
            business_number_id=record.business.phone_number_id,
            received_at=record.received_at.isoformat(timespec="seconds"),
        )
    assert isinstance(record, QueuedRecord)
    received = record.received
    return DlqEntry(
        **common,
        wamid=record.wamid,
        message_type=received.message.type,
        sender=mask_phone(received.sender_key),
        business_number_id=received.business.phone_number_id,
        received_at=record.received_at.isoformat(timespec="seconds"),
    )


# What `--why` shows of each consumer log line (docs/contract.md, "Metrics and log fields").
WHY_FIELDS = ("wamid", "result", "error_code", "error_class", "reason", "receive_count")
LOCAL_WHY_LIMIT = 200


def why_query(wamids: Sequence[str]) -> str:
    """The CloudWatch Logs Insights query that shows what the consumer logged for these wamids."""
    quoted = ", ".join(json.dumps(w) for w in wamids)
    return (
        f"fields @timestamp, {', '.join(WHY_FIELDS)}\n"
        f"| filter wamid in [{quoted}]\n"
        "| sort @timestamp desc\n"
        "| limit 200"
    )


def run_logs_query(
    logs: Any,
    log_group: str | Sequence[str],
    query: str,
    *,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    timeout_seconds: float = LOGS_QUERY_TIMEOUT_SECONDS,
) -> list[dict[str, str]]:
    """Run a Logs Insights query over one or more log groups and wait (polling once a second)
    for its rows."""
    end = int(now())
    groups: dict[str, Any] = (
        {"logGroupName": log_group} if isinstance(log_group, str) else {"logGroupNames": log_group}
    )
    query_id = logs.start_query(
        **groups,
        startTime=end - LOGS_LOOKBACK_HOURS * 3600,
        endTime=end,
        queryString=query,
    )["queryId"]
    deadline = now() + timeout_seconds
    while True:
        response = logs.get_query_results(queryId=query_id)
        if response["status"] in {"Complete", "Failed", "Cancelled", "Timeout"}:
            break
        if now() >= deadline:
            raise DlqToolError(f"the Logs Insights query {query_id} did not finish in time")
        sleep(1.0)
    if response["status"] != "Complete":
        raise DlqToolError(f"the Logs Insights query ended {response['status']}")
    return [
        {f["field"]: f["value"] for f in row if not f["field"].startswith("@ptr")}
        for row in response.get("results", [])
    ]


def local_log_rows(log_path: Path, wamids: Sequence[str]) -> list[dict[str, Any]]:
    """What the local consumer logged for these wamids (its JSON log file, `make run`), newest
    first: the same fields `--why` asks CloudWatch for."""
    wanted, rows = set(wamids), []
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise DlqToolError(f"cannot read the consumer log {log_path}: {error.strerror}") from None
    for line in reversed(lines):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("wamid") in wanted:
            fields = ("timestamp", *WHY_FIELDS)
            rows.append({field: document[field] for field in fields if field in document})
            if len(rows) == LOCAL_WHY_LIMIT:
                break
    return rows


def render_entries(entries: Sequence[DlqEntry], out: TextIO) -> None:
    if not entries:
        out.write("The dead-letter queue is empty.\n")
        return
    out.write(f"{len(entries)} message(s) in the dead-letter queue:\n")
    for entry in entries:
        age = "?" if entry.age_seconds is None else _duration(entry.age_seconds)
        head = f"- {entry.message_id}  receives={entry.receive_count}  age={age}"
        head += f"\n    why: {_why(entry)}"
        if entry.unreadable is not None:
            out.write(f"{head}\n    unreadable record (poison): {entry.unreadable}\n")
            continue
        out.write(
            f"{head}\n    wamid={entry.wamid}  type={entry.message_type}  "
            f"from={entry.sender}  to_number_id={entry.business_number_id}  "
            f"received_at={entry.received_at}\n"
        )


def _why(entry: DlqEntry) -> str:
    if entry.reason is None:
        return (
            "no reason recorded: SQS moved it after maxReceiveCount receives (a consumer run "
            "that kept failing as a whole); see --why for its logs"
        )
    return (
        f"{entry.reason}  error_code={entry.error_code}  class={entry.error_class}  "
        f"attempts={entry.attempts}  last_attempt_at={entry.last_attempt_at}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m{secs:02d}s"


# --- redrive --------------------------------------------------------------------------------


def start_redrive(
    sqs: Any, dlq_url: str, queue_url: str, *, max_per_second: int | None = None
) -> str:
    """Start SQS's message-move task from the DLQ to the inbound queue; returns its handle."""
    request: dict[str, Any] = {
        "SourceArn": queue_arn(sqs, dlq_url),
        "DestinationArn": queue_arn(sqs, queue_url),
    }
    if max_per_second is not None:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    return str(sqs.start_message_move_task(**request)["TaskHandle"])


def redrive_status(sqs: Any, dlq_url: str) -> list[dict[str, Any]]:
    """The DLQ's most recent message-move tasks (SQS keeps the last ones for 14 days)."""
    tasks = sqs.list_message_move_tasks(SourceArn=queue_arn(sqs, dlq_url), MaxResults=10)
    return list(tasks.get("Results", []))


def render_tasks(tasks: Sequence[dict[str, Any]], out: TextIO) -> None:
    if not tasks:
        out.write("No message-move task has run from this dead-letter queue.\n")
        return
    for task in tasks:
        moved = task.get("ApproximateNumberOfMessagesMoved", 0)
        total = task.get("ApproximateNumberOfMessagesToMove", "?")
        started = task.get("StartedTimestamp")
        when = (
            datetime.fromtimestamp(int(started) / 1000, UTC).isoformat(timespec="seconds")
            if started
            else "?"
        )
        line = f"- {task.get('Status', '?')}: {moved}/{total} moved, started {when}"
        if task.get("FailureReason"):
            line += f", failure: {task['FailureReason']}"
        out.write(line + "\n")


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--stack-name", help=f"read queue URLs from its outputs (default {STACK_NAME})"
    )
    where.add_argument("--dlq-url", help="the dead-letter queue (instead of the stack outputs)")
    where.add_argument("--queue-url", help="the inbound queue (redrive destination)")
    where.add_argument("--region", help="AWS region (default: your AWS configuration)")
    which = where.add_mutually_exclusive_group()
    which.add_argument("--local", action="store_true", help="the running `make run` (moto)")
    which.add_argument("--deployed", action="store_true", help="the stack, even if `make run` runs")
    parser = argparse.ArgumentParser(prog="python -m tools.dlq", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", parents=[where], help="list DLQ messages (masked)")
    inspect.add_argument("--limit", type=int, default=DEFAULT_INSPECT_LIMIT)
    inspect.add_argument("--hold-seconds", type=int, default=DEFAULT_HOLD_SECONDS)
    inspect.add_argument("--why", action="store_true", help="query the consumer's logs for them")
    inspect.add_argument("--json", action="store_true", help="one JSON object per message")
    redrive = commands.add_parser("redrive", parents=[where], help="move the DLQ back")
    redrive.add_argument("--max-per-second", type=int, help="pace of the move (default: SQS's)")
    commands.add_parser("status", parents=[where], help="progress of recent redrives")
    return parser


def _queues(args: argparse.Namespace, session: Any, *, need_queue: bool) -> Queues:
    if args.dlq_url and (args.queue_url or not need_queue):
        return Queues(dlq_url=args.dlq_url, queue_url=args.queue_url)
    stack_name = args.stack_name or STACK_NAME
    found = stack_queues(session.client("cloudformation"), stack_name)
    queues = Queues(
        dlq_url=args.dlq_url or found.dlq_url,
        queue_url=args.queue_url or found.queue_url,
        consumer_log_group=found.consumer_log_group,
    )
    if need_queue and not queues.queue_url:
        raise DlqToolError(f"stack {stack_name} has no {OUTPUT_QUEUE_URL} output")
    return queues


def local_pipeline(args: argparse.Namespace) -> PipelineState | None:
    """The running `make run` to work on, if that is what the operator asked for: `--local`, or
    nothing named at all while one is running."""
    if args.deployed or (
        not args.local and (args.stack_name or args.dlq_url or args.queue_url or args.region)
    ):
        return None
    try:
        return running_pipeline(state_dir_from_env())
    except NoRunningPipeline as error:
        if args.local:
            raise DlqToolError(str(error)) from None
        return None


NO_LOCAL_REDRIVE = (
    "moto, which stands in for SQS under `make run`, does not implement StartMessageMoveTask, "
    "so there is no redrive locally: send the webhooks again instead (the banner's curl, or "
    "`make demo`); `make redrive` moves a deployed stack's DLQ back"
)


def inspect_local(args: argparse.Namespace, pipeline: PipelineState, out: TextIO) -> None:
    from local_pipeline.emulator import aws_client

    entries = inspect_dlq(
        aws_client("sqs", pipeline.aws_endpoint),
        pipeline.dlq_url,
        limit=args.limit,
        hold_seconds=args.hold_seconds,
    )
    if args.json:
        for entry in entries:
            out.write(json.dumps(asdict(entry)) + "\n")
        return
    out.write(f"Local pipeline (`make run`, moto at {pipeline.aws_endpoint}).\n")
    render_entries(entries, out)
    wamids = [e.wamid for e in entries if e.wamid]
    if not wamids:
        return
    if args.why:
        rows = local_log_rows(Path(pipeline.consumer_log), wamids)
        out.write(f"What the consumer logged ({len(rows)} lines, {pipeline.consumer_log}):\n")
        for row in rows:
            out.write(json.dumps(row) + "\n")
    else:
        out.write(f"Why they failed: add --why (reads {pipeline.consumer_log}).\n")


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    args = _parser().parse_args(argv)
    try:
        pipeline = local_pipeline(args)
        if pipeline is None:
            run_deployed(args, out)
        elif args.command == "inspect":
            inspect_local(args, pipeline, out)
        else:
            sys.stderr.write(f"make {args.command}: {NO_LOCAL_REDRIVE}\n")
            return 2
    except (DlqToolError, ClientError, BotoCoreError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    return 0


def run_deployed(args: argparse.Namespace, out: TextIO) -> None:
    import boto3

    session = boto3.session.Session(region_name=args.region)
    queues = _queues(args, session, need_queue=args.command == "redrive")
    sqs = session.client("sqs")
    if args.command == "inspect":
        entries = inspect_dlq(sqs, queues.dlq_url, limit=args.limit, hold_seconds=args.hold_seconds)
        if args.json:
            for entry in entries:
                out.write(json.dumps(asdict(entry)) + "\n")
        else:
            render_entries(entries, out)
        wamids = [e.wamid for e in entries if e.wamid]
        if wamids:
            query = why_query(wamids)
            if args.why and queues.consumer_log_group:
                rows = run_logs_query(session.client("logs"), queues.consumer_log_group, query)
                out.write(f"What the consumer logged ({len(rows)} lines):\n")
                for row in rows:
                    out.write(json.dumps(row) + "\n")
            else:
                out.write(
                    "Why they failed - run in CloudWatch Logs Insights on the consumer's log "
                    f"group ({queues.consumer_log_group or 'see the stack outputs'}), "
                    "or add --why:\n" + query + "\n"
                )
    elif args.command == "redrive":
        if queues.queue_url is None:
            raise DlqToolError("no inbound queue to redrive to: pass --queue-url")
        handle = start_redrive(
            sqs, queues.dlq_url, queues.queue_url, max_per_second=args.max_per_second
        )
        out.write(f"Redrive started: task {handle}\nProgress: python -m tools.dlq status\n")
        render_tasks(redrive_status(sqs, queues.dlq_url)[:1], out)
    else:
        render_tasks(redrive_status(sqs, queues.dlq_url), out)


if __name__ == "__main__":
    raise SystemExit(main())
