"""Where is my message? What happened to one customer message, from its wamid, masked.

    python -m tools.trace <inbound wamid> [--stack-name NAME] [--region REGION] [--no-logs]
    python -m tools.trace <inbound wamid> --local           (a running `make run`)
    (either also takes --json: the whole trace as one JSON object)

It reads the consumer's ledger (the message's `msg#` item, each reply's `reply#` item and the
follow-ups of late failures) and the functions' logs (ingest's "message queued" line, the
consumer's line per record and per status), and prints: received and queued, read receipt, the
reply chosen and sent, every status of each reply with its time, fallback or resend, and whether
the message went to the dead-letter queue. Phone numbers are masked; message text is never
shown (only the type of what was sent, and a template's name).

Deployed, the table and the log groups come from the stack's outputs (Logs Insights over the
last 14 days for the log lines). Against `make run` they come from its state file
(`<LOCAL_STATE_DIR>/pipeline.json`: moto's endpoint, the table, the log files).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from functions.adapters.ledger import (
    MESSAGE_PREFIX,
    MESSAGE_TTL_SECONDS,
    REPLY_PREFIX,
    REPLY_TTL_SECONDS,
    message_history,
    reply_record,
)
from functions.common.masking import mask_phone
from functions.domain.consumer.ports import MessageStatus, ReplyRecord
from functions.domain.consumer.statuses import LIFECYCLE, reply_state
from infra.constants import (
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_INGEST_LOG_GROUP,
    OUTPUT_TABLE_NAME,
    STACK_NAME,
)
from tools.dlq import run_logs_query
from tools.stack_outputs import required_output, stack_outputs

DELIVERY_QUEUED = "delivery queued"  # ingest's one line per delivery (functions/ingest)
MAX_FOLLOW_UPS = 10  # a chain of follow-ups is short (MAX_RESENDS + a fallback); a loop is a bug
LOG_FIELDS = (
    "message",
    "queued",
    "wamid",
    "reply_wamid",
    "result",
    "decision",
    "read_receipt",
    "reply_type",
    "sender",
    "message_type",
    "phone_number_id",
    "status",
    "status_at",
    "previous_state",
    "reply_state",
    "error_code",
    "error_class",
    "follow_up",
    "follow_up_kind",
    "follow_up_wamid",
    "reason",
    "receive_count",
    "visibility_timeout_seconds",
)


class TraceError(Exception):
    """Something the operator has to fix (no pipeline, a missing output); printed plainly."""


class ItemStore(Protocol):
    def get(self, key: str) -> Mapping[str, Any] | None:
        """The ledger item with this `id`, as DynamoDB returns it, or None."""
        ...


class LogSource(Protocol):
    def lines(self, wamid: str) -> list[LogLine]:
        """The functions' log lines about this inbound wamid, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class LogLine:
    at: str  # as the log has it (ISO-like, UTC)
    function: str  # "ingest" or "consumer"
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReplyTrace:
    record: ReplyRecord
    state: str
    follow_up: ReplyTrace | None = None


@dataclass
class Trace:
    wamid: str
    message: Mapping[str, Any] | None  # the msg# item (raw), None when the ledger has none
    replies: list[ReplyTrace] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)


# --- gathering ------------------------------------------------------------------------------


def trace(wamid: str, store: ItemStore, logs: LogSource | None) -> Trace:
    item = store.get(MESSAGE_PREFIX + wamid)
    found = Trace(wamid=wamid, message=item)
    if item is not None:
        history = message_history(item)
        for slot in sorted(history.sent):
            reply_wamid = history.sent[slot]
            if reply_wamid:
                reply = _reply(store, reply_wamid, depth=0)
                if reply is not None:
                    found.replies.append(reply)
    if logs is not None:
        found.log = logs.lines(wamid)
    return found


def _reply(store: ItemStore, reply_wamid: str, *, depth: int) -> ReplyTrace | None:
    item = store.get(REPLY_PREFIX + reply_wamid)
    record = reply_record(item) if item is not None else None
    if record is None:
        return None
    follow_up = None
    next_wamid = record.follow_up.reply_wamid
    if next_wamid and depth < MAX_FOLLOW_UPS:
        follow_up = _reply(store, next_wamid, depth=depth + 1)
    return ReplyTrace(record=record, state=reply_state(record.statuses), follow_up=follow_up)


class DynamoDbItems:
    """`ItemStore` over the ledger's table."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def get(self, key: str) -> Mapping[str, Any] | None:
        answer = self._dynamodb.get_item(TableName=self._table, Key={"id": {"S": key}})
        item: Mapping[str, Any] | None = answer.get("Item")
        return item


class LogFiles:
    """`LogSource` over `make run`'s log files (Powertools JSON lines)."""

    def __init__(self, ingest: Path, consumer: Path) -> None:
        self.ingest_log, self.consumer_log = ingest, consumer
        self._files = (("ingest", ingest), ("consumer", consumer))

    def lines(self, wamid: str) -> list[LogLine]:
        found: list[LogLine] = []
        for function, path in self._files:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for raw in text.splitlines():
                if wamid not in raw or not raw.startswith("{"):
                    continue
                try:
                    document = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(document, dict) and _about(document, wamid):
                    found.append(LogLine(_log_time(document), function, _kept(document)))
        return sorted(found, key=lambda line: line.at)


class LogsInsights:
    """`LogSource` over the deployed functions' log groups (CloudWatch Logs Insights)."""

    def __init__(
        self, logs: Any, groups: Mapping[str, str], *, sleep: Callable[[float], None] | None = None
    ) -> None:
        self._logs = logs
        self._groups = groups  # function -> log group name
        self._sleep = sleep

    def lines(self, wamid: str) -> list[LogLine]:
        query = insights_query(wamid)
        function_of = {group: function for function, group in self._groups.items()}
        options: dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        rows = run_logs_query(self._logs, list(self._groups.values()), query, **options)
        found = []
        for row in rows:
            group = row.get("@log", "").split(":")[-1]
            found.append(
                LogLine(
                    at=row.get("@timestamp", ""),
                    function=function_of.get(group, "consumer" if "result" in row else "ingest"),
                    fields=_kept(row),
                )
            )
        return sorted(found, key=lambda line: line.at)


def insights_query(wamid: str) -> str:
    """Everything the functions logged about one inbound wamid: ingest's line for the delivery
    that held it (its `wamids` list), and the consumer's lines, its reply's statuses included (the
    consumer logs them under the inbound wamid too)."""
    quoted = json.dumps(wamid)
    return (
        f"fields @timestamp, @log, {', '.join(LOG_FIELDS)}\n"
        f'| filter wamid = {quoted} or (message = "{DELIVERY_QUEUED}" and @message like {quoted})\n'
        "| sort @timestamp asc\n"
        "| limit 500"
    )


def _about(document: Mapping[str, Any], wamid: str) -> bool:
    if document.get("wamid") == wamid:
        return True
    wamids = document.get("wamids")
    return (
        document.get("message") == DELIVERY_QUEUED
        and isinstance(wamids, list)
        and (wamid in wamids)
    )


def _log_time(document: Mapping[str, Any]) -> str:
    stamp = str(document.get("timestamp") or "")
    try:
        parsed = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f%z")
    except ValueError:
        return stamp
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds")


def _kept(document: Mapping[str, Any]) -> dict[str, Any]:
    return {name: document[name] for name in LOG_FIELDS if document.get(name) not in (None, "")}


# --- rendering ------------------------------------------------------------------------------


def render(found: Trace, out: TextIO) -> None:
    write = out.write
    write(f"Message {found.wamid}\n")
    if found.message is None and not found.log:
        write(
            "  nothing known: not in the ledger (messages are kept "
            f"{MESSAGE_TTL_SECONDS // 86_400} days) and no log line names it\n"
        )
        return
    for line in found.log:
        text = _log_text(line)
        if text:
            write(f"  {_short_time(line.at):<24} {line.function:<9} {text}\n")
    _render_ledger(found, write)
    for index, reply in enumerate(found.replies, start=1):
        _render_reply(reply, write, label=f"reply {index}", indent="  ")


def _log_text(line: LogLine) -> str:
    fields = line.fields
    message = str(fields.get("message") or "")
    if line.function == "ingest" and message == DELIVERY_QUEUED:
        return f"received and queued (one delivery of {fields.get('queued', '?')} message(s))"
    if "status" in fields and "reply_wamid" in fields:
        detail = _status_detail(fields)
        return f"status {fields['status']} of reply {fields['reply_wamid']}{detail}"
    result = fields.get("result")
    if result is None:
        return ""
    parts = [f"{result} ({fields['decision']})" if fields.get("decision") else str(result)]
    if fields.get("message_type") and fields.get("sender"):
        parts.append(f"{fields['message_type']} from {fields['sender']}")
    if fields.get("read_receipt"):
        parts.append(f"read receipt {fields['read_receipt']}")
    if fields.get("reply_wamid"):
        parts.append(f"reply {fields.get('reply_type', '')} {fields['reply_wamid']}".strip())
    if fields.get("error_code"):
        parts.append(f"error {fields['error_code']} ({fields.get('error_class', '?')})")
    if fields.get("visibility_timeout_seconds") is not None and result == "retry":
        parts.append(f"retry in {fields['visibility_timeout_seconds']} s")
    if fields.get("receive_count") not in (None, 1, "1"):
        parts.append(f"receive {fields['receive_count']}")
    return "; ".join(parts)


def _status_detail(fields: Mapping[str, Any]) -> str:
    if fields.get("reply_state"):
        detail = f": {fields.get('previous_state')} -> {fields['reply_state']}"
    else:
        detail = ": already known"
    if fields.get("error_code"):
        detail += f", error {fields['error_code']}"
    if fields.get("follow_up"):
        detail += f", follow-up {fields['follow_up']} {fields.get('follow_up_kind') or ''}".rstrip()
    return detail


def _render_ledger(found: Trace, write: Callable[[str], object]) -> None:
    item = found.message
    if item is None:
        write(
            f"  ledger: no msg# item (never consumed, or older than "
            f"{MESSAGE_TTL_SECONDS // 86_400} days)\n"
        )
        return
    history = message_history(item)
    state = history.status.value
    facts = [f"ledger: {state}"]
    if history.outcome:
        facts.append(f"outcome {history.outcome}")
    facts.append(f"own failed attempts {history.attempts}")
    error = item.get("error_code", {}).get("S")
    if error:
        facts.append(f"last error {error} ({item.get('error_class', {}).get('S', '?')})")
    first_seen = item.get("first_seen_at", {}).get("N")
    if first_seen:
        facts.append(f"first taken {_epoch(float(first_seen))}")
    if history.claimed:
        facts.append(f"slots claimed but never recorded (uncertain): {sorted(history.claimed)}")
    write("  " + "; ".join(facts) + "\n")
    if history.status is MessageStatus.DEAD_LETTERED:
        write(
            f"  dead-letter queue: put there {_epoch(history.dead_lettered_at)} after "
            f"{history.attempts} attempts (make inspect-dlq; make redrive)\n"
        )
    else:
        write("  dead-letter queue: not dead-lettered by the consumer\n")
    if not history.sent:
        write("  no reply recorded\n")


def _render_reply(
    reply: ReplyTrace, write: Callable[[str], object], *, label: str, indent: str
) -> None:
    record = reply.record
    sent = record.reply
    what = _what_was_sent(sent.message)
    write(
        f"{indent}{label}: {sent.reply_wamid} ({sent.kind}, {what}) to "
        f"{_masked(sent.recipient)} from number {sent.phone_number_id}, sent "
        f"{_epoch(sent.sent_at)} ({sent.decision})\n"
    )
    for status in (s for s in LIFECYCLE if s in record.statuses):
        at = record.statuses[status]
        felt = ""
        if status in ("delivered", "read") and sent.inbound_at is not None:
            felt = f"  ({at - sent.inbound_at:.0f} s after the customer's message)"
        write(f"{indent}    {status:<10} {_epoch(at)}{felt}\n")
    if not record.statuses:
        write(f"{indent}    no status yet (kept {REPLY_TTL_SECONDS // 86_400} days)\n")
    write(f"{indent}    now: {reply.state}\n")
    if record.failed_code:
        write(f"{indent}    late failure {record.failed_code} ({record.failed_class or '?'})\n")
    follow_up = record.follow_up
    if follow_up.owner is not None:
        if follow_up.reply_wamid is not None:
            write(f"{indent}    followed up: {follow_up.kind} {follow_up.reply_wamid or '-'}\n")
        elif follow_up.gave_up:
            write(
                f"{indent}    follow-up given up after {follow_up.refused} refused attempt(s) "
                f"({follow_up.error_code})\n"
            )
        elif follow_up.in_doubt:
            write(f"{indent}    follow-up in doubt: a run died while sending it (not resent)\n")
        elif follow_up.refused:
            write(
                f"{indent}    follow-up refused {follow_up.refused} time(s) "
                f"({follow_up.error_code}); retrying\n"
            )
        else:
            write(f"{indent}    no follow-up (the error policy sends none for this code)\n")
    if reply.follow_up is not None:
        _render_reply(
            reply.follow_up, write, label=reply.follow_up.record.reply.kind, indent=indent + "    "
        )


def _what_was_sent(message: Mapping[str, Any]) -> str:
    kind = str(message.get("type") or "?")
    if kind == "template":
        template = message.get("template")
        name = template.get("name") if isinstance(template, Mapping) else None
        return f"template {name}" if name else "template"
    return kind


def _masked(recipient: Mapping[str, str]) -> str:
    return mask_phone(recipient.get("to") or recipient.get("recipient") or "")


def _epoch(value: float | None) -> str:
    if value is None:
        return "?"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _short_time(stamp: str) -> str:
    return stamp.replace("+00:00", "Z")


def to_json(found: Trace) -> dict[str, Any]:
    def reply_json(reply: ReplyTrace) -> dict[str, Any]:
        record, sent = reply.record, reply.record.reply
        return {
            "reply_wamid": sent.reply_wamid,
            "kind": sent.kind,
            "sent": _what_was_sent(sent.message),
            "recipient": _masked(sent.recipient),
            "phone_number_id": sent.phone_number_id,
            "decision": sent.decision,
            "sent_at": sent.sent_at,
            "inbound_at": sent.inbound_at,
            "statuses": dict(record.statuses),
            "state": reply.state,
            "failed_code": record.failed_code,
            "failed_class": record.failed_class,
            "follow_up": {
                "kind": record.follow_up.kind,
                "reply_wamid": record.follow_up.reply_wamid,
                "refused": record.follow_up.refused,
                "gave_up": record.follow_up.gave_up,
                "in_doubt": record.follow_up.in_doubt,
            }
            if record.follow_up.owner is not None
            else None,
            "followed_up_by": reply_json(reply.follow_up) if reply.follow_up else None,
        }

    history = message_history(found.message) if found.message is not None else None
    return {
        "wamid": found.wamid,
        "ledger": None
        if history is None
        else {
            "status": history.status.value,
            "outcome": history.outcome,
            "attempts": history.attempts,
            "dead_lettered_at": history.dead_lettered_at,
            "uncertain_slots": sorted(history.claimed),
        },
        "replies": [reply_json(reply) for reply in found.replies],
        "log": [{"at": line.at, "function": line.function, **line.fields} for line in found.log],
    }


# --- where to look --------------------------------------------------------------------------


def local_sources() -> tuple[ItemStore, LogSource]:
    """A running `make run`, found by its state file: moto's endpoint, the table, the logs."""
    from local_pipeline.emulator import aws_client
    from local_pipeline.state import NoRunningPipeline, running_pipeline, state_dir_from_env

    try:
        state = running_pipeline(state_dir_from_env())
    except NoRunningPipeline as error:
        raise TraceError(str(error)) from None
    if not state.table_name or not state.ingest_log:
        raise TraceError("the running `make run` is older than `make trace`: restart it")
    dynamodb = aws_client("dynamodb", state.dynamodb_endpoint or state.aws_endpoint, state.region)
    store = DynamoDbItems(dynamodb, state.table_name)
    return store, LogFiles(ingest=Path(state.ingest_log), consumer=Path(state.consumer_log))


def stack_sources(
    session: Any, stack_name: str, *, with_logs: bool
) -> tuple[ItemStore, LogSource | None]:
    cloudformation = session.client("cloudformation")
    table = required_output(cloudformation, stack_name, OUTPUT_TABLE_NAME)
    store = DynamoDbItems(session.client("dynamodb"), table)
    if not with_logs:
        return store, None
    outputs = stack_outputs(cloudformation, stack_name)
    groups = {
        function: outputs[key]
        for function, key in (
            ("ingest", OUTPUT_INGEST_LOG_GROUP),
            ("consumer", OUTPUT_CONSUMER_LOG_GROUP),
        )
        if key in outputs
    }
    return store, LogsInsights(session.client("logs"), groups) if groups else None


def _parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m tools.trace", description=summary)
    parser.add_argument("wamid", help="the customer message's wamid (as in the webhook)")
    parser.add_argument("--local", action="store_true", help="trace in the running `make run`")
    parser.add_argument("--stack-name", default=STACK_NAME)
    parser.add_argument("--region", help="AWS region (default: your AWS configuration)")
    parser.add_argument("--no-logs", action="store_true", help="the ledger only (no log query)")
    parser.add_argument("--json", action="store_true", help="the trace as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    args = _parser().parse_args(argv)
    wamid = args.wamid.strip()
    if not wamid:
        sys.stderr.write("error: give the wamid of a customer message: make trace WAMID=wamid...\n")
        return 2
    logs: LogSource | None
    try:
        if args.local:
            store, logs = local_sources()
            if args.no_logs:
                logs = None
        else:
            import boto3

            session = boto3.session.Session(region_name=args.region)
            store, logs = stack_sources(session, args.stack_name, with_logs=not args.no_logs)
        found = trace(wamid, store, logs)
    except (TraceError, ClientError, BotoCoreError, LookupError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    if args.json:
        out.write(json.dumps(to_json(found)) + "\n")
    else:
        render(found, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
