"""Lambda's SQS event source, on loopback: receive up to 10 records, invoke the consumer handler
with the Lambda SQS event, delete what succeeded and leave what failed.

Semantics kept from Lambda's event source mapping with `ReportBatchItemFailures`:
- records listed in `batchItemFailures` stay on the queue and come back when their visibility
  timeout ends (the queue's default, or whatever the consumer set with ChangeMessageVisibility);
  every other record of the batch is deleted;
- a handler that raises, or answers something other than a valid `batchItemFailures` list
  (e.g. an unknown or empty `itemIdentifier`), fails the whole batch;
- receive counts rise with each attempt and moto's redrive policy moves a record to the DLQ after
  `maxReceiveCount` receives, as SQS does;
- FIFO group locking is moto's: while a record of a message group is in flight, no later record
  of that group is handed out.

`python -m local_pipeline.poller` is the consumer's "execution environment" that `make run`
starts as a child process with the consumer's environment. It polls the inbound FIFO queue and,
when `STATUS_QUEUE_URL` is set, the status queue (two event sources of one function, one
invocation at a time, as in one Lambda execution environment). It reads wake-up lines on stdin
(EOF: stop) and writes one JSON event per line on stdout for the console; the handler's own logs
go to the file named by `LOCAL_LOG_FILE`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from functions.common.lambda_context import StandInContext
from functions.common.masking import mask_phone
from infra.constants import (
    CONSUMER_BATCH_SIZE,
    CONSUMER_HANDLER,
    CONSUMER_MEMORY_MB,
    CONSUMER_TIMEOUT_SECONDS,
    STATUS_BATCH_SIZE,
)
from local_pipeline.config import local_function_arn

Handler = Callable[[dict[str, Any], Any], Any]
ENV_LOG_FILE = "LOCAL_LOG_FILE"
IDLE_WAIT_SECONDS = 0.25  # between empty receives, unless woken by a newly queued message
CONSUMER_FUNCTION_NAME = "whatsapp-relay-consumer-local"


def load_handler(dotted: str) -> Handler:
    """`package.module.function` -> the function (e.g. `infra.constants.CONSUMER_HANDLER`)."""
    import importlib

    module_name, _, attribute = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


class InvalidBatchResponse(ValueError):
    """The handler's answer is not a valid partial-batch response: the whole batch failed."""


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    message_id: str
    receive_count: int
    succeeded: bool
    wamid: str | None = None
    sender: str | None = None  # masked
    message_type: str | None = None
    visibility_timeout: int | None = None  # what the consumer set, if it changed it
    status: str | None = None  # a status record: which status (wamid is then our reply's)


@dataclass(frozen=True, slots=True)
class BatchResult:
    records: list[RecordOutcome]
    duration_ms: float
    error: str | None = None  # the handler raised / answered garbage: all records failed
    max_receive_count: int | None = None

    @property
    def failed(self) -> list[RecordOutcome]:
        return [record for record in self.records if not record.succeeded]

    def to_json(self) -> dict[str, Any]:
        return {"event": "batch", **asdict(self)}


@dataclass
class _Batch:
    messages: list[dict[str, Any]]
    visibility: dict[str, int] = field(default_factory=dict)  # receipt handle -> seconds


def sqs_event(messages: list[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands to the function for these received messages."""
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes") or {})
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message.get("Body", ""),
                "attributes": attributes,
                "messageAttributes": {
                    name: _lambda_attribute(value)
                    for name, value in (message.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                **(
                    {"md5OfMessageAttributes": message["MD5OfMessageAttributes"]}
                    if message.get("MD5OfMessageAttributes")
                    else {}
                ),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [
            base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues") or []
        ],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return converted


def failed_ids(response: object, batch_ids: set[str]) -> set[str]:
    """The message ids a partial-batch response reports as failed (Lambda's validation)."""
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        raise InvalidBatchResponse("the response is not an object")
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures is not a list")
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            raise InvalidBatchResponse(f"invalid itemIdentifier {identifier!r}")
        failed.add(identifier)
    return failed


class SqsEventSource:
    """Polls one queue and invokes `handler` like Lambda's event source mapping does."""

    def __init__(
        self,
        sqs: Any,
        *,
        queue_url: str,
        handler: Handler,
        region: str,
        queue_arn: str | None = None,
        batch_size: int = CONSUMER_BATCH_SIZE,
        timeout_seconds: float = CONSUMER_TIMEOUT_SECONDS,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._region = region
        self._batch_size = batch_size
        self._timeout_seconds = timeout_seconds
        self._on_batch = on_batch
        self._current: _Batch | None = None
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"]
        )["Attributes"]
        self.queue_arn = queue_arn or attributes["QueueArn"]
        redrive = json.loads(attributes.get("RedrivePolicy") or "{}")
        self.max_receive_count: int | None = (
            int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None
        )

    def watch_visibility(self, client: Any) -> None:
        """Note the visibility timeouts the handler sets through `client` (for the console)."""
        events = client.meta.events
        events.register("provide-client-params.sqs.ChangeMessageVisibility", self._note_visibility)
        events.register(
            "provide-client-params.sqs.ChangeMessageVisibilityBatch", self._note_visibility
        )

    def _note_visibility(self, params: Mapping[str, Any], **_: Any) -> None:
        batch = self._current
        if batch is None:
            return
        for entry in params.get("Entries") or [params]:
            handle, seconds = entry.get("ReceiptHandle"), entry.get("VisibilityTimeout")
            if isinstance(handle, str) and isinstance(seconds, int):
                batch.visibility[handle] = seconds

    def poll_once(self) -> BatchResult | None:
        """One receive + invoke + delete cycle; None when the queue had nothing visible."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return None
        batch = _Batch(messages=messages)
        self._current = batch
        batch_ids = {message["MessageId"] for message in messages}
        context = StandInContext(
            function_name=CONSUMER_FUNCTION_NAME,
            invoked_function_arn=local_function_arn(CONSUMER_FUNCTION_NAME),
            timeout_seconds=self._timeout_seconds,
            memory_limit_in_mb=CONSUMER_MEMORY_MB,
        )
        started = time.perf_counter()
        error: str | None = None
        try:
            event = sqs_event(messages, queue_arn=self.queue_arn, region=self._region)
            failed = failed_ids(self._handler(event, context), batch_ids)
        except Exception as failure:  # noqa: BLE001 - Lambda fails the whole batch on any error
            error = f"{type(failure).__name__}: {failure}"
            failed = batch_ids
        finally:
            self._current = None
        duration_ms = (time.perf_counter() - started) * 1000
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        self._delete(succeeded)
        result = BatchResult(
            records=[_outcome(m, m["MessageId"] not in failed, batch.visibility) for m in messages],
            duration_ms=round(duration_ms, 1),
            error=error,
            max_receive_count=self.max_receive_count,
        )
        if self._on_batch is not None:
            self._on_batch(result)
        return result

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )

    def run(
        self,
        stop: threading.Event,
        wake: threading.Event | None = None,
        *,
        idle_seconds: float = IDLE_WAIT_SECONDS,
    ) -> None:
        """Poll until `stop` is set; between empty receives wait for `wake` or `idle_seconds`."""
        wake = wake or threading.Event()
        while not stop.is_set():
            if self.poll_once() is None:
                wake.wait(idle_seconds)
                wake.clear()


def _outcome(
    message: Mapping[str, Any], succeeded: bool, visibility: Mapping[str, int]
) -> RecordOutcome:
    attributes = message.get("Attributes") or {}
    wamid = sender = message_type = status = None
    try:
        body = json.loads(message.get("Body") or "")
    except ValueError:
        body = None
    if isinstance(body, Mapping) and body.get("kind") == "status":
        raw_status = body.get("status")
        if isinstance(raw_status, Mapping):
            wamid = _str(raw_status.get("id"))
            status = _str(raw_status.get("status"))
    elif isinstance(body, Mapping):
        wamid = _str(body.get("wamid"))
        contact = body.get("contact")
        raw = body.get("message")
        if isinstance(contact, Mapping):
            sender = mask_phone(_str(contact.get("waId")))
        if isinstance(raw, Mapping):
            message_type = _str(raw.get("type"))
            if sender is None:
                sender = mask_phone(_str(raw.get("from")))
    return RecordOutcome(
        message_id=message["MessageId"],
        receive_count=int(attributes.get("ApproximateReceiveCount") or 0),
        succeeded=succeeded,
        wamid=wamid,
        sender=sender,
        message_type=message_type,
        visibility_timeout=visibility.get(message["ReceiptHandle"]),
        status=status,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- the child process ----------------------------------------------------------------------


def warm_clients(*services: str) -> None:
    """Build the handler's cached boto3 clients now (no AWS call: loading service models is
    the slow part), as code in a Lambda's init phase would; the first webhook then pays only
    for its own work."""
    from functions.adapters import aws

    # Under each function's call limits (the ingest's differ): a second client of a service
    # costs milliseconds once the first loaded its model.
    for service in services:
        for limits in (aws.CONSUMER_LIMITS, aws.INGEST_LIMITS):
            aws.client(service, limits)


class _EventWriter:
    """One JSON object per line to the parent; safe from several threads."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, document: Mapping[str, Any]) -> None:
        line = json.dumps(document, default=str)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                return  # the parent is gone; stdin EOF will stop us


_STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_HIDDEN_KEY_PARTS = ("text", "body", "token", "secret", "authorization", "caption")


class _ConsumerLogToConsole(logging.Handler):
    """Forwards the consumer's per-record outcome lines (records carrying a `result` field) and
    its warnings and errors to the console: message and scalar fields, nothing else."""

    def __init__(self, events: _EventWriter) -> None:
        super().__init__(level=logging.INFO)
        self._events = events

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and "result" not in vars(record):
            return
        fields = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_RECORD_KEYS
            and not key.startswith("_")
            and not any(part in key.lower() for part in _HIDDEN_KEY_PARTS)
            and isinstance(value, str | int | float | bool)
        }
        message = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        self._events.write(
            {"event": "log", "level": record.levelname, "message": message, "fields": fields}
        )


def main() -> None:
    # Our events go to the parent through the original stdout; everything else that writes to
    # stdout (Powertools' JSON logs and EMF metrics) goes to the log file.
    events = _EventWriter(os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8"))
    log_path = os.environ.get(ENV_LOG_FILE)
    if log_path:
        log_file = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        os.dup2(log_file.fileno(), 1)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.addHandler(logging.StreamHandler(sys.stdout))
    warnings_logger.propagate = False

    from functions.adapters import aws
    from functions.common.names import ENV_QUEUE_URL, ENV_STATUS_QUEUE_URL
    from functions.common.observability import logger

    handler = _one_at_a_time(load_handler(CONSUMER_HANDLER))
    logger.addHandler(_ConsumerLogToConsole(events))
    stop = threading.Event()
    wakes = [threading.Event(), threading.Event()]  # one per event source

    def read_parent() -> None:
        for _line in sys.stdin:
            for wake in wakes:
                wake.set()
        stop.set()  # EOF: the parent went away or asked us to stop
        for wake in wakes:
            wake.set()

    threading.Thread(target=read_parent, name="parent-pipe", daemon=True).start()
    sqs = aws.client("sqs")
    warm_clients("secretsmanager", "dynamodb")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    source = SqsEventSource(
        sqs,
        queue_url=os.environ[ENV_QUEUE_URL],
        handler=handler,
        region=region,
        on_batch=lambda result: events.write(result.to_json()),
    )
    source.watch_visibility(sqs)
    status_url = os.environ.get(ENV_STATUS_QUEUE_URL)
    if status_url:
        statuses = SqsEventSource(
            sqs,
            queue_url=status_url,
            handler=handler,
            region=region,
            batch_size=STATUS_BATCH_SIZE,
            on_batch=lambda result: events.write(result.to_json()),
        )
        statuses.watch_visibility(sqs)
        threading.Thread(
            target=statuses.run, args=(stop, wakes[1]), name="status-source", daemon=True
        ).start()
    events.write({"event": "ready", "maxReceiveCount": source.max_receive_count})
    try:
        source.run(stop, wakes[0])
    except KeyboardInterrupt:
        return


def _one_at_a_time(handler: Handler) -> Handler:
    """One invocation at a time, as in one Lambda execution environment (Powertools' metrics
    and logger state are per invocation)."""
    lock = threading.Lock()

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with lock:
            return handler(event, context)

    return invoke


if __name__ == "__main__":
    main()
