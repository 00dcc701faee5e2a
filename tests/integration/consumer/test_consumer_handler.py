"""The consumer handler end to end: moto's SQS + DynamoDB + Secrets Manager, and the fake Graph
API on loopback. Given records on the FIFO queue, when Lambda would call the handler, then the
Graph API sees exactly the calls the contract names, and the batch response, the queue, the
metrics and the logs say what happened."""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.adapters.graph_client import GraphClient
from functions.common.names import (
    DIM_ERROR_CLASS,
    DIM_ERROR_CODE,
    ENV_IDEMPOTENCY_TABLE,
    ENV_QUEUE_URL,
    ENV_REPLY_RULES_PATH,
    METRIC_DEAD_LETTERED,
    METRIC_DUPLICATE_SKIPPED,
    METRIC_END_TO_END_LATENCY,
    METRIC_GRAPH_API_ERROR,
    METRIC_GRAPH_API_ERROR_CLASS,
    METRIC_PERMANENT_FAILURE,
    METRIC_POISON_RECORD,
    METRIC_READ_RECEIPT_SENT,
    METRIC_REPLY_SENT,
    METRIC_REPLY_UNCERTAIN,
    METRIC_RETRY_SCHEDULED,
    METRIC_TEMPLATE_FALLBACK,
)
from functions.common.settings import ConfigurationError
from functions.consumer.app import handler
from functions.domain.consumer.reply_rules import ReplyRulesError
from local_pipeline.fake_graph import (
    Answer,
    FakeGraphApi,
    http_error,
    meta_error,
    ok,
    reset_connection,
)
from tests.conftest import ACCESS_TOKEN, boto_client
from tests.integration.consumer.conftest import GRAPH_VERSION, Inbox, context
from tests.telemetry import emitted_metrics, log_lines, metric_total
from tests.unit.consumer.builders import (
    BUSINESS_DISPLAY_NUMBER,
    SENDER,
    inbound,
    queued_body,
    wamid_of,
)

pytestmark = pytest.mark.integration

PNID = "106540352242922"
SECRET_TEXT = "my card number is 4111"


def body(message: dict[str, Any] | None = None, **kwargs: Any) -> str:
    return queued_body(message, received_at=datetime.now(UTC), **kwargs)


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def ids(event: dict[str, Any]) -> list[str]:
    return [r["messageId"] for r in event["Records"]]


def test_a_message_is_read_then_answered_in_thread_from_its_number(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    record = body(inbound(text="hello"), phone_number_id=PNID)
    inbox.put(record)
    event = inbox.event()

    response = handler(event, context())

    assert response == {"batchItemFailures": []}
    read, sent = consumer_env.requests
    path = f"/{GRAPH_VERSION}/{PNID}/messages"
    assert (read.kind, read.path, sent.kind, sent.path) == ("read", path, "send", path)
    assert read.json == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": wamid_of(record),
        "typing_indicator": {"type": "text"},
    }
    assert sent.json["to"] == SENDER
    assert sent.json["context"] == {"message_id": wamid_of(record)}
    assert sent.json["text"]["body"] == "Hello Sheena! Reply *menu* to see what I can do."
    assert {r.headers["authorization"] for r in consumer_env.requests} == {f"Bearer {ACCESS_TOKEN}"}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_READ_RECEIPT_SENT) == 1
    assert metric_total(metrics, METRIC_REPLY_SENT) == 1
    latency = [m for m in metrics if m["name"] == METRIC_END_TO_END_LATENCY]
    assert latency
    assert latency[0]["unit"] == "Milliseconds"
    assert 0 < latency[0]["value"] < 60_000


def test_sqs_redelivery_and_metas_duplicate_webhook_get_one_reply(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    record = body()
    inbox.put(record, dedup="first-delivery")
    event = inbox.event()
    handler(event, context())

    redelivered = handler(event, context())
    inbox.delete_succeeded(event, redelivered)
    inbox.put(record, dedup="meta-sent-it-again-days-later")
    duplicate = handler(inbox.event(), context())

    assert failures(redelivered) == failures(duplicate) == []
    assert len(consumer_env.sent_messages()) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_DUPLICATE_SKIPPED) == 2
    assert metric_total(metrics, METRIC_REPLY_SENT) == 1


def _let_the_function_timeout_pass() -> None:
    """Age the lease a dead execution left on its message, as the clock would after its
    timeout."""
    dynamodb = boto_client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    table = os.environ[ENV_IDEMPOTENCY_TABLE]
    stuck = [
        item
        for item in dynamodb.scan(TableName=table)["Items"]
        if item.get("status", {}).get("S") == "active"
    ]
    assert len(stuck) == 1
    dynamodb.update_item(
        TableName=table,
        Key={"id": stuck[0]["id"]},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )


def test_a_crash_after_the_send_does_not_send_twice(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inbox.put(body())
    event = inbox.event()
    original = GraphClient.send

    def send_then_die(self: GraphClient, phone_number_id: str, payload: Any, **options: Any) -> str:
        original(self, phone_number_id, payload)
        raise SystemExit("the execution environment died")  # nothing after this runs

    monkeypatch.setattr(GraphClient, "send", send_then_die)
    with pytest.raises(SystemExit):
        handler(event, context())
    monkeypatch.setattr(GraphClient, "send", original)
    _let_the_function_timeout_pass()

    redelivered = handler(event, context())

    assert failures(redelivered) == []
    assert len(consumer_env.sent_messages()) == 1
    assert metric_total(emitted_metrics(capsys.readouterr().out), METRIC_REPLY_UNCERTAIN) == 1


def test_concurrent_duplicates_do_not_both_send(consumer_env: FakeGraphApi, inbox: Inbox) -> None:
    consumer_env.latency_seconds = 0.5
    record = body()
    inbox.put(record, group="lambda-a", dedup="a")
    inbox.put(record, group="lambda-b", dedup="b")
    both = inbox.event()["Records"]
    first = {"Records": [both[0]]}
    second = {"Records": [both[1]]}
    answers: dict[str, Any] = {}

    runner = threading.Thread(target=lambda: answers.update(a=handler(first, context())))
    runner.start()
    # The second starts while the first's read receipt is in flight: both reach the ledger
    # within one Graph latency of each other, and either may claim the wamid first (the read
    # receipt goes before the claim, decisions D34).
    assert consumer_env.wait_for(1, kind="read", timeout=5)
    answers["b"] = handler(second, context())
    runner.join(10)

    # One of them sent; the other was told to come back shortly, and sent nothing
    outcomes = {name: failures(answer) for name, answer in answers.items()}
    [loser] = [name for name, failed in outcomes.items() if failed]
    assert outcomes[loser] == ids(first if loser == "a" else second)
    assert len(consumer_env.sent_messages()) == 1
    # The retry finds it answered
    assert failures(handler(first if loser == "a" else second, context())) == []
    assert len(consumer_env.sent_messages()) == 1


@dataclass(frozen=True)
class ErrorCase:
    answer: Answer
    code: str  # the ErrorCode dimension
    error_class: str
    retried: bool


ERROR_CASES = [
    ErrorCase(meta_error(130429, http_status=429), "130429", "rate_limit", True),
    ErrorCase(meta_error(4), "4", "rate_limit", True),
    ErrorCase(meta_error(131056), "131056", "pair_rate_limit", True),
    ErrorCase(meta_error(131000, http_status=500), "131000", "transient", True),
    ErrorCase(meta_error(131057), "131057", "transient", True),
    ErrorCase(http_error(503), "http_503", "outage", True),
    ErrorCase(reset_connection(), "network", "outage", True),
    ErrorCase(meta_error(190, http_status=401), "190", "auth_config", True),
    ErrorCase(meta_error(131005, http_status=403), "131005", "auth_config", True),
    ErrorCase(meta_error(131048), "131048", "quality_policy", True),
    ErrorCase(meta_error(368), "368", "quality_policy", True),
    ErrorCase(meta_error(131026), "131026", "recipient", False),
    ErrorCase(meta_error(131049), "131049", "recipient", False),
    ErrorCase(meta_error(100), "100", "bad_request", False),
    ErrorCase(meta_error(132001), "132001", "bad_request", False),
    ErrorCase(meta_error(999999), "999999", "unknown", True),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: f"{case.code}-{case.error_class}")
def test_every_error_class_gets_its_action(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
    captured_logs: io.StringIO,
    case: ErrorCase,
) -> None:
    code, error_class = case.code, case.error_class
    consumer_env.enqueue(case.answer, kind="send")
    inbox.put(body())
    event = inbox.event()

    response = handler(event, context())

    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_GRAPH_API_ERROR, **{DIM_ERROR_CODE: code}) == 1
    assert (
        metric_total(metrics, METRIC_GRAPH_API_ERROR_CLASS, **{DIM_ERROR_CLASS: error_class}) == 1
    )
    lines = log_lines(captured_logs)
    if case.retried:
        assert failures(response) == ids(event)
        assert metric_total(metrics, METRIC_RETRY_SCHEDULED, **{DIM_ERROR_CODE: code}) == 1
        assert inbox.event()["Records"] == []  # invisible for its backoff
        retry_line = next(line for line in lines if line["message"] == "record will be retried")
        assert retry_line["error_code"] == code
        assert retry_line["visibility_timeout_seconds"] >= 3
    else:
        assert failures(response) == []
        assert metric_total(metrics, METRIC_PERMANENT_FAILURE, **{DIM_ERROR_CODE: code}) == 1
        warning = next(line for line in lines if line["level"] == "WARNING")
        assert warning["error_code"] == code
        assert warning["wamid"] == wamid_of(event["Records"][0]["body"])


def test_after_a_retryable_error_the_retry_sends(consumer_env: FakeGraphApi, inbox: Inbox) -> None:
    consumer_env.enqueue(meta_error(130429), kind="send")
    inbox.put(body())
    event = inbox.event()

    first = handler(event, context())
    second = handler(event, context())

    assert failures(first) == ids(event)
    assert failures(second) == []
    assert [r.answer for r in consumer_env.sent_messages()] == ["meta_error", "ok"]


def test_closed_window_is_answered_with_the_fallback_template(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer_env.enqueue(meta_error(131047), ok(), kind="send")
    record = body()
    inbox.put(record)

    response = handler(inbox.event(), context())

    assert failures(response) == []
    free_form, template = (r.json for r in consumer_env.sent_messages())
    assert free_form["type"] == "text"
    assert template["type"] == "template"
    assert template["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    assert template["context"] == {"message_id": wamid_of(record)}
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_TEMPLATE_FALLBACK) == 1
    assert metric_total(metrics, METRIC_GRAPH_API_ERROR, **{DIM_ERROR_CODE: "131047"}) == 1


def test_a_failed_read_receipt_does_not_stop_the_reply(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer_env.enqueue(http_error(502), kind="read")
    inbox.put(body())

    response = handler(inbox.event(), context())

    assert failures(response) == []
    assert len(consumer_env.sent_messages()) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_GRAPH_API_ERROR, **{DIM_ERROR_CODE: "http_502"}) == 1


def test_a_mixed_batch_fails_only_what_must_fail(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # conversation A: an unreadable head goes to the DLQ; the good record behind it is answered.
    inbox.put("this is not a record", group="A")
    inbox.put(body(inbound(sender="1111")), group="A")
    # conversation B: throttled, with a later record held back.
    b1, b2 = body(inbound(sender="2222")), body(inbound(sender="2222"))
    inbox.put(b1, group="B")
    inbox.put(b2, group="B")
    # conversations C and D: fine, two records each, answered in order.
    c_and_d = [body(inbound(sender=s)) for s in ("3333", "3333", "4444", "4444")]
    for item, group in zip(c_and_d, "CCDD", strict=True):
        inbox.put(item, group=group)
    event = inbox.event()
    by_body = {r["body"]: r["messageId"] for r in event["Records"]}
    assert len(by_body) == 8
    consumer_env.enqueue(meta_error(130429), kind="send", to="2222")

    response = handler(event, context())

    failed = set(failures(response))
    assert failed == {by_body[b1], by_body[b2]}
    [dead] = inbox.queues.drain(inbox.queues.dlq_url)
    assert dead["Body"] == "this is not a record"
    assert dead["MessageAttributes"]["DeadLetterReason"]["StringValue"] == "unreadable"
    sent = [r.json for r in consumer_env.sent_messages() if r.answer == "ok"]
    answered = [m["context"]["message_id"] for m in sent]
    a_good = next(r["body"] for r in event["Records"] if '"from": "1111"' in r["body"])
    assert sorted(answered) == sorted(wamid_of(item) for item in [a_good, *c_and_d])
    for sender in ("3333", "4444"):
        own = [m["context"]["message_id"] for m in sent if m["to"] == sender]
        assert own == [wamid_of(i) for i in c_and_d if f'"from": "{sender}"' in i]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_POISON_RECORD) == 1
    assert metric_total(metrics, METRIC_DEAD_LETTERED, **{DIM_ERROR_CODE: "poison"}) == 1
    assert metric_total(metrics, METRIC_RETRY_SCHEDULED, **{DIM_ERROR_CODE: "held_back"}) == 1
    assert metric_total(metrics, METRIC_REPLY_SENT) == 5


@pytest.mark.parametrize("message_type", ["reaction", "system", "unsupported"])
def test_no_reply_to_reactions_and_system_messages_but_they_are_read(
    consumer_env: FakeGraphApi, inbox: Inbox, message_type: str
) -> None:
    inbox.put(body(inbound(message_type)))

    response = handler(inbox.event(), context())

    assert failures(response) == []
    assert len(consumer_env.read_receipts()) == 1
    assert "typing_indicator" not in consumer_env.read_receipts()[0].json
    assert consumer_env.sent_messages() == []


def test_no_reply_to_the_business_own_number(consumer_env: FakeGraphApi, inbox: Inbox) -> None:
    inbox.put(body(inbound(text="hi", sender=BUSINESS_DISPLAY_NUMBER)))

    handler(inbox.event(), context())

    assert consumer_env.sent_messages() == []


def test_replies_come_from_the_rules_file_named_by_the_environment(
    consumer_env: FakeGraphApi, inbox: Inbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = {
        "rules": [
            {
                "name": "order",
                "match": {"keywords": ["order"]},
                "reply": {
                    "type": "buttons",
                    "body": "Which one?",
                    "buttons": [{"id": "o1", "title": "Last order"}],
                },
            }
        ],
        "default": None,
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    monkeypatch.setenv(ENV_REPLY_RULES_PATH, str(path))
    inbox.put(body(inbound(text="Where is my ORDER?")), group="a")
    inbox.put(body(inbound(text="thanks", sender="999")), group="b")

    handler(inbox.event(), context())

    (sent,) = consumer_env.sent_messages()
    assert sent.json["type"] == "interactive"
    assert sent.json["interactive"]["action"]["buttons"][0]["reply"]["id"] == "o1"
    assert len(consumer_env.read_receipts()) == 2


def test_an_invalid_rules_file_fails_loudly_naming_the_rule(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"name": "broken", "match": {"types": ["text"]}}]}))
    monkeypatch.setenv(ENV_REPLY_RULES_PATH, str(path))
    inbox.put(body())

    with pytest.raises(ReplyRulesError, match="broken"):
        handler(inbox.event(), context())
    assert consumer_env.requests == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_RETRY_SCHEDULED, **{DIM_ERROR_CODE: "configuration"}) == 1


def test_missing_settings_fail_the_invocation_with_a_clear_error(
    consumer_env: FakeGraphApi, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_IDEMPOTENCY_TABLE)
    inbox.put(body())

    with pytest.raises(ConfigurationError, match=ENV_IDEMPOTENCY_TABLE):
        handler(inbox.event(), context())


def test_backoff_works_without_queue_url_through_the_event_source_arn(
    consumer_env: FakeGraphApi, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_QUEUE_URL)
    consumer_env.enqueue(meta_error(190, http_status=401), kind="send")
    inbox.put(body())
    event = inbox.event()

    response = handler(event, context())

    assert failures(response) == ids(event)
    assert inbox.event()["Records"] == []


def test_logs_carry_ids_mask_numbers_and_never_hold_secrets_or_text(
    consumer_env: FakeGraphApi,
    inbox: Inbox,
    captured_logs: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    consumer_env.enqueue(meta_error(131000), kind="read")
    inbox.put(body(inbound(text=SECRET_TEXT)), group="a")
    inbox.put(body(inbound(text="hi")), group="b")
    consumer_env.enqueue(meta_error(130429), kind="send")
    event = inbox.event()

    handler(event, context())

    output = captured_logs.getvalue() + capsys.readouterr().out
    for forbidden in (SENDER, ACCESS_TOKEN, SECRET_TEXT, "Hello Sheena"):
        assert forbidden not in output
    records = [line for line in log_lines(captured_logs) if "sqs_message_id" in line]
    assert {line["sqs_message_id"] for line in records} == set(ids(event))
    assert all(line["wamid"].startswith("wamid.") for line in records)
    assert {line["sender"] for line in records} == {"*******1234"}


def test_graph_api_unreachable_is_a_network_retry(
    consumer_env: FakeGraphApi, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer_env.stop()
    inbox.put(body())
    event = inbox.event()

    response = handler(event, context())

    assert failures(response) == ids(event)
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metric_total(metrics, METRIC_GRAPH_API_ERROR, **{DIM_ERROR_CODE: "network"}) == 2


def test_a_caller_without_a_lambda_context_still_gets_replies(
    consumer_env: FakeGraphApi, inbox: Inbox
) -> None:
    inbox.put(body(inbound(text="hello"), phone_number_id=PNID))

    response = handler(inbox.event(), None)

    assert response == {"batchItemFailures": []}
    assert [r.kind for r in consumer_env.requests] == ["read", "send"]
