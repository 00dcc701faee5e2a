"""`make demo`: drive a running `make run` with every kind of webhook and check the replies.

Sends signed webhooks of every inbound message type, a status, a duplicate (the same wamid
twice: once at once, once after its reply), a message whose first reply Meta rate-limits (the
fake Graph API is scripted to answer 130429 once) and one whose reply Meta accepts and then
reports failed with 131047, twice (the window closed: the fallback template must follow,
exactly once), then reads the fake Graph API's record until the replies settle (bounded), prints
what happened and exits non-zero if any expected reply is missing or duplicated, or if anything
got a reply it should not have.

Every wamid is fresh, so the demo can run again and again against the same `make run`. It finds
that pipeline through the state file `make run` writes (`.local/pipeline.json`) and reads the app
secret from the pipeline's moto; `PORT` and `WHATSAPP_APP_SECRET` override both.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from functions.domain.ingest.signature import sign
from local_pipeline.config import ENV_APP_SECRET, ENV_PORT, LocalConfig, LocalConfigError
from local_pipeline.gateway import INFO_PATH
from local_pipeline.samples import encode, message_delivery, new_wamid, status_delivery
from local_pipeline.state import (
    NoRunningPipeline,
    app_secret_from_emulator,
    process_is_alive,
    running_pipeline,
    state_dir_from_env,
)

SETTLE_TIMEOUT_SECONDS = 60.0  # the rate-limited reply waits for the consumer's backoff
QUIET_SECONDS = 1.5  # no new Graph calls for this long after the last expected one: settled
POLL_SECONDS = 0.2
HTTP_TIMEOUT_SECONDS = 10.0


class DemoError(RuntimeError):
    """The demo cannot run (no pipeline, wrong secret, a real Graph API); not a test failure."""


@dataclass
class Case:
    label: str
    message_type: str
    wamid: str
    body: bytes
    expect_reply: bool
    rate_limited: bool = False
    late_failure: bool = False  # the reply fails late with 131047: one template must follow


@dataclass
class Verdict:
    case: Case
    reads_ok: int
    sends_ok: int
    sends_refused: int
    problems: list[str] = field(default_factory=list)


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def message_cases() -> list[Case]:
    """One inbound message of every type, each from its own sender (its own FIFO group)."""
    quoted = new_wamid("ours")  # a message of ours that the user reacts or replies to
    context = {"context": {"from": "15550783881", "id": quoted}}
    media = {"mime_type": "image/jpeg", "sha256": "a" * 44, "id": "1479537139650973"}
    bodies: list[tuple[str, str, dict[str, Any]]] = [
        ("text", "text", {"text": {"body": "Hi! Is the shop open today?"}}),
        ("image", "image", {"image": {**media, "caption": "this one"}}),
        ("video", "video", {"video": {**media, "mime_type": "video/mp4"}}),
        ("audio", "audio", {"audio": {**media, "mime_type": "audio/ogg", "voice": True}}),
        (
            "document",
            "document",
            {"document": {**media, "mime_type": "application/pdf", "filename": "order.pdf"}},
        ),
        ("sticker", "sticker", {"sticker": {**media, "mime_type": "image/webp"}}),
        (
            "location",
            "location",
            {"location": {"latitude": 48.8584, "longitude": 2.2945, "name": "Tour Eiffel"}},
        ),
        (
            "contacts",
            "contacts",
            {
                "contacts": [
                    {
                        "name": {"formatted_name": "Ana Lima", "first_name": "Ana"},
                        "phones": [{"phone": "+1 650 555 0199", "type": "CELL"}],
                    }
                ]
            },
        ),
        (
            "interactive button_reply",
            "interactive",
            {
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "yes", "title": "Yes"},
                },
                **context,
            },
        ),
        (
            "interactive list_reply",
            "interactive",
            {
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "size-m", "title": "M", "description": "Medium"},
                },
                **context,
            },
        ),
        ("button", "button", {"button": {"payload": "STOP", "text": "Stop promotions"}, **context}),
        ("reaction", "reaction", {"reaction": {"message_id": quoted, "emoji": "\U0001f44d"}}),
        (
            "order",
            "order",
            {
                "order": {
                    "catalog_id": "194836987003835",
                    "text": "two please",
                    "product_items": [
                        {
                            "product_retailer_id": "sku-1",
                            "quantity": 2,
                            "item_price": 9.5,
                            "currency": "USD",
                        }
                    ],
                }
            },
        ),
        (
            "system",
            "system",
            {
                "system": {
                    "body": "User changed their phone number",
                    "type": "user_changed_number",
                    "wa_id": "16505550000",
                }
            },
        ),
        (
            "unsupported",
            "unsupported",
            {
                "unsupported": {"type": "edit"},
                "errors": [
                    {
                        "code": 131051,
                        "title": "Message type unknown",
                        "message": "Message type unknown",
                        "error_data": {"details": "Message type is currently not supported."},
                    }
                ],
            },
        ),
    ]
    cases = []
    for index, (label, message_type, content) in enumerate(bodies):
        wamid = new_wamid(message_type)
        sender = f"1650555{2000 + index:04d}"
        body = encode(
            message_delivery({"id": wamid, "type": message_type, **content}, sender=sender)
        )
        cases.append(Case(label, message_type, wamid, body, expect_reply=expects_reply(body)))
    return cases


class Demo:
    def __init__(self, base_url: str, app_secret: str | None, out: Callable[[str], None]) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_secret = app_secret
        self.out = out
        self.info: dict[str, Any] = {}

    # --- talking to the pipeline -------------------------------------------------------------

    def connect(self) -> None:
        try:
            status, body = http("GET", self.base_url + INFO_PATH)
        except OSError as error:
            raise DemoError(
                f"no pipeline at {self.base_url} ({error}). Start it first: make run"
            ) from None
        if status != 200:
            raise DemoError(f"{self.base_url} is not a `make run` pipeline (HTTP {status})")
        self.info = json.loads(body)
        if self.app_secret is None:
            if not self.info.get("secret_id"):
                raise DemoError("the pipeline does not say its secret: pass WHATSAPP_APP_SECRET")
            try:
                self.app_secret = app_secret_from_emulator(
                    self.info["aws_endpoint"], self.info["secret_id"]
                )
            except NoRunningPipeline as error:
                raise DemoError(str(error)) from None
        if not self.info.get("fake_graph"):
            raise DemoError(
                "the running pipeline talks to a real Graph API (GRAPH_API_URL is set); "
                "the demo needs the fake one to see the replies"
            )

    def post(self, body: bytes, *, signature: str | None = None) -> int:
        status, answer = http(
            "POST",
            self.info["webhook_url"],
            body,
            {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature or sign(body, self._app_secret()),
            },
        )
        if status == 401 and signature is None:
            raise DemoError(
                "the pipeline rejected the demo's signature: WHATSAPP_APP_SECRET is not the "
                "running pipeline's app secret (leave it unset: the demo reads it from the "
                "pipeline)"
            )
        if status != 200 and signature is None:
            raise DemoError(f"the webhook answered {status}: {answer[:200]!r}")
        return status

    def _app_secret(self) -> str:
        if self.app_secret is None:
            raise DemoError("not connected: call connect() first")
        return self.app_secret

    def graph_calls(self) -> list[dict[str, Any]]:
        status, body = http("GET", self.info["graph_api_url"] + "/__fake/requests")
        if status != 200:
            raise DemoError(f"the fake Graph API answered {status} to /__fake/requests")
        calls: list[dict[str, Any]] = json.loads(body)
        return calls

    def script(self, kind: str, answers: Sequence[Mapping[str, Any]]) -> None:
        document = json.dumps({"kind": kind, "answers": list(answers)}).encode()
        status, _ = http(
            "POST",
            self.info["graph_api_url"] + "/__fake/script",
            document,
            {"Content-Type": "application/json"},
        )
        if status != 200:
            raise DemoError(f"the fake Graph API refused the script ({status})")

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> bool:
        self.connect()
        self.out(
            f"demo against {self.info['webhook_url']} (fake Graph {self.info['graph_api_url']})"
        )
        checks_ok = self._check_http_edges()

        cases = message_cases()
        rate_limited = Case(
            "text, reply rate-limited once (130429)",
            "text",
            new_wamid("ratelimited"),
            b"",
            expect_reply=True,
            rate_limited=True,
        )
        rate_limited.body = encode(
            message_delivery(
                {"id": rate_limited.wamid, "type": "text", "text": {"body": "Are you there?"}},
                sender="16505552999",
            )
        )
        # The scripted 130429 answers the next send, whoever makes it: send this one alone first.
        self.script("send", [{"type": "meta_error", "code": 130429}])
        self.post(rate_limited.body)
        self._wait(lambda calls: _sends(calls, rate_limited.wamid, ok=False) >= 1, "the 130429")
        late = self._late_failure_case()

        for case in cases:
            self.post(case.body)
        duplicate = cases[0]
        self.post(duplicate.body)  # a quick redelivery, as Meta does
        status_wamid = new_wamid("outbound")
        self.post(encode(status_delivery(status_wamid, "delivered")))
        all_cases = [rate_limited, late, *cases]
        self._settle(all_cases)
        self.post(duplicate.body)  # a late redelivery, after the reply: idempotency's job
        self._settle(all_cases)

        calls = self.graph_calls()
        verdicts = [judge(case, calls) for case in all_cases]
        stray = [call for call in calls if _mentions(call, status_wamid)]
        self._report(verdicts, duplicate, stray)
        return checks_ok and not stray and all(not verdict.problems for verdict in verdicts)

    def _late_failure_case(self) -> Case:
        """A reply Meta accepts and then reports failed with 131047, twice (its duplicate
        delivery): alone, like the 130429, since the script answers the next send."""
        late = Case(
            "text, reply failed late (131047) twice",
            "text",
            new_wamid("late"),
            b"",
            expect_reply=True,
            late_failure=True,
        )
        late.body = encode(
            message_delivery(
                {"id": late.wamid, "type": "text", "text": {"body": "Hello again?"}},
                sender="16505552998",
            )
        )
        self.script("send", [{"type": "late_failure", "code": 131047, "repeat": 2}])
        self.post(late.body)
        self._wait(lambda calls: _templates(calls, late.wamid) >= 1, "the late 131047's template")
        return late

    def _check_http_edges(self) -> bool:
        token = self.info["verify_token"]
        challenge = uuid.uuid4().hex
        status, body = http(
            "GET",
            f"{self.info['webhook_url']}?hub.mode=subscribe&hub.verify_token={token}"
            f"&hub.challenge={challenge}",
        )
        handshake_ok = status == 200 and body == challenge.encode()
        self.out(f"  {'ok  ' if handshake_ok else 'FAIL'} GET handshake echoes the challenge")
        bad = self.post(b'{"object":"whatsapp_business_account","entry":[]}', signature="sha256=0")
        self.out(f"  {'ok  ' if bad == 401 else 'FAIL'} a bad signature is refused ({bad})")
        return handshake_ok and bad == 401

    def _wait(self, done: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if done(self.graph_calls()):
                return
            time.sleep(POLL_SECONDS)
        self.out(f"  (gave up waiting for {what} after {SETTLE_TIMEOUT_SECONDS:.0f} s)")

    def _settle(self, cases: Sequence[Case]) -> None:
        """Wait until every expected reply is in, then until the Graph calls stay quiet."""
        self._wait(
            lambda calls: (
                all(_sends(calls, case.wamid, ok=True) >= 1 for case in cases if case.expect_reply)
                and all(_reads(calls, case.wamid) >= 1 for case in cases)
            ),
            "the replies",
        )
        count, quiet_since = len(self.graph_calls()), time.monotonic()
        while time.monotonic() - quiet_since < QUIET_SECONDS:
            time.sleep(POLL_SECONDS)
            latest = len(self.graph_calls())
            if latest != count:
                count, quiet_since = latest, time.monotonic()

    def _report(self, verdicts: Sequence[Verdict], duplicate: Case, stray: list[Any]) -> None:
        self.out("")
        self.out(f"  {'message':<40} {'read':>4} {'reply':>5} {'refused':>7}  verdict")
        for verdict in verdicts:
            case = verdict.case
            label = case.label + (" (sent 3 times)" if case is duplicate else "")
            result = "ok" if not verdict.problems else "FAIL: " + "; ".join(verdict.problems)
            self.out(
                f"  {label:<40} {verdict.reads_ok:>4} {verdict.sends_ok:>5} "
                f"{verdict.sends_refused:>7}  {result}"
            )
        self.out(
            f"  {'status (delivered) of our message':<40} {'-':>4} {len(stray):>5} {'-':>7}  "
            + ("ok (no reply)" if not stray else "FAIL: a status was answered")
        )


def expects_reply(body: bytes) -> bool:
    """Whether the consumer's reply rules (the same rules file it reads) answer this webhook's
    message: reactions, system and unsupported messages, for example, get a read receipt only."""
    from functions.consumer.wiring import reply_rules
    from functions.domain.whatsapp.webhook import parse_delivery

    [received] = parse_delivery(json.loads(body)).messages
    return reply_rules().decide(received).reply is not None


def judge(case: Case, calls: Sequence[Mapping[str, Any]]) -> Verdict:
    verdict = Verdict(
        case=case,
        reads_ok=_reads(calls, case.wamid),
        sends_ok=_sends(calls, case.wamid, ok=True),
        sends_refused=_sends(calls, case.wamid, ok=False),
    )
    if verdict.reads_ok < 1:
        verdict.problems.append("no read receipt")
    templates = _templates(calls, case.wamid)
    expected = 2 if case.late_failure else 1  # a late 131047: the reply, then one template
    if case.expect_reply and verdict.sends_ok == 0:
        verdict.problems.append("reply missing")
    if case.expect_reply and verdict.sends_ok > expected:
        verdict.problems.append(f"{verdict.sends_ok} replies (duplicated)")
    if case.late_failure and templates != 1:
        verdict.problems.append(f"{templates} templates after the late 131047 (expected 1)")
    if not case.expect_reply and verdict.sends_ok:
        verdict.problems.append("replied, but this type gets no reply")
    if case.rate_limited and verdict.sends_refused < 1:
        verdict.problems.append("the 130429 was never answered")
    return verdict


def _reads(calls: Sequence[Mapping[str, Any]], wamid: str) -> int:
    return sum(
        1
        for call in calls
        if call.get("kind") == "read"
        and call.get("answer") == "ok"
        and (call.get("json") or {}).get("message_id") == wamid
    )


def _sends(calls: Sequence[Mapping[str, Any]], wamid: str, *, ok: bool) -> int:
    return sum(
        1
        for call in calls
        if call.get("kind") == "send"
        and (call.get("answer") == "ok") == ok
        and replied_to(call.get("json") or {}) == wamid
    )


def _templates(calls: Sequence[Mapping[str, Any]], wamid: str) -> int:
    return sum(
        1
        for call in calls
        if call.get("kind") == "send"
        and call.get("answer") == "ok"
        and (call.get("json") or {}).get("type") == "template"
        and replied_to(call.get("json") or {}) == wamid
    )


def replied_to(document: Mapping[str, Any]) -> str | None:
    """The wamid a send answers: its `context`, or for a reaction the message reacted to
    (a reaction cannot carry a context)."""
    context = document.get("context") or {}
    if context.get("message_id"):
        return str(context["message_id"])
    if document.get("type") == "reaction":
        return (document.get("reaction") or {}).get("message_id")
    return None


def _mentions(call: Mapping[str, Any], wamid: str) -> bool:
    document = call.get("json") or {}
    return wamid in (document.get("message_id"), replied_to(document))


def demo_target(
    environ: Mapping[str, str], *, is_alive: Callable[[int], bool] = process_is_alive
) -> tuple[str, str | None]:
    """The base URL of the pipeline to drive, and the app secret if the user gave one (without
    one, `Demo.connect` reads it from the pipeline's moto).

    `PORT` picks the pipeline; without it, the one `make run` recorded in its state file.
    Raises `NoRunningPipeline` (or `LocalConfigError` for a malformed `PORT`)."""
    app_secret = environ.get(ENV_APP_SECRET) or None
    if environ.get(ENV_PORT):
        return f"http://127.0.0.1:{LocalConfig.from_env(environ).port}", app_secret
    state = running_pipeline(state_dir_from_env(environ), is_alive=is_alive)
    url = urlsplit(state.webhook_url)
    return f"{url.scheme}://{url.netloc}", app_secret


def main() -> int:
    try:
        base_url, app_secret = demo_target(os.environ)
    except (NoRunningPipeline, LocalConfigError) as error:
        print(
            f"make demo: {error} (for a pipeline started elsewhere: make demo PORT=<its port>)",
            file=sys.stderr,
        )
        return 2
    demo = Demo(base_url, app_secret, print)
    started = time.monotonic()
    try:
        passed = demo.run()
    except DemoError as error:
        print(f"make demo: {error}", file=sys.stderr)
        return 2
    print("")
    print(
        f"demo {'PASSED' if passed else 'FAILED'} in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
