"""The ingest handler end to end against moto's server: the contract's ingest section."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from functions.domain.ingest.signature import sign
from functions.domain.whatsapp.queued_record import QueuedRecord, QueuedStatus, read_record
from tests.conftest import APP_SECRET, VERIFY_TOKEN, FifoQueues, StatusQueue, boto_client
from tests.events import builders as b
from tests.integration.ingest.conftest import Invoke
from tests.telemetry import emitted_metrics

pytestmark = pytest.mark.integration


# --- GET: the subscription handshake ------------------------------------------------------------


def test_handshake_echoes_the_challenge_as_plain_text(ingest: Invoke) -> None:
    answer = ingest(
        b.api_event(
            "GET",
            query={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
    )
    assert answer["statusCode"] == 200
    assert answer["body"] == "1158201444"
    assert answer["headers"]["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        None,
    ],
)
def test_any_other_handshake_is_forbidden(ingest: Invoke, query: dict[str, str] | None) -> None:
    answer = ingest(b.api_event("GET", query=query))
    assert answer["statusCode"] == 403
    assert json.loads(answer["body"])["error"] == "verification_failed"


# --- POST: deliveries ---------------------------------------------------------------------------


def test_a_signed_text_message_is_queued_once_with_fifo_ids(
    ingest: Invoke, fifo_queues: FifoQueues
) -> None:
    body = b.fixture_bytes("text")

    answer = ingest(b.signed_post(body, APP_SECRET))

    assert answer["statusCode"] == 200
    (queued,) = fifo_queues.drain()
    record = QueuedRecord.from_json(queued["Body"])
    wamid = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert record.wamid == wamid
    assert queued["Attributes"]["MessageDeduplicationId"] == wamid
    assert queued["Attributes"]["MessageGroupId"] == record.group_id
    assert record.received.business.phone_number_id == "106540352242922"
    assert record.received.contact is not None
    assert record.received.contact.name == "Sheena Nelson"


def test_the_real_captured_meta_delivery_is_accepted(
    ingest: Invoke, fifo_queues: FifoQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = json.loads((b.EVENTS / "meta_signed_text.json").read_text())
    secret_name = f"real-{uuid.uuid4().hex[:8]}"
    boto_client("secretsmanager", fifo_queues.sqs.meta.endpoint_url).create_secret(
        Name=secret_name,
        SecretString=json.dumps(
            {"appSecret": real["app_secret"], "verifyToken": "v", "accessToken": "t"}
        ),
    )
    monkeypatch.setenv("WHATSAPP_SECRET_ID", secret_name)
    event = b.api_event(
        body=real["body"].encode(), headers={"x-hub-signature-256": real["x_hub_signature_256"]}
    )

    assert ingest(event)["statusCode"] == 200
    assert len(fifo_queues.drain()) == 1

    tampered = b.api_event(
        body=real["body"].replace("PyWa", "PyWA").encode(),
        headers={"x-hub-signature-256": real["x_hub_signature_256"]},
    )
    assert ingest(tampered)["statusCode"] == 401
    assert fifo_queues.drain() == []


@pytest.mark.parametrize(
    "header_name", ["X-Hub-Signature-256", "x-hub-signature-256", "X-HUB-SIGNATURE-256"]
)
@pytest.mark.parametrize("base64_encoded", [False, True])
def test_any_header_case_and_base64_bodies(
    ingest: Invoke, fifo_queues: FifoQueues, header_name: str, base64_encoded: bool
) -> None:
    body = b.fixture_bytes("image")
    event = b.signed_post(body, APP_SECRET, header_name=header_name, base64_encoded=base64_encoded)
    assert ingest(event)["statusCode"] == 200
    assert len(fifo_queues.drain()) == 1


@pytest.mark.parametrize("ascii_only", [True, False], ids=["escaped", "raw-utf8"])
def test_non_ascii_text_signed_as_sent(
    ingest: Invoke, fifo_queues: FifoQueues, ascii_only: bool
) -> None:
    text = "Olá! Você tem café? 😀👍🏽 — naïve façade, Ελληνικά, עברית, 日本語"
    body = b.encode(
        b.webhook(b.change(messages=[b.message(content={"body": text})])), ascii_only=ascii_only
    )

    assert ingest(b.signed_post(body, APP_SECRET))["statusCode"] == 200
    (queued,) = fifo_queues.drain()
    assert json.loads(queued["Body"])["message"]["text"]["body"] == text


def test_missing_signature_is_401_and_nothing_is_queued(
    ingest: Invoke, fifo_queues: FifoQueues, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = ingest(b.api_event(body=b.fixture_bytes("text")))

    assert answer["statusCode"] == 401
    assert json.loads(answer["body"]) == {
        "error": "invalid_signature",
        "message": "the X-Hub-Signature-256 header is missing",
    }
    assert fifo_queues.drain() == []
    assert any(m["name"] == "InvalidSignature" for m in emitted_metrics(capsys.readouterr().out))


def test_a_signature_made_with_the_verify_token_is_rejected(
    ingest: Invoke, fifo_queues: FifoQueues
) -> None:
    body = b.fixture_bytes("text")
    event = b.api_event(body=body, headers={"X-Hub-Signature-256": sign(body, VERIFY_TOKEN)})
    assert ingest(event)["statusCode"] == 401
    assert fifo_queues.drain() == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'"text"', b"", b"\xff\xfe\x00"])
def test_signed_bodies_that_are_not_json_objects_are_400(
    ingest: Invoke, fifo_queues: FifoQueues, body: bytes
) -> None:
    event = b.signed_post(body, APP_SECRET, base64_encoded=True)
    answer = ingest(event)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"] == "invalid_payload"
    assert fifo_queues.drain() == []


def test_statuses_errors_and_other_fields_are_acknowledged_and_counted(
    ingest: Invoke, fifo_queues: FifoQueues, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b.encode(
        b.webhook(
            b.change(statuses=[b.status("delivered"), b.status("read"), b.status("read")]),
            b.change(statuses=[b.status("failed", errors=[b.meta_error(131026)])]),
            b.change(errors=[b.meta_error(130429)]),
            b.change(field="account_update"),
        )
    )

    answer = ingest(b.signed_post(body, APP_SECRET))

    assert answer["statusCode"] == 200
    assert fifo_queues.drain() == []
    metrics = emitted_metrics(capsys.readouterr().out)
    by_dimension = {
        (m["name"], tuple(sorted(m["dimensions"].items()))): m["value"] for m in metrics
    }
    service = ("service", "whatsapp-relay-tests")
    assert by_dimension[("StatusReceived", (("Status", "read"), service))] == 2
    assert by_dimension[("StatusReceived", (("Status", "delivered"), service))] == 1
    assert by_dimension[("DeliveryFailed", (("ErrorCode", "131026"), service))] == 1
    assert by_dimension[("WebhookError", (("ErrorCode", "130429"), service))] == 1
    assert by_dimension[("IgnoredChange", (("Field", "account_update"), service))] == 1


def test_with_a_status_queue_each_status_is_queued_before_the_200(
    ingest: Invoke,
    fifo_queues: FifoQueues,
    status_queue: StatusQueue,
    capsys: pytest.CaptureFixture[str],
) -> None:
    statuses = [b.status("sent"), b.status("failed", errors=[b.meta_error(131047)])]
    body = b.encode(b.webhook(b.change(messages=[b.message()], statuses=statuses)))

    answer = ingest(b.signed_post(body, APP_SECRET))

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"queued": 1}  # inbound messages, as before
    assert len(fifo_queues.drain()) == 1  # the inbound queue holds messages only
    queued = [read_record(m["Body"]) for m in status_queue.drain()]
    assert all(isinstance(r, QueuedStatus) for r in queued)
    assert sorted(r.reply_wamid for r in queued if isinstance(r, QueuedStatus)) == sorted(
        s["id"] for s in statuses
    )
    assert b.SENDER not in json.dumps([r.to_json() for r in queued])
    metrics = emitted_metrics(capsys.readouterr().out)
    assert sum(m["value"] for m in metrics if m["name"] == "StatusesQueued") == 2


def test_a_status_queue_that_refuses_makes_meta_redeliver(
    ingest: Invoke, status_queue: StatusQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATUS_QUEUE_URL", status_queue.url + "-gone")

    answer = ingest(b.signed_post(b.fixture_bytes("status_failed"), APP_SECRET))

    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"] == "queue_unavailable"


def test_a_fifo_status_queue_is_a_configuration_error(
    ingest: Invoke, monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    monkeypatch.setenv("STATUS_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/statuses.fifo")

    answer = ingest(b.signed_post(b.fixture_bytes("status_failed"), APP_SECRET))

    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"] == "configuration_error"
    assert "STATUS_QUEUE_URL" in captured_logs.getvalue()


def test_a_thousand_updates_across_entries_and_numbers_are_all_queued_exactly_once(
    ingest: Invoke, fifo_queues: FifoQueues
) -> None:
    # 1,000 updates: 60 messages from 13 senders to 4 business numbers, and 940 statuses.
    # (moto's FIFO deduplication slows quadratically with queue size - 300 messages take 40 s -
    # so the unit tests push the far larger batches through the publisher.)
    changes = [
        b.change(
            messages=[b.message(sender=f"4477009{(i * 7 + n) % 13:05d}") for n in range(3)],
            statuses=[b.status("sent") for _ in range(47)],
            phone_number_id=f"20000000000000{i % 4}",
        )
        for i in range(20)
    ]
    document = b.webhook(*changes, entries=10)
    body = b.encode(document)
    expected = [
        m["id"]
        for entry in document["entry"]
        for change in entry["changes"]
        for m in change["value"]["messages"]
    ]

    answer = ingest(b.signed_post(body, APP_SECRET))

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"queued": 60}
    queued = [QueuedRecord.from_json(m["Body"]) for m in fifo_queues.drain()]
    assert sorted(r.wamid for r in queued) == sorted(expected)
    # Per conversation, SQS hands the messages out in the order Meta sent them.
    for group in {r.group_id for r in queued}:
        in_queue = [r.wamid for r in queued if r.group_id == group]
        assert in_queue == [w for w in expected if w in set(in_queue)]


def test_a_duplicate_delivery_is_queued_once(ingest: Invoke, fifo_queues: FifoQueues) -> None:
    event = b.signed_post(b.fixture_bytes("text"), APP_SECRET)
    assert ingest(event)["statusCode"] == 200
    assert ingest(event)["statusCode"] == 200
    assert len(fifo_queues.drain()) == 1


def test_queue_unavailable_is_503_so_meta_redelivers(
    ingest: Invoke,
    fifo_queues: FifoQueues,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("QUEUE_URL", fifo_queues.queue_url.replace("inbound-", "missing-"))

    answer = ingest(b.signed_post(b.fixture_bytes("text"), APP_SECRET))

    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"] == "queue_unavailable"
    failures = [
        m for m in emitted_metrics(capsys.readouterr().out) if m["name"] == "QueueSendFailed"
    ]
    assert failures
    assert "ErrorCode" in failures[0]["dimensions"]


def test_secret_missing_is_503_for_posts_and_handshakes(
    ingest: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSAPP_SECRET_ID", "does-not-exist")
    post = ingest(b.signed_post(b.fixture_bytes("text"), APP_SECRET))
    get = ingest(
        b.api_event(
            "GET", query={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"}
        )
    )
    assert post["statusCode"] == 503
    assert get["statusCode"] == 503


def test_misconfiguration_is_a_clear_500(ingest: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/standard-queue")
    answer = ingest(b.signed_post(b.fixture_bytes("text"), APP_SECRET))
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"] == "configuration_error"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", ""])
def test_other_methods_are_405(ingest: Invoke, method: str) -> None:
    answer = ingest(b.api_event(method, body=b"{}"))
    assert answer["statusCode"] == 405
    assert answer["headers"]["Allow"] == "GET, POST"


def test_a_rotated_app_secret_works_without_waiting_for_the_cache(
    ingest: Invoke, fifo_queues: FifoQueues, whatsapp_secret: str
) -> None:
    body = b.fixture_bytes("text")
    assert ingest(b.signed_post(body, APP_SECRET))["statusCode"] == 200  # caches the old secret
    boto_client("secretsmanager", fifo_queues.sqs.meta.endpoint_url).put_secret_value(
        SecretId=whatsapp_secret,
        SecretString=json.dumps({"appSecret": "rotated", "verifyToken": "v", "accessToken": "t"}),
    )
    body2 = b.fixture_bytes("image")
    assert ingest(b.signed_post(body2, "rotated"))["statusCode"] == 200
    assert len(fifo_queues.drain()) == 2


def test_logs_carry_the_request_id_and_wamid_but_no_phone_number_or_text(
    ingest: Invoke,
    fifo_queues: FifoQueues,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = b.encode(
        b.webhook(
            b.change(messages=[b.message(sender="447700900123", content={"body": "secret plan"})])
        )
    )
    event = b.signed_post(body, APP_SECRET)
    event["requestContext"]["requestId"] = "req-abc-123"

    assert ingest(event)["statusCode"] == 200

    output = captured_logs.getvalue() + capsys.readouterr().out
    logs = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    [delivery_line] = [line for line in logs if line["message"] == "delivery queued"]
    assert delivery_line["correlation_id"] == "req-abc-123"
    assert delivery_line["queued"] == 1
    assert [w[:6] for w in delivery_line["wamids"]] == ["wamid."]
    assert delivery_line["message_types"] == {"text": 1}
    assert "447700900123" not in output
    assert "secret plan" not in output
    assert APP_SECRET not in output


def test_a_caller_without_a_lambda_context_gets_an_answer(
    fifo_queues: FifoQueues, whatsapp_secret: str
) -> None:
    from functions.ingest.app import handler

    answer = handler(b.signed_post(b.fixture_bytes("text"), APP_SECRET), None)

    assert answer["statusCode"] == 200
    assert len(fifo_queues.drain()) == 1


def test_a_malformed_piece_is_skipped_counted_and_its_neighbours_queued(
    ingest: Invoke, fifo_queues: FifoQueues, capsys: pytest.CaptureFixture[str]
) -> None:
    document = b.webhook(b.change(messages=[b.message(wamid="wamid.GOOD")]))
    document["entry"][0]["changes"].append({"field": "messages", "value": None})
    document["entry"][0]["changes"][0]["value"]["messages"].append({"type": "text"})

    answer = ingest(b.signed_post(b.encode(document), APP_SECRET))

    assert answer["statusCode"] == 200
    assert [QueuedRecord.from_json(m["Body"]).wamid for m in fifo_queues.drain()] == ["wamid.GOOD"]
    malformed = [
        m for m in emitted_metrics(capsys.readouterr().out) if m["name"] == "MalformedUpdates"
    ]
    assert [m["value"] for m in malformed] == [2]


@pytest.mark.parametrize(
    "text", ["\ud83d", "\ude2e lone low", "\uffff\ufffe", "nul \x00 bell \x07"]
)
def test_code_points_sqs_would_refuse_travel_escaped(
    ingest: Invoke, fifo_queues: FifoQueues, text: str
) -> None:
    body = b.encode(b.webhook(b.change(messages=[b.message(content={"body": text})])))

    assert ingest(b.signed_post(body, APP_SECRET))["statusCode"] == 200

    (queued,) = fifo_queues.drain()
    assert queued["Body"].isascii()
    assert QueuedRecord.from_json(queued["Body"]).received.message.raw["text"]["body"] == text


def test_a_bug_answers_a_json_500_and_is_logged_with_its_traceback(
    ingest: Invoke,
    fifo_queues: FifoQueues,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
) -> None:
    from functions.ingest import wiring

    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(wiring, "publisher", broken)

    answer = ingest(b.signed_post(b.fixture_bytes("text"), APP_SECRET))

    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"] == "internal_error"
    assert "RuntimeError" in captured_logs.getvalue()
    assert fifo_queues.drain() == []
