"""A fake WhatsApp Cloud (Graph) API: a real HTTP server on loopback that records every request
and answers from a script.

Used by the consumer's tests, the benchmarks, `make run` and `make demo`. It speaks just enough of
`POST /{version}/{phone_number_id}/messages` to stand in for Meta:

- a send answers 200 with Meta's send response (a fresh `wamid.fake…` id), addressed by `to`
  (a phone) or `recipient` (a business-scoped user id; `to` wins when both are set, as at Meta),
  and 400 #100 when it has neither; a read receipt (body with `"status": "read"`) answers 200
  `{"success": true}`;
- with `expected_token` set, a missing or wrong `Authorization: Bearer …` answers 401 with Meta's
  error 190 (checked before the script, and not consuming it);
- scripted answers (`enqueue`) are consumed in order by the next matching call: any Meta error
  code in Meta's real error shape, a 5xx with an HTML body, a hang, a connection reset, an
  answer given as raw bytes (any header, any body), an answer dripped one byte at a time, or an
  accepted send that fails later (`late_failure`: 200 now, a `failed` status webhook after);
- with `send_statuses(webhook_url, app_secret)` every accepted send is followed, as Meta does,
  by status webhooks for its wamid (default sent -> delivered -> read), POSTed to the webhook in
  Meta's shape (`recipient_id` or `recipient_user_id`, no `pricing`) and signed with the app
  secret (`X-Hub-Signature-256`).

In-process:

    with FakeGraphApi(latency_seconds=0.05) as graph:
        os.environ["GRAPH_API_URL"] = graph.url
        graph.enqueue(meta_error(130429), kind="send")
        ...
        assert len(graph.sent_messages()) == 1

Out of process (`python -m local_pipeline.fake_graph --port 8081`), the same controls are HTTP:
`POST /__fake/script` with `{"kind": "send", "answers": [{"type": "meta_error", "code": 130429},
{"type": "http_error", "status": 503}, {"type": "hang", "seconds": 5},
{"type": "reset_connection"}, {"type": "drip", "seconds_per_byte": 0.5},
{"type": "raw", "data": "HTTP/1.1 503 …\\r\\n…"}, {"type": "late_failure", "code": 131047,
"repeat": 1}, {"type": "ok"}]}` (optionally `"to": "<wa_id or BSUID>"` to script sends to one
recipient only), `POST /__fake/statuses` with `{"url": "<webhook>", "appSecret": "…", "sequence":
["sent", "delivered", "read"], "delaySeconds": 0.2}` (or `{"url": null}`: none),
`GET /__fake/statuses` (the webhooks posted, with the answers they got), `GET /__fake/requests`
(a JSON list) and `POST /__fake/reset`. It only ever binds a loopback address.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import re
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from functions.domain.ingest.signature import sign

Kind = Literal["read", "send", "other"]
ScriptKind = Literal["read", "send", "any"]

_MESSAGES_PATH = re.compile(r"^/(?P<version>[^/]+)/(?P<phone_number_id>[^/]+)/messages/?$")
_CONTROL_PREFIX = "/__fake/"
_MAX_BODY_BYTES = 4 * 1024 * 1024

# Titles Meta uses for the codes tests script most often; anything else gets a generic one.
_TITLES: Mapping[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    3: "API Method",
    4: "Application request limit reached",
    10: "Permission denied",
    100: "Invalid parameter",
    190: "Access token has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "Message not delivered to maintain healthy ecosystem engagement",
    131051: "Unsupported message type",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Template param count mismatch",
    132001: "Template does not exist",
    133004: "Server temporarily unavailable",
}


# --- scripted answers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer. Build them with `ok()`, `meta_error()`, `http_error()`, `hang()`,
    `reset_connection()`, `raw_answer()`, `drip()` and `late_failure()`; `Answer.from_json`
    reads the control endpoint's form."""

    type: Literal[
        "ok", "meta_error", "http_error", "hang", "reset_connection", "raw", "late_failure"
    ]
    status: int = 200
    code: int | None = None
    message: str | None = None
    details: str | None = None
    is_transient: bool | None = None
    retry_after: str | None = None
    subcode: int | None = None
    body: str | None = None
    content_type: str = "application/json"
    seconds: float = 0.0
    raw: bytes = b""  # "raw": the whole HTTP answer, status line to body, exactly these bytes
    drip_from: int = 0  # "raw": bytes before this offset go at once, the rest one at a time
    repeat: int = 1  # late_failure: how many times Meta delivers the failed status

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Answer:
        kind = document.get("type")
        build = _ANSWERS_FROM_JSON.get(str(kind))
        if build is None:
            raise ValueError(f"unknown answer type {kind!r}")
        return build(document)

    def to_json(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in (
                ("type", self.type),
                ("status", self.status),
                ("code", self.code),
                ("seconds", self.seconds),
                ("retry_after", self.retry_after),
            )
            if value is not None
        }


_HTML_ERROR = "<html><body><h1>Service Unavailable</h1></body></html>"


def ok() -> Answer:
    """Meta's normal answer (send response or `{"success": true}`)."""
    return Answer(type="ok")


def meta_error(
    code: int,
    *,
    http_status: int = 400,
    message: str | None = None,
    details: str | None = None,
    is_transient: bool | None = None,
    retry_after: str | int | None = None,
    subcode: int | None = None,
) -> Answer:
    """An error in Meta's shape: `{"error": {"message": "(#code) …", "type", "code", …}}`."""
    return Answer(
        type="meta_error",
        status=http_status,
        code=code,
        message=message,
        details=details,
        is_transient=is_transient,
        retry_after=None if retry_after is None else str(retry_after),
        subcode=subcode,
    )


def http_error(
    status: int,
    body: str = _HTML_ERROR,
    content_type: str = "text/html",
    *,
    retry_after: str | int | None = None,
) -> Answer:
    """A bare HTTP error, e.g. a 502 from a load balancer with an HTML page."""
    return Answer(
        type="http_error",
        status=status,
        body=body,
        content_type=content_type,
        retry_after=None if retry_after is None else str(retry_after),
    )


def hang(seconds: float) -> Answer:
    """Answer nothing for `seconds` (the client should time out first), then answer normally."""
    return Answer(type="hang", seconds=seconds)


def reset_connection() -> Answer:
    """Read the request, then reset the TCP connection without answering."""
    return Answer(type="reset_connection")


def raw_answer(data: bytes, *, seconds_per_byte: float = 0.0, drip_from: int = 0) -> Answer:
    """Answer with exactly `data` (status line, headers and body as bytes: any header, any
    encoding), then close the connection. With `seconds_per_byte`, the bytes from `drip_from` on
    go out one at a time; `FakeGraphApi.raw_answers` says how many got out before the client
    hung up."""
    dripped_from = min(drip_from, len(data)) if seconds_per_byte > 0 else len(data)
    return Answer(type="raw", raw=data, seconds=seconds_per_byte, drip_from=dripped_from)


def drip(
    body: bytes = b'{"success": true}',
    *,
    status: int = 200,
    seconds_per_byte: float = 0.5,
    headers_too: bool = False,
    content_type: str = "application/json",
) -> Answer:
    """A complete, well-formed answer sent one byte every `seconds_per_byte`: only its body, or
    (`headers_too`) everything after the status line."""
    status_line = f"HTTP/1.1 {status} Fake\r\n".encode("ascii")
    head = status_line + (
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    return raw_answer(
        head + body,
        seconds_per_byte=seconds_per_byte,
        drip_from=len(status_line) if headers_too else len(head),
    )


def late_failure(code: int, *, repeat: int = 1) -> Answer:
    """Accept the send (200, a wamid), then report it `failed` with Meta's `code` as a status
    webhook (`repeat` times, as Meta's duplicate deliveries do) - the way 131047 usually comes.
    Needs `send_statuses` to know where to post."""
    return Answer(type="late_failure", code=code, repeat=max(1, repeat))


# --- status webhooks -----------------------------------------------------------------------------

DEFAULT_STATUS_SEQUENCE = ("sent", "delivered", "read")
DEFAULT_STATUS_DELAY_SECONDS = 0.2
FAKE_WABA_ID = "102290129340398"
FAKE_DISPLAY_NUMBER = "15550783881"
STATUS_POST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class StatusWebhooks:
    """Where and how the fake reports what became of the messages it accepted."""

    url: str
    app_secret: str = field(repr=False)
    sequence: tuple[str, ...] = DEFAULT_STATUS_SEQUENCE
    delay_seconds: float = DEFAULT_STATUS_DELAY_SECONDS


@dataclass(frozen=True, slots=True)
class PostedStatus:
    wamid: str
    status: str
    http_status: int | None  # None: the webhook could not be reached
    error_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "wamid": self.wamid,
            "status": self.status,
            "http_status": self.http_status,
            "error_code": self.error_code,
        }


def status_webhook(
    wamid: str,
    status: str,
    *,
    phone_number_id: str,
    recipient: Mapping[str, Any],
    timestamp: int,
    error_code: int | None = None,
) -> dict[str, Any]:
    """One `statuses[]` delivery in Meta's shape: `recipient_id` (a phone) or, for a message
    sent to a username, `recipient_user_id`; no `pricing` or `conversation`."""
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp)}
    if recipient.get("to"):
        entry["recipient_id"] = str(recipient["to"])
    elif recipient.get("recipient"):
        entry["recipient_id"] = ""
        entry["recipient_user_id"] = str(recipient["recipient"])
    if error_code is not None:
        title = _TITLES.get(error_code, "Error")
        entry["errors"] = [
            {
                "code": error_code,
                "title": title,
                "message": title,
                "error_data": {"details": f"{title} (fake Graph API)"},
            }
        ]
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": FAKE_WABA_ID,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": FAKE_DISPLAY_NUMBER,
                                "phone_number_id": phone_number_id,
                            },
                            "statuses": [entry],
                        },
                    }
                ],
            }
        ],
    }


@dataclass(frozen=True, slots=True)
class RawAnswerProgress:
    """How far a raw answer got: all `total` bytes, or `written` before the client hung up."""

    written: int
    total: int

    @property
    def complete(self) -> bool:
        return self.written == self.total


_ANSWERS_FROM_JSON: Mapping[str, Callable[[Mapping[str, Any]], Answer]] = {
    "ok": lambda document: ok(),
    "meta_error": lambda document: meta_error(
        int(document["code"]),
        http_status=int(document.get("http_status", 400)),
        message=document.get("message"),
        details=document.get("details"),
        is_transient=document.get("is_transient"),
        retry_after=document.get("retry_after"),
        subcode=document.get("subcode"),
    ),
    "http_error": lambda document: http_error(
        int(document["status"]),
        body=str(document.get("body", _HTML_ERROR)),
        content_type=str(document.get("content_type", "text/html")),
        retry_after=document.get("retry_after"),
    ),
    "hang": lambda document: hang(float(document.get("seconds", 30.0))),
    "reset_connection": lambda document: reset_connection(),
    "raw": lambda document: raw_answer(
        str(document["data"]).encode("utf-8"),
        seconds_per_byte=float(document.get("seconds_per_byte", 0.0)),
        drip_from=int(document.get("drip_from", 0)),
    ),
    "drip": lambda document: drip(
        str(document.get("body", "")).encode("utf-8"),
        status=int(document.get("status", 200)),
        seconds_per_byte=float(document.get("seconds_per_byte", 0.5)),
        headers_too=bool(document.get("headers_too", False)),
    ),
    "late_failure": lambda document: late_failure(
        int(document["code"]), repeat=int(document.get("repeat", 1))
    ),
}


# --- recorded requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the decoded body, or None
    phone_number_id: str | None
    kind: Kind
    received_at: float  # time.time()
    answer: str = "ok"  # the answer type it got

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "phone_number_id": self.phone_number_id,
            "kind": self.kind,
            "received_at": self.received_at,
            "answer": self.answer,
        }


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    script: list[tuple[ScriptKind, str | None, Answer]] = field(default_factory=list)
    raw_answers: list[RawAnswerProgress] = field(default_factory=list)
    posted: list[PostedStatus] = field(default_factory=list)


# --- the server ----------------------------------------------------------------------------------


class FakeGraphApi:
    """The fake Graph API. Thread-safe; one instance per test (or per `make run`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_seconds: float = 0.0,
        expected_token: str | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the fake Graph API only binds a loopback address")
        self.host = host
        self.port = port
        self.latency_seconds = latency_seconds
        self.expected_token = expected_token
        self._lock = threading.Condition()
        self._state = _State()
        self._stopping = threading.Event()
        # In-process tests may answer by rule (a rate limiter, an outage) when no scripted answer
        # applies: called under the lock with each read or send; None means "ok".
        self.rule: Callable[[RecordedRequest], Answer | None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self.status_webhooks: StatusWebhooks | None = None

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((self.host, self.port), _handler_for(self))
        server.daemon_threads = True  # a hung answer never blocks stop()
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes hangs and latency waits
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGraphApi:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # recorded requests --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def raw_answers(self) -> list[RawAnswerProgress]:
        """How far each finished raw (or dripped) answer got, in the order they finished."""
        with self._lock:
            return list(self._state.raw_answers)

    def wait_for_raw_answers(self, count: int, *, timeout: float = 10.0) -> bool:
        """Block until `count` raw answers finished (sent whole or cut off); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._state.raw_answers) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def read_receipts(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.kind == "read"]

    def sent_messages(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.kind == "send"]

    def wait_for(self, count: int, *, kind: Kind | None = None, timeout: float = 5.0) -> bool:
        """Block until at least `count` requests (of `kind`) were recorded; False on timeout."""
        deadline = time.monotonic() + timeout

        def enough() -> bool:
            return sum(1 for r in self._state.requests if kind is None or r.kind == kind) >= count

        with self._lock:
            while not enough():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    # script ---------------------------------------------------------------------------------------

    def enqueue(self, *answers: Answer, kind: ScriptKind = "any", to: str | None = None) -> None:
        """Script the next answers for calls of `kind` (and, if given, sends to `to` only)."""
        if kind not in ("read", "send", "any"):
            raise ValueError(f"kind must be read, send or any, not {kind!r}")
        with self._lock:
            self._state.script.extend((kind, to, answer) for answer in answers)

    def pending_answers(self) -> int:
        with self._lock:
            return len(self._state.script)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # status webhooks ------------------------------------------------------------------------------

    def send_statuses(
        self,
        url: str | None,
        app_secret: str = "",
        *,
        sequence: Sequence[str] = DEFAULT_STATUS_SEQUENCE,
        delay_seconds: float = DEFAULT_STATUS_DELAY_SECONDS,
    ) -> None:
        """Follow every accepted send with status webhooks to `url` (None: stop doing so)."""
        self.status_webhooks = (
            None
            if url is None
            else StatusWebhooks(url, app_secret, tuple(sequence), max(0.0, delay_seconds))
        )

    def posted_statuses(self) -> list[PostedStatus]:
        with self._lock:
            return list(self._state.posted)

    def wait_for_statuses(self, count: int, *, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._state.posted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def _follow_with_statuses(self, wamid: str, request: RecordedRequest, answer: Answer) -> None:
        webhooks = self.status_webhooks
        if webhooks is None or not isinstance(request.json, dict):
            return
        plan: list[tuple[str, int | None]] = [(status, None) for status in webhooks.sequence]
        if answer.type == "late_failure":
            plan = [("failed", answer.code)] * answer.repeat
        threading.Thread(
            target=self._post_statuses,
            args=(webhooks, wamid, request.phone_number_id or "", dict(request.json), plan),
            name=f"statuses-{wamid[-8:]}",
            daemon=True,
        ).start()

    def _post_statuses(
        self,
        webhooks: StatusWebhooks,
        wamid: str,
        phone_number_id: str,
        body: Mapping[str, Any],
        plan: Sequence[tuple[str, int | None]],
    ) -> None:
        for status, code in plan:
            self._wait(webhooks.delay_seconds)
            if self._stopping.is_set():
                return
            document = status_webhook(
                wamid,
                status,
                phone_number_id=phone_number_id,
                recipient=body,
                timestamp=int(time.time()),
                error_code=code,
            )
            payload = json.dumps(document, separators=(",", ":")).encode()
            request = urllib.request.Request(
                webhooks.url,
                data=payload,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(payload, webhooks.app_secret),
                },
            )
            http_status: int | None
            try:
                with urllib.request.urlopen(request, timeout=STATUS_POST_TIMEOUT_SECONDS) as answer:
                    http_status = int(answer.status)
            except urllib.error.HTTPError as error:
                http_status = int(error.code)
            except OSError:
                http_status = None
            with self._lock:
                self._state.posted.append(PostedStatus(wamid, status, http_status, code))
                self._lock.notify_all()

    # used by the request handler ----------------------------------------------------------------

    def _record_and_pick(self, request: RecordedRequest) -> Answer:
        with self._lock:
            answer = ok()
            if request.kind != "other":
                recipient = addressee(request.json)
                for index, (kind, to, _answer) in enumerate(self._state.script):
                    if kind in ("any", request.kind) and to in (None, recipient):
                        answer = self._state.script.pop(index)[2]
                        break
                else:
                    answer = (self.rule(request) if self.rule else None) or answer
            # A late failure is an accepted send: what the HTTP answer said is "ok".
            recorded = "ok" if answer.type == "late_failure" else answer.type
            self._state.requests.append(_with_answer(request, recorded))
            self._lock.notify_all()
            return answer

    def _record_refusal(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(_with_answer(request, "unauthorized"))
            self._lock.notify_all()

    def _next_message_id(self) -> str:
        return f"wamid.fake.{next(self._ids):08d}.{time.time_ns():x}"

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _record_raw_progress(self, progress: RawAnswerProgress) -> None:
        with self._lock:
            self._state.raw_answers.append(progress)
            self._lock.notify_all()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that died or hung up mid-request (the fault suite kills its consumer) is no
        # error of ours; anything else still prints its traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def addressee(document: Any) -> str | None:
    """Who a send body addresses, as Meta reads it: `to` (a phone) wins over `recipient` (a
    business-scoped user id) when both are set; None when neither is."""
    if not isinstance(document, dict):
        return None
    for key in ("to", "recipient"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _send_response(document: dict[str, Any], message_id: str) -> dict[str, Any]:
    """Meta's send response; the contact is echoed by `wa_id`, or by `user_id` for a BSUID."""
    if isinstance(document.get("to"), str) and document["to"]:
        contact = {"input": document["to"], "wa_id": document["to"]}
    else:
        contact = {"input": document["recipient"], "user_id": document["recipient"]}
    return {
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": message_id}],
    }


def _with_answer(request: RecordedRequest, answer: str) -> RecordedRequest:
    return RecordedRequest(
        method=request.method,
        path=request.path,
        headers=request.headers,
        body=request.body,
        json=request.json,
        phone_number_id=request.phone_number_id,
        kind=request.kind,
        received_at=request.received_at,
        answer=answer,
    )


def _meta_error_document(answer: Answer) -> dict[str, Any]:
    code = answer.code if answer.code is not None else 1
    title = _TITLES.get(code, "Error")
    error: dict[str, Any] = {
        "message": answer.message or f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": answer.details or f"{title} (fake Graph API)",
        },
        "fbtrace_id": f"AFake{time.time_ns() % 10**12:012d}",
    }
    if answer.subcode is not None:
        error["error_subcode"] = answer.subcode
    if answer.is_transient is not None:
        error["is_transient"] = answer.is_transient
    return {"error": error}


def _handler_for(graph: FakeGraphApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Meta's edge does
        disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms ACK stalls
        server_version = "FakeGraphApi/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read `graph.requests`, not stderr

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        # ------------------------------------------------------------------------------------

        def _handle(self, method: str) -> None:
            body = self._read_body()
            path = self.path.split("?", 1)[0]
            if path.startswith(_CONTROL_PREFIX):
                self._control(method, path, body)
                return
            document = _loads(body)
            match = _MESSAGES_PATH.match(path)
            kind: Kind = "other"
            if method == "POST" and match:
                is_read = isinstance(document, dict) and document.get("status") == "read"
                kind = "read" if is_read else "send"
            request = RecordedRequest(
                method=method,
                path=path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                json=document,
                phone_number_id=match.group("phone_number_id") if match else None,
                kind=kind,
                received_at=time.time(),
            )
            if graph.expected_token is not None and (
                self.headers.get("Authorization") != f"Bearer {graph.expected_token}"
            ):
                graph._record_refusal(request)
                self._send_json(
                    401,
                    _meta_error_document(
                        meta_error(190, message="Invalid OAuth access token - Cannot parse")
                    ),
                )
                return
            answer = graph._record_and_pick(request)
            if kind == "other":
                self._send_json(
                    400,
                    _meta_error_document(
                        meta_error(100, message="Unsupported request (fake Graph API)")
                    ),
                )
                return
            graph._wait(graph.latency_seconds)
            self._answer(answer, kind, document, request)

        def _answer(
            self, answer: Answer, kind: Kind, document: Any, request: RecordedRequest
        ) -> None:
            if answer.type == "reset_connection":
                self._reset()
                return
            if answer.type == "raw":
                self._send_raw_bytes(answer)
                return
            if answer.type == "hang":
                graph._wait(answer.seconds)
                answer = ok()
            extra = {"Retry-After": answer.retry_after} if answer.retry_after else {}
            if answer.type == "meta_error":
                self._send_json(answer.status, _meta_error_document(answer), extra)
            elif answer.type == "http_error":
                self._send_raw(
                    answer.status,
                    (answer.body or "").encode("utf-8"),
                    answer.content_type,
                    extra,
                )
            elif kind == "read":
                self._send_json(200, {"success": True})
            elif addressee(document) is None:
                self._send_json(
                    400,
                    _meta_error_document(
                        meta_error(100, message="(#100) The parameter to is required.")
                    ),
                )
            else:
                wamid = graph._next_message_id()
                self._send_json(200, _send_response(document, wamid))
                graph._follow_with_statuses(wamid, request, answer)

        def _control(self, method: str, path: str, body: bytes) -> None:
            if method == "GET" and path == "/__fake/requests":
                self._send_json(200, [request.to_json() for request in graph.requests])
            elif method == "GET" and path == "/__fake/statuses":
                self._send_json(200, [posted.to_json() for posted in graph.posted_statuses()])
            elif method == "POST" and path == "/__fake/statuses":
                document = _loads(body)
                if not isinstance(document, dict) or "url" not in document:
                    self._send_json(400, {"error": 'give {"url": <webhook URL or null>, ...}'})
                    return
                graph.send_statuses(
                    document["url"],
                    str(document.get("appSecret") or ""),
                    sequence=document.get("sequence") or DEFAULT_STATUS_SEQUENCE,
                    delay_seconds=float(document.get("delaySeconds", DEFAULT_STATUS_DELAY_SECONDS)),
                )
                self._send_json(200, {"statuses": document["url"] is not None})
            elif method == "POST" and path == "/__fake/reset":
                graph.reset()
                self._send_json(200, {"reset": True})
            elif method == "POST" and path == "/__fake/script":
                document = _loads(body)
                try:
                    if not isinstance(document, dict):
                        raise TypeError("the script must be a JSON object")
                    answers = [Answer.from_json(item) for item in document.get("answers", [])]
                    graph.enqueue(*answers, kind=document.get("kind", "any"), to=document.get("to"))
                except (KeyError, TypeError, ValueError) as error:
                    self._send_json(400, {"error": str(error)})
                    return
                self._send_json(200, {"queued": len(answers)})
            else:
                self._send_json(404, {"error": f"no control endpoint {method} {path}"})

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(min(length, _MAX_BODY_BYTES)) if length > 0 else b""

        def _send_json(
            self, status: int, document: Any, extra: Mapping[str, str] | None = None
        ) -> None:
            self._send_raw(status, json.dumps(document).encode(), "application/json", extra)

        def _send_raw(
            self,
            status: int,
            payload: bytes,
            content_type: str,
            extra: Mapping[str, str] | None = None,
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (e.g. timed out during a hang): nothing left to answer.
                self.close_connection = True

        def _send_raw_bytes(self, answer: Answer) -> None:
            data = answer.raw
            written = 0
            try:
                self.wfile.write(data[: answer.drip_from])
                self.wfile.flush()
                written = answer.drip_from
                for offset in range(answer.drip_from, len(data)):
                    graph._wait(answer.seconds)
                    if graph._stopping.is_set():
                        break
                    self.wfile.write(data[offset : offset + 1])
                    self.wfile.flush()
                    written = offset + 1
            except OSError:
                pass  # the client hung up: `written` says how far the answer got
            graph._record_raw_progress(RawAnswerProgress(written=written, total=len(data)))
            self.close_connection = True

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

    return Handler


def _loads(body: bytes) -> Any | None:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def main(
    argv: list[str] | None = None, *, serve: Callable[[FakeGraphApi], None] | None = None
) -> None:
    parser = argparse.ArgumentParser(description="A fake WhatsApp Cloud API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    parser.add_argument("--token", default=None, help="expected Bearer token (default: any)")
    args = parser.parse_args(argv)
    graph = FakeGraphApi(port=args.port, latency_seconds=args.latency, expected_token=args.token)
    with graph:
        print(f"fake Graph API listening on {graph.url}", flush=True)
        if serve is not None:
            serve(graph)
            return
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
