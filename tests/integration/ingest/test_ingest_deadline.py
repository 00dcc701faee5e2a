"""When SQS hangs, the ingest still answers within its own timeout: a 503 with a JSON body, and
nothing acknowledged (Meta redelivers). The real handler, its real SQS client settings and a
loopback server that accepts connections and never answers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from functions.adapters.aws import INGEST_LIMITS
from functions.adapters.sqs_publisher import MAX_ATTEMPTS
from functions.common.lambda_context import StandInContext
from infra.constants import INGEST_TIMEOUT_SECONDS
from tests.conftest import APP_SECRET, FifoQueues
from tests.events import builders as b
from tests.telemetry import emitted_metrics

pytestmark = pytest.mark.integration


@dataclass
class SilentServer:
    """Accepts every connection, reads what comes, never answers."""

    url: str
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
def silent_sqs(fifo_queues: FifoQueues, monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = SilentServer(url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    held: list[socket.socket] = []
    stop = threading.Event()

    def swallow(connection: socket.socket) -> None:
        data = b""
        while not stop.is_set():
            try:
                chunk = connection.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                server.requests.append(data)
                data = b""

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            threading.Thread(target=swallow, args=(connection,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    # Only SQS hangs: the secret still comes from moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", server.url)
    yield server
    stop.set()
    listener.close()
    for connection in held:
        connection.close()


def test_a_hanging_queue_gets_a_503_before_the_function_times_out(
    silent_sqs: SilentServer,
    whatsapp_secret: str,
    fifo_queues: FifoQueues,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from functions.ingest.app import handler

    context = StandInContext(timeout_seconds=INGEST_TIMEOUT_SECONDS)  # a real, running clock

    answer = handler(b.signed_post(b.fixture_bytes("text"), APP_SECRET), context)

    # Answered, as JSON, while the invocation still had time: Lambda did not cut it off
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {
        "error": "queue_unavailable",
        "message": "the delivery was not queued; retry later",
    }
    assert context.get_remaining_time_in_millis() > 0
    # It did try SQS, a bounded number of times, each call within the ingest's own limits
    assert 1 <= len(silent_sqs.requests) <= MAX_ATTEMPTS
    assert all(b"SendMessageBatch" in request for request in silent_sqs.requests)
    assert INGEST_LIMITS.longest_call_seconds * MAX_ATTEMPTS < INGEST_TIMEOUT_SECONDS
    # Nothing reached the real queue, and the failure is counted with what went wrong
    assert fifo_queues.drain() == []
    failures = [
        m for m in emitted_metrics(capsys.readouterr().out) if m["name"] == "QueueSendFailed"
    ]
    assert [m["dimensions"].get("ErrorCode") for m in failures] == ["ReadTimeoutError"]
