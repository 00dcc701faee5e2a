"""No secret and no personal data in any log line, at DEBUG, with Lambda's own log setup.

The real ingest and consumer handlers each run in a child process set up the way Lambda's
Python runtime sets up a function whose log format is JSON and application log level DEBUG
(`tests/e2e/lambda_runtime.py`: the root logger at DEBUG with a handler that writes every
record), with every Powertools debug switch on (`LOG_LEVEL`, `POWERTOOLS_DEBUG`,
`POWERTOOLS_LOGGER_LOG_EVENT`). They run one whole scenario against moto's server and the fake
Graph API: handshakes (right and wrong verify token), signed webhooks carrying names, phone
numbers and message text, a forged signature, statuses, secret reads in both functions, replies
and a rate-limited reply that is retried. Everything either process writes is read back and
searched for the secrets and the personal data it handled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_METRICS_NAMESPACE,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_LOG_LEVEL,
    ENV_METRICS_NAMESPACE,
    ENV_QUEUE_URL,
    ENV_SECRET_ID,
    ENV_SERVICE_NAME,
    INGEST_SERVICE,
)
from functions.domain.ingest.signature import sign
from infra.constants import CONSUMER_HANDLER, INGEST_HANDLER
from local_pipeline.config import LOCAL_AWS_ENV, LOCAL_REGION
from local_pipeline.emulator import LocalResources, aws_client, create_resources
from local_pipeline.fake_graph import FakeGraphApi, meta_error
from local_pipeline.gateway import build_proxy_event
from local_pipeline.poller import SqsEventSource
from local_pipeline.samples import SAMPLE_PHONE_NUMBER_ID, encode, message_delivery, new_wamid
from tests.e2e.lambda_runtime import ANSWER_PREFIX
from tests.e2e.pipeline_process import REPO_ROOT

pytestmark = pytest.mark.e2e

APP_SECRET = "app-secret-Zq81xKv0"
VERIFY_TOKEN = "verify-token-Lm42pQw7"
ACCESS_TOKEN = "EAAGaccess-token-Ty93wRb5"
SECRETS = (APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN)

SHEENA, SHEENA_PHONE = "Sheena Nelson", "16505551234"
JONAS, JONAS_PHONE = "Jonas Berg", "447700900123"
PRIYA, PRIYA_PHONE = "Priya Raman", "919812345678"
SHEENA_TEXT = "hi, my door code is 4096 and I live at 12 Rue Cler"
JONAS_TEXT = "hello, the parcel for my neighbour Greta Lund is late"
CARD_NAME, CARD_PHONE = "Ana Lima", "+1 650 555 0199"
FAILED_RECIPIENT = "5511987654321"
# The national significant numbers: every common way of writing a number contains its digits.
PHONE_NUMBERS = ("6505551234", "7700900123", "9812345678", "6505550199", "11987654321")
WORDS = (SHEENA, JONAS, PRIYA, "Greta Lund", CARD_NAME, SHEENA_TEXT, JONAS_TEXT, "door code")
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[\s\-().]+(?=\d)")


def leaks(line: str) -> list[str]:
    """The secrets, phone numbers (in any of their usual forms) and texts found in `line`."""
    found = [f"secret {value!r}" for value in SECRETS if value in line]
    digits_joined = _BETWEEN_DIGITS.sub("", line)
    found += [f"phone number {n}" for n in PHONE_NUMBERS if n in digits_joined]
    lowered = line.lower()
    found += [f"personal data {w!r}" for w in WORDS if w.lower() in lowered]
    return found


def test_the_leak_finder_sees_every_form_of_a_phone_number() -> None:
    for form in ("+1 650 555 1234", "(650) 555-1234", "16505551234", "650.555.1234"):
        assert leaks(f'{{"to": "{form}"}}') == ["phone number 6505551234"]
    assert leaks('{"sender": "*******1234"}') == []
    assert leaks("body=HELLO, THE PARCEL FOR MY NEIGHBOUR GRETA LUND IS LATE") != []


class LambdaProcess:
    """One function's execution environment (`tests/e2e/lambda_runtime.py`), invoked over pipes;
    keeps every line it writes."""

    def __init__(self, dotted_handler: str, env: Mapping[str, str]) -> None:
        self.lines: list[str] = []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.lambda_runtime", dotted_handler],
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._stderr_lines: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        self._stderr_lines.extend(line.rstrip("\n") for line in self._process.stderr)

    def invoke(self, event: Mapping[str, Any], _context: object = None) -> Any:
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(event) + "\n")
        process.stdin.flush()
        for line in process.stdout:
            if line.startswith(ANSWER_PREFIX):
                return json.loads(line[len(ANSWER_PREFIX) :])
            self.lines.append(line.rstrip("\n"))
        self.close()
        raise AssertionError("the function process died:\n" + "\n".join(self.all_lines()[-30:]))

    def close(self) -> None:
        process = self._process
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        assert process.stdout is not None
        self.lines.extend(line.rstrip("\n") for line in process.stdout)
        process.wait(timeout=30)
        self._stderr_reader.join(timeout=10)

    def all_lines(self) -> list[str]:
        return [*self.lines, *self._stderr_lines]

    @property
    def root_handler_lines(self) -> list[str]:
        return list(self._stderr_lines)


def function_env(resources: LocalResources, **extra: str) -> dict[str, str]:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "WHATSAPP_", "GRAPH_API", "LOCAL_"))
        and key not in {ENV_LOG_LEVEL, "IDEMPOTENCY_TABLE", "QUEUE_URL", "REPLY_RULES_PATH"}
    }
    return {
        **inherited,
        **LOCAL_AWS_ENV,
        "AWS_ENDPOINT_URL": resources.endpoint,
        ENV_SECRET_ID: resources.secret_id,
        ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        # Every debug switch a user can turn on, as the logLevel context key and Lambda's
        # advanced logging controls set them.
        ENV_LOG_LEVEL: "DEBUG",
        "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "POWERTOOLS_DEBUG": "true",
        "POWERTOOLS_LOGGER_LOG_EVENT": "true",
        **extra,
    }


@pytest.fixture
def resources(moto_endpoint: str) -> LocalResources:
    return create_resources(
        moto_endpoint,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        access_token=ACCESS_TOKEN,
        name_suffix="-" + uuid.uuid4().hex[:8],
    )


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi(expected_token=ACCESS_TOKEN) as fake:
        yield fake


def webhook(body: bytes, *, signature: str | None = None) -> dict[str, Any]:
    return build_proxy_event(
        method="POST",
        raw_path="/webhook",
        headers=[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", signature or sign(body, APP_SECRET)),
        ],
        body=body,
    )


def handshake(token: str) -> dict[str, Any]:
    return build_proxy_event(
        method="GET",
        raw_path=f"/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=8841",
        headers=[],
        body=b"",
    )


def deliveries() -> list[bytes]:
    contacts_message = {
        "id": new_wamid("card"),
        "type": "contacts",
        "contacts": [
            {
                "name": {"formatted_name": CARD_NAME, "first_name": "Ana"},
                "phones": [{"phone": CARD_PHONE, "type": "CELL", "wa_id": "16505550199"}],
            }
        ],
    }
    statuses = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": SAMPLE_PHONE_NUMBER_ID,
                            },
                            "statuses": [
                                {
                                    "id": new_wamid("out"),
                                    "status": "delivered",
                                    "timestamp": "1764057600",
                                    "recipient_id": SHEENA_PHONE,
                                },
                                {
                                    "id": new_wamid("out"),
                                    "status": "failed",
                                    "timestamp": "1764057601",
                                    "recipient_id": FAILED_RECIPIENT,
                                    "errors": [
                                        {
                                            "code": 131026,
                                            "title": "Message undeliverable",
                                            "error_data": {"details": "Message undeliverable."},
                                        }
                                    ],
                                },
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return [
        encode(
            message_delivery(
                {"id": new_wamid("t1"), "type": "text", "text": {"body": SHEENA_TEXT}},
                sender=SHEENA_PHONE,
                name=SHEENA,
            )
        ),
        encode(
            message_delivery(
                {"id": new_wamid("t2"), "type": "text", "text": {"body": JONAS_TEXT}},
                sender=JONAS_PHONE,
                name=JONAS,
            )
        ),
        encode(message_delivery(contacts_message, sender=PRIYA_PHONE, name=PRIYA)),
        encode(statuses),
    ]


def test_no_secret_or_personal_data_reaches_any_log_line_at_debug(
    resources: LocalResources, graph: FakeGraphApi
) -> None:
    ingest = LambdaProcess(
        INGEST_HANDLER,
        function_env(
            resources,
            **{ENV_QUEUE_URL: resources.queue_url, ENV_SERVICE_NAME: INGEST_SERVICE},
        ),
    )
    consumer = LambdaProcess(
        CONSUMER_HANDLER,
        function_env(
            resources,
            **{
                ENV_SERVICE_NAME: CONSUMER_SERVICE,
                ENV_IDEMPOTENCY_TABLE: resources.table_name,
                ENV_DEAD_LETTER_QUEUE_URL: resources.dlq_url,
                ENV_GRAPH_API_URL: graph.url,
                ENV_GRAPH_API_VERSION: "v25.0",
            },
        ),
    )
    try:
        # Given webhooks that carry names, phone numbers and text, a forged one and statuses
        assert ingest.invoke(handshake(VERIFY_TOKEN))["statusCode"] == 200
        assert ingest.invoke(handshake("not-the-verify-token"))["statusCode"] == 403
        *messages, status_body = deliveries()
        for body in messages:
            answer = ingest.invoke(webhook(body))
            assert (answer["statusCode"], json.loads(answer["body"])) == (200, {"queued": 1})
        forged = ingest.invoke(webhook(messages[0], signature="sha256=" + "0" * 64))
        assert forged["statusCode"] == 401
        assert ingest.invoke(webhook(status_body))["statusCode"] == 200

        # When the consumer answers them, its first reply rate-limited once (a retry)
        graph.enqueue(meta_error(130429), kind="send")
        events: list[dict[str, Any]] = []

        def invoke_consumer(event: dict[str, Any], context: object) -> Any:
            events.append(event)
            return consumer.invoke(event, context)

        sqs = aws_client("sqs", resources.endpoint)
        source = SqsEventSource(
            sqs, queue_url=resources.queue_url, handler=invoke_consumer, region=LOCAL_REGION
        )
        first = source.poll_once()
        assert first is not None
        assert len(first.records) == 3
        [retried] = first.failed
        [record] = [r for r in events[-1]["Records"] if r["messageId"] == retried.message_id]
        sqs.change_message_visibility(  # no waiting out the backoff: redeliver it now
            QueueUrl=resources.queue_url,
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=0,
        )
        second = source.poll_once()
        assert second is not None
        assert [r.succeeded for r in second.records] == [True]
    finally:
        ingest.close()
        consumer.close()

    # Then the scenario happened: replies went out (one after a 130429) with the access token
    answers = [r.answer for r in graph.sent_messages()]
    assert answers.count("meta_error") == 1
    assert answers.count("ok") >= 2
    # ...the functions really logged at DEBUG through the root logger, and their own lines
    lines = ingest.all_lines() + consumer.all_lines()
    assert any('"level": "DEBUG"' in line for line in ingest.root_handler_lines)
    assert any('"level": "DEBUG"' in line for line in consumer.root_handler_lines)
    assert any("delivery queued" in line for line in ingest.lines)
    assert "retry" in {_json_field(line, "result") for line in consumer.lines}
    # ...and not one line holds a secret, a phone number, a name or a message text
    found = {line[:300]: leaks(line) for line in lines if leaks(line)}
    assert not found, f"{len(found)} log line(s) leak:\n" + "\n".join(
        f"{problems}: {line}" for line, problems in list(found.items())[:15]
    )


def _json_field(line: str, name: str) -> object:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return document.get(name) if isinstance(document, dict) else None
