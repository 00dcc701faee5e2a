"""moto's server on loopback, in a process of its own, holding the queue, dead-letter queue,
table and secret the stack creates, named and sized by the same constants (`infra.constants`)
the CDK code uses."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import (
    DEAD_LETTER_QUEUE_NAME,
    DEFAULT_MAX_RECEIVE_COUNT,
    DLQ_RETENTION_DAYS,
    IDEMPOTENCY_PARTITION_KEY,
    IDEMPOTENCY_TABLE_NAME,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    INBOUND_QUEUE_NAME,
    INBOUND_RETENTION_DAYS,
    SECRET_NAME,
    STATUS_DEAD_LETTER_QUEUE_NAME,
    STATUS_QUEUE_NAME,
    STATUS_RETENTION_DAYS,
    VISIBILITY_TIMEOUT_SECONDS,
)
from local_pipeline.config import LOCAL_AWS_ENV, LOCAL_REGION

SECONDS_PER_DAY = 86_400
STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LocalResources:
    endpoint: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    table_name: str
    secret_id: str
    max_receive_count: int
    status_queue_url: str = ""
    status_dlq_url: str = ""
    # Where the table is: `endpoint` unless `make run` gave DynamoDB a moto of its own.
    dynamodb_endpoint: str = ""


def aws_client(service: str, endpoint: str, region: str = LOCAL_REGION) -> Any:
    """A boto3 client for moto's server with the local (fake) credentials."""
    import boto3

    make_client: Any = boto3.session.Session().client  # any service, so untyped
    return make_client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=LOCAL_AWS_ENV["AWS_SESSION_TOKEN"],
    )


def create_resources(
    endpoint: str,
    *,
    app_secret: str,
    verify_token: str,
    access_token: str,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    name_suffix: str = "",
    dynamodb_endpoint: str | None = None,
) -> LocalResources:
    """Create (or find, if they exist) the stack's queues, table and secret on `endpoint`, the
    table on `dynamodb_endpoint` if given.

    `name_suffix` lets tests create several independent sets on one server.
    """
    queues = create_queues(
        endpoint,
        max_receive_count=max_receive_count,
        visibility_timeout_seconds=visibility_timeout_seconds,
        name_suffix=name_suffix,
    )

    table_name = _suffixed(IDEMPOTENCY_TABLE_NAME, name_suffix)
    dynamodb_endpoint = dynamodb_endpoint or endpoint
    dynamodb = aws_client("dynamodb", dynamodb_endpoint)
    if table_name not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=table_name,
            AttributeDefinitions=[
                {"AttributeName": IDEMPOTENCY_PARTITION_KEY, "AttributeType": "S"}
            ],
            KeySchema=[{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
        )

    secret_name = _suffixed(SECRET_NAME, name_suffix)
    secret_string = json.dumps(
        {
            SECRET_KEY_APP_SECRET: app_secret,
            SECRET_KEY_VERIFY_TOKEN: verify_token,
            SECRET_KEY_ACCESS_TOKEN: access_token,
        }
    )
    secrets = aws_client("secretsmanager", endpoint)
    existing = secrets.list_secrets(Filters=[{"Key": "name", "Values": [secret_name]}])
    if any(entry["Name"] == secret_name for entry in existing["SecretList"]):
        secrets.put_secret_value(SecretId=secret_name, SecretString=secret_string)
    else:
        secrets.create_secret(Name=secret_name, SecretString=secret_string)

    return LocalResources(
        endpoint=endpoint,
        queue_url=queues.queue_url,
        queue_arn=queues.queue_arn,
        dlq_url=queues.dlq_url,
        table_name=table_name,
        secret_id=secret_name,
        max_receive_count=max_receive_count,
        status_queue_url=queues.status_queue_url,
        status_dlq_url=queues.status_dlq_url,
        dynamodb_endpoint=dynamodb_endpoint,
    )


@dataclass(frozen=True, slots=True)
class Queues:
    queue_url: str
    queue_arn: str
    dlq_url: str
    status_queue_url: str = ""
    status_dlq_url: str = ""


def create_queues(
    endpoint: str,
    *,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    name_suffix: str = "",
    sqs: Any = None,
) -> Queues:
    """The inbound FIFO queue and its FIFO dead-letter queue, with the stack's redrive policy;
    the standard status queue and its dead-letter queue."""
    sqs = sqs or aws_client("sqs", endpoint)
    dlq_name = _suffixed(DEAD_LETTER_QUEUE_NAME, name_suffix)
    queue_name = _suffixed(INBOUND_QUEUE_NAME, name_suffix)
    dlq_url = sqs.create_queue(
        QueueName=dlq_name,
        Attributes={
            "FifoQueue": "true",
            "MessageRetentionPeriod": str(DLQ_RETENTION_DAYS * SECONDS_PER_DAY),
        },
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "MessageRetentionPeriod": str(INBOUND_RETENTION_DAYS * SECONDS_PER_DAY),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    status_dlq_url = sqs.create_queue(
        QueueName=_suffixed(STATUS_DEAD_LETTER_QUEUE_NAME, name_suffix),
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_DAYS * SECONDS_PER_DAY)},
    )["QueueUrl"]
    status_dlq_arn = sqs.get_queue_attributes(QueueUrl=status_dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    status_queue_url = sqs.create_queue(
        QueueName=_suffixed(STATUS_QUEUE_NAME, name_suffix),
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "MessageRetentionPeriod": str(STATUS_RETENTION_DAYS * SECONDS_PER_DAY),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": status_dlq_arn, "maxReceiveCount": max_receive_count}
            ),
        },
    )["QueueUrl"]

    return Queues(
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        status_queue_url=status_queue_url,
        status_dlq_url=status_dlq_url,
    )


def _suffixed(name: str, suffix: str) -> str:
    if not suffix:
        return name
    if name.endswith(".fifo"):
        return f"{name.removesuffix('.fifo')}-{suffix}.fifo"
    return f"{name}-{suffix}"


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serve(
    port: int = 0,
    *,
    wrap: Callable[[WsgiApp], WsgiApp] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """The emulator process: moto's server on 127.0.0.1:`port`, a `{"port": N}` line on stdout
    once it listens, served until stdin reaches EOF (the parent closed it or died).

    `wrap` puts WSGI middleware in front of moto (the benchmarks delay DynamoDB with it);
    `clock` is the time SQS lives by (the fault suite moves it forward: visibility timeouts,
    the deduplication window and `SentTimestamp` all follow it)."""
    from moto import backends
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # moto lists its own package directory on every request to recognise a service name in the
    # Host header; the list never changes while it runs.
    if callable(getattr(backends, "list_of_moto_modules", None)):
        module_names = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = lambda: module_names
    _fast_sqs_clock(clock)
    _fast_sqs_retention_check(clock)
    _fast_dynamodb_transactions()
    serialize_dynamodb()

    class RequestHandler(MotoRequestHandler):
        # werkzeug writes the headers and the body in two sends: without TCP_NODELAY the body
        # can wait for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_request(self, *_: Any) -> None:
            return  # one line per request on stderr: nobody reads it, everybody pays for it

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app: WsgiApp = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", port, wrap(app) if wrap else app, threaded=True, request_handler=RequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    sys.stdout.write(json.dumps({"port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # until EOF
    server.shutdown()


def serialize_dynamodb() -> None:
    """One DynamoDB request at a time in this process. moto's DynamoDB backend is not safe for
    concurrent writes (a transaction deep-copies a table another request is changing:
    "dictionary changed size during iteration", answered as a 500), which the consumer's
    concurrent conversations hit. DynamoDB itself has no such limit; only the emulator needs it.
    Idempotent: a second call leaves the first lock in place."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def serialized(self: Any) -> Any:
        with lock:
            return call_action(self)

    serialized._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = serialized  # type: ignore[method-assign]


def _fast_sqs_clock(clock: Callable[[], float] = time.time) -> None:
    """moto's SQS asks the time for every message of a queue on each send and receive (to count
    visible ones), through a datetime computation ~20x slower than `time.time()`: a queue a few
    hundred messages deep then costs milliseconds per call, and a local pipeline under load slows
    down the more it falls behind. Same value, from `clock` (`time.time` but in the fault
    suite)."""
    from moto.sqs import models

    original_millis = getattr(models, "unix_time_millis", None)
    original_seconds = getattr(models, "unix_time", None)
    if original_millis is None or original_seconds is None:
        return  # another moto: nothing to speed up here

    def unix_time(dt: Any = None) -> float:
        return clock() if dt is None else float(original_seconds(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return clock() * 1000.0 if dt is None else float(original_millis(dt))

    setattr(models, "unix_time", unix_time)  # noqa: B010 - moto does not export these names
    setattr(models, "unix_time_millis", unix_time_millis)  # noqa: B010


def _fast_sqs_retention_check(clock: Callable[[], float] = time.time) -> None:
    """moto's ReceiveMessage checks each message it looks at against the queue's retention
    period by building every queue attribute (counting the queue's messages) three times: a
    receive cost O(depth²), 30-70 ms on a queue a few hundred deep. Same check, from the one
    attribute it needs."""
    from moto.sqs.models import SQSBackend

    if not callable(getattr(SQSBackend, "is_message_valid_based_on_retention_period", None)):
        return

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > clock())

    setattr(  # noqa: B010 - replacing a method of moto's class
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        is_message_valid_based_on_retention_period,
    )


def _fast_dynamodb_transactions() -> None:
    """moto's TransactWriteItems deep-copies every table it writes to before it starts (to roll
    back a cancelled transaction): ~45 µs per item already in the table, so once the ledger held
    2,000 items an answered message's transaction took 90 ms, under the one lock DynamoDB
    requests share here (`serialize_dynamodb`). Same all-or-nothing outcome from copies of just
    the items the transaction names, put back if moto cancels it. Idempotent."""
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "_items_only", False):
        return
    transact_write_items = backend.transact_write_items

    class TablesAreNotCopied:
        """moto's module-level `copy`, except that a whole table is "copied" as itself."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def saved_items(self: Any, transact_items: list[dict[str, Any]]) -> list[Any]:
        saved = []
        for item in transact_items:
            _, operation = next(iter(item.items()))
            table = self.tables.get(operation.get("TableName"))
            attributes = operation.get("Key") or operation.get("Item") or {}
            if table is None or table.hash_key_attr not in attributes:
                continue
            hash_key = DynamoType(attributes[table.hash_key_attr])
            range_key = (
                DynamoType(attributes[table.range_key_attr])
                if table.has_range_key and table.range_key_attr in attributes
                else None
            )
            if table.has_range_key and range_key is None:
                continue
            current = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, copy.deepcopy(current)))
        return saved

    def restore(saved: list[Any]) -> None:
        for table, hash_key, range_key, item in reversed(saved):
            home = table.items[hash_key] if range_key is not None else table.items
            key = range_key if range_key is not None else hash_key
            if item is None:
                home.pop(key, None)
            else:
                home[key] = item

    def items_only(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = saved_items(self, transact_items)
        try:
            transact_write_items(self, transact_items)
        except Exception:
            restore(saved)
            raise

    items_only._items_only = True  # type: ignore[attr-defined]
    setattr(models, "copy", TablesAreNotCopied)  # noqa: B010 - moto's module-level import
    backend.transact_write_items = items_only  # type: ignore[method-assign]


class Emulator:
    """moto's server in a process of its own on 127.0.0.1 (a free port): it neither competes
    with the handlers for this process's GIL nor dies with a thread. `start()` / `stop()`.

    `module` is the `python -m` entry that calls `serve()` (the benchmarks wrap moto)."""

    def __init__(
        self,
        module: str = "local_pipeline.emulator",
        args: Sequence[str] = (),
        *,
        stderr: IO[str] | None = None,
    ) -> None:
        self._command = [sys.executable, "-m", module, *args]
        self._stderr = stderr
        self._process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def start(self) -> str:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (two emulators start side by side)."""
        environment = {key: value for key, value in os.environ.items() if key != "MOTO_PORT"}
        self._process = subprocess.Popen(
            self._command,
            cwd=Path(__file__).resolve().parent.parent,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr if self._stderr is not None else subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the parent, which stops us in order
        )

    def wait_ready(self) -> str:
        """The endpoint, once the server listens."""
        process = self._process
        assert process is not None, "launch() first"
        assert process.stdout is not None
        line = process.stdout.readline()
        try:
            port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError(f"moto's server did not start (it said {line.strip()!r})") from None
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


if __name__ == "__main__":
    serve()
