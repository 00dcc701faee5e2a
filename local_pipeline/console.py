"""The readable side of `make run`: one line per pipeline event, phone numbers masked.

Events are derived from what the pipeline's pieces observe — the gateway's exchanges, the
consumer worker's batch results, the consumer's own outcome and warning log records, the fake
Graph API's recorded calls — never from the handlers printing. No message text is shown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import IO, Any

from functions.common.masking import mask_phone
from functions.domain.whatsapp.webhook import InvalidPayload, parse_delivery
from local_pipeline.gateway import Exchange

_COLORS = {
    "dim": "\033[2m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "red": "\033[31m",
    "cyan": "\033[36m",
    "bold": "\033[1m",
}
_RESET = "\033[0m"
# Fields of the consumer's warnings that the other console lines already show.
_REDUNDANT_LOG_FIELDS = frozenset(
    {"wamid", "sqs_message_id", "sender", "message_type", "receive_count", "xray_trace_id"}
)


WAMID_TAIL_CHARS = 10


def short_id(wamid: str | None) -> str:
    """The tail of a wamid, so one message's lines can be followed and matched by eye to the
    wamid the user sent (base64 padding dropped: it ends every real wamid alike)."""
    if not wamid:
        return "-"
    tail = wamid.rstrip("=")[-WAMID_TAIL_CHARS:]
    return tail if len(tail) == len(wamid) else f"…{tail}"


class Console:
    def __init__(
        self, stream: IO[str], *, color: bool | None = None, graph_visible: bool = True
    ) -> None:
        """`graph_visible`: the Graph API's calls are reported (the fake one), so the consumer's
        own "replied" outcome would only repeat them."""
        self._stream = stream
        self.graph_visible = graph_visible
        if color is None:
            color = stream.isatty() and not os.environ.get("NO_COLOR")
        self._color = color
        self._lock = threading.Lock()
        self._closed = False
        self._received_at: dict[str, float] = {}
        # Records a burst window holds (the first of a burst, or one behind it): back in a
        # moment by design, not a failed attempt.
        self._gathering: set[str] = set()

    # --- plain output ----------------------------------------------------------------------

    def line(self, text: str = "") -> None:
        """Write one line; once the terminal is gone (closed window, a reader that quit: EPIPE,
        EIO) the console goes quiet instead of raising, so the shutdown still runs to the end
        and leaves no moto or worker behind."""
        with self._lock:
            if self._closed:
                return
            try:
                self._stream.write(text + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # ValueError: the stream itself was closed
                self._closed = True

    def paint(self, text: str, color: str) -> str:
        return f"{_COLORS[color]}{text}{_RESET}" if self._color else text

    def event(self, tag: str, color: str, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        self.line(f"{self.paint(stamp, 'dim')}  {self.paint(f'{tag:<9}', color)} {text}")

    def _since_received(self, wamid: str | None) -> str:
        started = self._received_at.get(wamid or "")
        return "" if started is None else f" {time.monotonic() - started:.2f} s after receipt"

    # --- gateway -----------------------------------------------------------------------------

    def exchange(self, exchange: Exchange) -> None:
        summary = f"{exchange.method} {exchange.path} -> {exchange.status}"
        timing = f"({exchange.duration_ms:.0f} ms)"
        if exchange.error:
            self.event("error", "red", f"{summary} handler raised {exchange.error} {timing}")
            return
        if exchange.method != "POST" or exchange.status != 200:
            color = "green" if exchange.status < 400 else "yellow"
            self.event("request", color, f"{summary} {_error_name(exchange)} {timing}".strip())
            return
        try:
            delivery = parse_delivery(json.loads(exchange.request_body))
        except (ValueError, InvalidPayload):
            self.event("received", "green", f"{summary} {timing}")
            return
        counts = f"{len(delivery.messages)} message(s), {len(delivery.statuses)} status(es)"
        statuses_only = bool(delivery.statuses) and not (
            delivery.messages or delivery.errors or delivery.ignored_fields
        )
        if not statuses_only:  # a status alone is one line: its own, below
            self.event("received", "green", f"{summary} {counts} {timing}")
        for received in delivery.messages:
            message = received.message
            self._received_at.setdefault(message.wamid, exchange.received_at)
            self.event(
                "queued",
                "cyan",
                f"msg {short_id(message.wamid)} {message.type} from "
                f"{mask_phone(received.sender_key)} to number {received.business.phone_number_id}",
            )
        for status in delivery.statuses:
            codes = ",".join(error.code_label for error in status.errors)
            self.event(
                "status",
                "dim",
                f"{status.status} for our msg {short_id(status.wamid)} to "
                f"{mask_phone(status.recipient_key)}{' codes ' + codes if codes else ''}"
                " (a status: no reply)" + (f" {timing}" if statuses_only else ""),
            )
        for error in delivery.errors:
            self.event("webhook", "yellow", f"value-level error code {error.code_label}")
        for field in delivery.ignored_fields:
            self.event("ignored", "dim", f"change field {field!r} acknowledged")

    # --- fake Graph API ----------------------------------------------------------------------

    def graph_call(self, call: Mapping[str, Any]) -> None:
        """One call the fake Graph API recorded (a `RecordedRequest.to_json()`)."""
        document = _mapping(call.get("json"))
        answer = str(call.get("answer") or "ok")
        kind = call.get("kind")
        if kind == "read":
            wamid = document.get("message_id")
            if answer == "ok":
                self.event(
                    "read",
                    "green",
                    f"msg {short_id(wamid)} marked read{self._since_received(wamid)}",
                )
            else:
                self.event("read", "yellow", f"msg {short_id(wamid)} read receipt got {answer}")
        elif kind == "send":
            wamid = _mapping(document.get("context")).get("message_id")
            if wamid is None and document.get("type") == "reaction":
                wamid = _mapping(document.get("reaction")).get("message_id")
            addressee = document.get("to") or document.get("recipient") or ""
            what = f"{document.get('type', '?')} to {mask_phone(str(addressee))}"
            thread = f"in thread of msg {short_id(wamid)}" if wamid else "(not threaded)"
            if answer == "ok":
                self.event("replied", "green", f"{what} {thread}{self._since_received(wamid)}")
            else:
                self.event("send", "yellow", f"{what} {thread} got {answer}")
        else:
            self.event("graph", "dim", f"{call.get('method')} {call.get('path')} got {answer}")

    # --- consumer worker ---------------------------------------------------------------------

    def worker_event(self, document: Mapping[str, Any]) -> None:
        kind = document.get("event")
        if kind == "batch":
            self._batch(document)
        elif kind == "log":
            self._consumer_log(document)

    def _consumer_log(self, document: Mapping[str, Any]) -> None:
        fields = dict(document.get("fields") or {})
        level = document.get("level")
        if fields.get("reply_wamid") and fields.get("status") and fields.get("result"):
            self._status_log(str(document.get("message")), fields)
            return
        wamid = fields.get("wamid")
        tag = f"msg {short_id(str(wamid))} " if wamid else ""
        result = fields.get("result")
        if result == "waiting" or (result == "held_back" and not fields.get("error_code")):
            self._gathering.add(str(wamid))
            if result == "held_back":
                return  # the first of its burst's line says it
        if level == "INFO" and result is not None:
            if result == "replied" and self.graph_visible:
                return
            reply = f" {fields['reply_type']}" if fields.get("reply_type") else ""
            why = f" ({fields['decision']})" if fields.get("decision") else ""
            self.event("outcome", "green", f"{tag}{result}{reply}{why}")
            return
        details = " ".join(
            f"{key}={value}"
            for key, value in sorted(fields.items())
            if key not in _REDUNDANT_LOG_FIELDS
        )
        color = "red" if level in ("ERROR", "CRITICAL") else "yellow"
        self.event("consumer", color, f"{tag}{document.get('message')} {details}".strip())

    def _status_log(self, message: str, fields: Mapping[str, Any]) -> None:
        """What following a status did to one of our replies (one consumer line per status)."""
        reply = f"reply {short_id(str(fields['reply_wamid']))}"
        of = f" of msg {short_id(str(fields['wamid']))}" if fields.get("wamid") else ""
        status = fields["status"]
        if message == "reply status changed":
            latency = fields.get("delivery_latency_ms")
            felt = (
                f", {int(latency) / 1000:.0f} s after the customer's message"
                if isinstance(latency, int | float)
                else ""
            )
            change = f"{fields.get('previous_state')} -> {fields.get('reply_state')}"
            self.event("status", "green", f"{reply}{of}: {change}{felt}")
        elif message == "reply failed after it was sent":
            code = fields.get("error_code") or "?"
            follow_up = fields.get("follow_up")
            what = {
                "sent": f"{fields.get('follow_up_kind')} sent as "
                f"{short_id(str(fields.get('follow_up_wamid') or ''))}",
                "retry": f"{fields.get('follow_up_kind')} refused, retry in "
                f"{fields.get('visibility_timeout_seconds')} s",
            }.get(str(follow_up), str(fields.get("follow_up_reason") or follow_up))
            color = "yellow" if follow_up in ("sent", "not_needed", "retry") else "red"
            self.event("late", color, f"{reply}{of} failed {code}: {what}")
        elif message == "status of no reply we know":
            action = "looking again" if fields.get("result") == "retry" else "dropped"
            self.event("status", "dim", f"{status} for {reply}: not a reply we know ({action})")

    def _batch(self, document: Mapping[str, Any]) -> None:
        if document.get("error"):
            self.event(
                "error", "red", f"consumer raised {document['error']}: whole batch will retry"
            )
        max_receives = document.get("max_receive_count")
        for record in document.get("records") or []:
            label = (
                f"msg {short_id(record.get('wamid'))} {record.get('message_type') or '?'} "
                f"from {record.get('sender') or '<none>'}"
            )
            if record.get("status"):
                label = f"status {record['status']} of reply {short_id(record.get('wamid'))}"
            attempt = record.get("receive_count")
            if record.get("succeeded"):
                continue  # deleted from the queue; the outcome line says how it ended
            if record.get("wamid") in self._gathering:
                self._gathering.discard(record.get("wamid"))
                continue  # a burst gathering: its outcome line said so
            if max_receives and attempt and attempt >= max_receives:
                self.event(
                    "failed",
                    "red",
                    f"{label} failed attempt {attempt}/{max_receives}: "
                    "moving to the dead-letter queue",
                )
                continue
            seconds = record.get("visibility_timeout")
            when = (
                f"retry in {seconds} s"
                if seconds is not None
                else "retry after the queue's visibility timeout"
            )
            self.event("retry", "yellow", f"{label} failed attempt {attempt}: {when}")


def _error_name(exchange: Exchange) -> str:
    try:
        document = json.loads(exchange.response_body)
    except ValueError:
        return ""
    if isinstance(document, Mapping) and isinstance(document.get("error"), str):
        return str(document["error"])
    return ""


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
