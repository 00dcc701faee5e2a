"""What the fuzz suites drive the ingest through, and what they judge its answers by.

The real entry point (`functions.ingest.app.handler`) runs in-process with the real use case and
the real `SqsFifoPublisher`; only two things are swapped in `functions.ingest.wiring`:
- the credentials: a fixed source holding the test app secret;
- the SQS client under the publisher: `InMemoryFifoQueue`, which answers `SendMessageBatch` the
  way SQS does (FIFO deduplication, the limits on ids, bodies and batches, a `SenderFault` for an
  entry SQS would refuse) and keeps what it accepted. It can also refuse entries on purpose.

Everything the suites expect is written from docs/contract.md and Meta's documented payload
shape, not from the code under test: `expected_messages` is the suites' own count of what a
delivery should queue.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings

from functions.adapters.sqs_publisher import SqsFifoPublisher
from functions.domain.whatsapp.credentials import WhatsAppCredentials
from functions.ingest import wiring
from functions.ingest.app import handler
from tests.conftest import ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, frozen_context

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/fuzz-inbound.fifo"
WHATSAPP_OBJECT = "whatsapp_business_account"
SECRETS = (APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN)

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIRS = (
    REPO / "tests" / "events" / "webhooks",
    Path("/work/shared/fixtures/webhooks"),
)
REAL_DELIVERY = Path("/work/shared/fixtures/real/meta_signed_text.json")


def fuzz_settings(max_examples: int, *, shares_fixtures: bool = False) -> settings:
    """Deterministic (the seed comes from the test's name), no example database, no deadline
    (the machine is shared: speed is never judged here). `shares_fixtures`: the examples use a
    function-scoped fixture (moto's secret and client) on purpose, each with its own queue."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
            *([HealthCheck.function_scoped_fixture] if shares_fixtures else []),
        ],
    )


# --- the stored payloads every mutation starts from -----------------------------------------------


def fixture_bodies() -> list[bytes]:
    """Every stored webhook body, byte for byte, and the real delivery Meta signed."""
    bodies: dict[str, bytes] = {}
    for directory in FIXTURE_DIRS:
        if directory.is_dir():
            for path in sorted(directory.glob("*.json")):
                bodies.setdefault(path.name, path.read_bytes().rstrip(b"\n"))
    real = real_delivery()
    if real is not None:
        bodies["real"] = real[0]
    return [bodies[name] for name in sorted(bodies)]


def real_delivery() -> tuple[bytes, str, str] | None:
    """(body, app secret, Meta's X-Hub-Signature-256) of the captured delivery, if present."""
    if not REAL_DELIVERY.is_file():
        return None
    document = json.loads(REAL_DELIVERY.read_text())
    return (
        document["body"].encode("utf-8"),
        document["app_secret"],
        document["x_hub_signature_256"],
    )


# --- the queue ------------------------------------------------------------------------------------

# SQS: ids of 1-128 characters from ASCII 33-126; message bodies of #x9 #xA #xD #x20-#xD7FF
# #xE000-#xFFFD #x10000-#x10FFFF; at most ten entries, distinct batch entry ids
# (alphanumerics, - and _, at most 80); at most 256 KiB for the whole batch (the classic limit).
_SQS_ID = re.compile(r"[!-~]{1,128}")
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_BODY_CHARS = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+")
SQS_BATCH_BYTES = 256 * 1024


@dataclass
class QueuedMessage:
    body: str
    group_id: str
    deduplication_id: str

    @property
    def record(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class InMemoryFifoQueue:
    """A FIFO queue's `SendMessageBatch`, in memory.

    `refuse(n)` is asked for the n-th entry sent (0-based, counting every attempt): a code
    refuses it (as SQS does, `SenderFault` false), None accepts it.
    """

    refuse: Callable[[int], str | None] = lambda _n: None
    messages: list[QueuedMessage] = field(default_factory=list)
    calls: int = 0
    entries_seen: int = 0
    refused: int = 0
    invalid_entries: list[str] = field(default_factory=list)  # what SQS would have refused
    _deduplication_ids: set[str] = field(default_factory=set)

    def send_message_batch(self, *, QueueUrl: str, Entries: Sequence[Mapping[str, Any]]) -> Any:
        from botocore.exceptions import ClientError

        self.calls += 1
        if QueueUrl != QUEUE_URL:
            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessageBatch"
            )
        ids = [entry.get("Id") for entry in Entries]
        if not 1 <= len(Entries) <= 10:
            self.invalid_entries.append(f"{len(Entries)} entries in one batch")
            raise ClientError(
                {"Error": {"Code": "TooManyEntriesInBatchRequest"}}, "SendMessageBatch"
            )
        if len(set(ids)) != len(ids):
            self.invalid_entries.append("batch entry ids not distinct")
            raise ClientError({"Error": {"Code": "BatchEntryIdsNotDistinct"}}, "SendMessageBatch")
        size = sum(
            len(str(entry.get("MessageBody", "")).encode("utf-8", "surrogatepass"))
            for entry in Entries
        )
        if size > SQS_BATCH_BYTES:
            self.invalid_entries.append(f"batch of {size} bytes")
            raise ClientError({"Error": {"Code": "BatchRequestTooLong"}}, "SendMessageBatch")
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry in Entries:
            position = self.entries_seen
            self.entries_seen += 1
            why_invalid = _invalid_entry(entry)
            if why_invalid is not None:
                self.invalid_entries.append(why_invalid)
                failed.append(
                    {"Id": entry["Id"], "Code": "InvalidParameterValue", "SenderFault": True}
                )
                continue
            code = self.refuse(position)
            if code is not None:
                self.refused += 1
                failed.append({"Id": entry["Id"], "Code": code, "SenderFault": False})
                continue
            deduplication_id = entry["MessageDeduplicationId"]
            if deduplication_id not in self._deduplication_ids:  # SQS: accepted, not delivered
                self._deduplication_ids.add(deduplication_id)
                self.messages.append(
                    QueuedMessage(
                        body=entry["MessageBody"],
                        group_id=entry["MessageGroupId"],
                        deduplication_id=deduplication_id,
                    )
                )
            successful.append({"Id": entry["Id"], "MessageId": f"m-{position}"})
        return {"Successful": successful, "Failed": failed}


def _invalid_entry(entry: Mapping[str, Any]) -> str | None:
    if not isinstance(entry.get("Id"), str) or not _ENTRY_ID.fullmatch(entry["Id"]):
        return "batch entry id"
    for key in ("MessageGroupId", "MessageDeduplicationId"):
        value = entry.get(key)
        if not isinstance(value, str) or not _SQS_ID.fullmatch(value):
            return f"{key} {value!r} is not 1-128 characters of ASCII 33-126"
    body = entry.get("MessageBody")
    if not isinstance(body, str) or not body or not _BODY_CHARS.fullmatch(body):
        return "message body empty or with characters SQS refuses"
    return None


# --- the credentials ------------------------------------------------------------------------------


class FixedCredentials:
    """`CredentialSource` that always holds one secret (a refresh finds the same one)."""

    def __init__(self, app_secret: str = APP_SECRET) -> None:
        self.credentials = WhatsAppCredentials(
            app_secret=app_secret, verify_token=VERIFY_TOKEN, access_token=ACCESS_TOKEN
        )

    def current(self) -> WhatsAppCredentials:
        return self.credentials

    def refreshed(self) -> WhatsAppCredentials | None:
        return self.credentials


# --- invoking the handler -------------------------------------------------------------------------


@dataclass
class Invocation:
    event: object
    response: Any
    queue: InMemoryFifoQueue


@contextmanager
def in_memory_ingest(
    queue: InMemoryFifoQueue | None = None, app_secret: str = APP_SECRET
) -> Iterator[InMemoryFifoQueue]:
    """The ingest's wiring pointed at an in-memory queue and fixed credentials."""
    fifo = queue if queue is not None else InMemoryFifoQueue()
    credentials = FixedCredentials(app_secret)

    def publisher() -> SqsFifoPublisher:
        # Built per invocation, as the real wiring does; the queue's fake client outlives it.
        return SqsFifoPublisher(fifo, QUEUE_URL, longest_call_seconds=3.0)  # type: ignore[arg-type]

    with (
        mock.patch.object(wiring, "credentials", return_value=credentials),
        mock.patch.object(wiring, "publisher", publisher),
    ):
        yield fifo


def invoke(
    event: object, queue: InMemoryFifoQueue | None = None, *, app_secret: str = APP_SECRET
) -> Invocation:
    """One call of the real entry point; any exception out of it fails the test as it is."""
    with in_memory_ingest(queue, app_secret) as fifo:
        response = handler(event, frozen_context())  # type: ignore[arg-type]
    return Invocation(event=event, response=response, queue=fifo)


# --- events ---------------------------------------------------------------------------------------


def proxy_event(
    *,
    method: object = "POST",
    body: object = None,
    headers: object = None,
    multi_value_headers: object = None,
    query: object = None,
    multi_value_query: object = None,
    base64_encoded: object = False,
    request_id: object = "fuzz-request",
) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload 1.0) for /webhook, every field as given."""
    return {
        "resource": "/webhook",
        "path": "/webhook",
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_value_query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/webhook",
            "httpMethod": method,
            "path": "/prod/webhook",
            "stage": "prod",
            "requestId": request_id,
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def event_body(raw: bytes, *, base64_encoded: bool) -> str:
    """The `body` API Gateway hands over for these bytes: base64 text, or the text they are
    (bytes that are not text reach a function only base64-encoded: `text_or_none`)."""
    if base64_encoded:
        return base64.b64encode(raw).decode("ascii")
    return raw.decode("utf-8", "surrogatepass")


def is_text(raw: bytes) -> bool:
    """Whether API Gateway could hand these bytes over as text without changing them."""
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


# --- judging an answer ----------------------------------------------------------------------------

ERROR_CODES_BY_STATUS = {
    400: {"invalid_payload", "bad_request"},
    401: {"invalid_signature"},
    403: {"verification_failed"},
    405: {"method_not_allowed"},
    500: {"configuration_error", "internal_error"},
    503: {"queue_unavailable", "credentials_unavailable"},
}

# Text that would mean an answer leaks internals: a traceback, an exception's class name.
_LEAK_MARKERS = (
    "Traceback",
    'File "',
    "Error:",
    "Exception",
    "RecursionError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "JSONDecodeError",
    "KeyError",
    "TypeError",
    "ValueError",
    "AttributeError",
    "IndexError",
    "ClientError",
    "BotoCoreError",
    "InvalidPayload",
    "BodyNotJson",
    "SignatureRejected",
    "VerificationRejected",
    "PublishFailed",
    "BadRequest",
    "MethodNotAllowed",
    "CredentialsUnavailable",
    "ConfigurationError",
    "functions.",
)


def check_proxy_response(invocation: Invocation) -> tuple[int, Any]:
    """The answer is a proxy response: an integer status, string headers, a string body; every
    non-200 is `{"error", "message"}` JSON with the contract's code for that status, and no
    answer carries a traceback, an exception's name or a secret. Returns (status, JSON body or
    the text body of a handshake)."""
    response = invocation.response
    assert isinstance(response, dict), f"not a proxy response: {response!r}"
    status = response.get("statusCode")
    assert type(status) is int, f"statusCode {status!r} is not an integer"
    headers = response.get("headers")
    assert isinstance(headers, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert response.get("isBase64Encoded") is False
    body = response.get("body")
    assert isinstance(body, str), f"body {body!r} is not text"
    for secret in SECRETS:
        assert secret not in body, "a secret is in the response body"
    if status == 200 and headers.get("Content-Type", "").startswith("text/plain"):
        return status, body  # the handshake echoes the challenge, checked by the caller
    for marker in _LEAK_MARKERS:
        assert marker not in body, f"{marker!r} in the response body {body[:300]!r}"
    assert headers.get("Content-Type") == "application/json"
    document = json.loads(body, parse_constant=_refuse_constant)
    assert isinstance(document, dict)
    if status == 200:
        assert set(document) == {"queued"}
        assert type(document["queued"]) is int
        return status, document
    assert status in ERROR_CODES_BY_STATUS, f"status {status} is not one the contract lists"
    assert set(document) == {"error", "message"}, document
    assert document["error"] in ERROR_CODES_BY_STATUS[status], document
    assert isinstance(document["message"], str)
    assert document["message"]
    if status == 405:
        assert headers.get("Allow") == "GET, POST"
    return status, document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str | bytes) -> Any:
    """RFC 8259 JSON: UTF-8 text without a BOM; no NaN, no Infinity, no number that overflows."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # strict: raises on bytes that are not UTF-8

    def finite(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            raise ValueError(f"{literal} overflows")
        return number

    return json.loads(text, parse_constant=_refuse_constant, parse_float=finite)


# --- the suites' own count of what a delivery queues ----------------------------------------------


@dataclass(frozen=True)
class ExpectedMessage:
    wamid: str
    phone_number_id: str
    raw: Mapping[str, Any]


def expected_messages(document: object) -> list[ExpectedMessage]:
    """Every inbound message the contract says a delivery queues, in delivery order.

    From the contract (Ingest behaviour, 4-5) and Meta's payload shape: a message is an object
    with a non-empty string `id` in `entry[].changes[].value.messages[]` of a change whose
    `field` is `messages`, in a delivery whose `object` is WhatsApp's; malformed pieces around it
    (non-object entries, changes, values; non-list containers) are skipped without costing it.
    Where the contract is silent this follows the reading that loses nothing, and says so:
    - a change without `field` is taken as `messages` (Meta always sends it); a `field` of null
      is a field other than `messages`;
    - a delivery without `object`, or with `"object": null`, is read (Meta always sends it);
    - `metadata.phone_number_id` may be a JSON number (written as its decimal text).
    The one deliberate drop: a message whose change has no `metadata.phone_number_id` has no
    business number to be answered from, so it is skipped as malformed (contract step 5).
    """
    if not isinstance(document, dict):
        return []
    if document.get("object") not in (None, WHATSAPP_OBJECT):
        return []
    found: list[ExpectedMessage] = []
    for entry in _list(document.get("entry")):
        if not isinstance(entry, dict):
            continue
        for change in _list(entry.get("changes")):
            if not isinstance(change, dict) or change.get("field", "messages") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            number = (
                _number_text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else ""
            )
            for message in _list(value.get("messages")):
                if not isinstance(message, dict):
                    continue
                wamid = message.get("id")
                if isinstance(wamid, str) and wamid and number:
                    found.append(ExpectedMessage(wamid, number, message))
    return found


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _number_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def canonical(value: object) -> str:
    """One text per JSON value, to compare a queued message with the one sent."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def check_queue_matches(
    queue: InMemoryFifoQueue, expected: Sequence[ExpectedMessage], answered: Mapping[str, Any]
) -> None:
    """What a 200 promises: every expected message on the queue exactly once (SQS drops a
    repeated wamid as a duplicate), nothing else, each conversation in delivery order, each
    record schema v1 holding the message exactly as Meta sent it."""
    assert not queue.invalid_entries, f"SQS would have refused: {queue.invalid_entries}"
    assert answered["queued"] == len(expected), (answered, len(expected))
    first_of: dict[str, ExpectedMessage] = {}
    for message in expected:
        first_of.setdefault(message.wamid, message)
    queued_wamids = [strict_json(m.body)["wamid"] for m in queue.messages]
    assert sorted(queued_wamids) == sorted(first_of), (queued_wamids, list(first_of))
    delivery_order = list(first_of)
    by_group: dict[str, list[str]] = {}
    for queued in queue.messages:
        record = strict_json(queued.body)  # the record is JSON, not Python's superset
        sent = first_of[record["wamid"]]
        assert record["schemaVersion"] == 1
        assert isinstance(record["receivedAt"], str)
        assert record["business"]["phoneNumberId"] == sent.phone_number_id
        assert canonical(record["message"]) == canonical(sent.raw)
        assert queued.group_id.startswith(f"{sent.phone_number_id}:") or re.fullmatch(
            "[0-9a-f]{64}", queued.group_id
        )
        by_group.setdefault(queued.group_id, []).append(record["wamid"])
    for wamids in by_group.values():
        assert wamids == sorted(wamids, key=delivery_order.index), "a conversation out of order"
