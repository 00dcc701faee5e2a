"""The fault suite's run: the local pipeline's pieces, driven as one discrete-event simulation.

    moto's server        tests.faults.emulator_process: local_pipeline.emulator on a virtual
                         clock (own process), the stack's queue, DLQ, table and secret
    ingest               functions.ingest.app.handler, called here with the pipeline's
                         environment, on API Gateway events the pipeline's gateway builds; its
                         SQS client refuses entries, calls and answers now and then
    consumer             functions.consumer.app.handler in a local_pipeline execution
                         environment (a process), fed by local_pipeline.poller's event source;
                         it SIGKILLs itself where the plan says (tests.faults.consumer_process)
    fake Graph API       local_pipeline.fake_graph, its `rule` injecting Meta's faults

Time is virtual. The loop posts the webhooks that are due, runs the consumer on whatever is
visible, and when nothing is, moves the clock (moto's SQS, the consumer's and the ingest's) to
the next moment something happens: a POST falls due, or a backed-off or abandoned record
becomes visible again. Hours of backoff and visibility timeouts pass in seconds; leases,
`SentTimestamp`, SQS's deduplication window and the ledger's attempts all read the same clock.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final

from functions.common.lambda_context import StandInContext
from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_GRAPH_API_VERSION,
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
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from functions.domain.ingest.signature import sign
from infra.constants import (
    CONSUMER_BATCH_SIZE,
    CONSUMER_MEMORY_MB,
    INBOUND_QUEUE_NAME,
    INGEST_MEMORY_MB,
    INGEST_TIMEOUT_SECONDS,
)
from local_pipeline.config import LOCAL_AWS_ENV, LOCAL_REGION
from local_pipeline.emulator import Emulator, LocalResources, aws_client, create_resources
from local_pipeline.environments import ExecutionEnvironments, FunctionSpec, InvocationFailed
from local_pipeline.fake_graph import (
    Answer,
    FakeGraphApi,
    RecordedRequest,
    hang,
    http_error,
    meta_error,
    raw_answer,
    reset_connection,
)
from local_pipeline.gateway import build_proxy_event, proxy_response_to_http
from local_pipeline.poller import SqsEventSource
from tests.faults import consumer_process
from tests.faults.emulator_process import CONTROL_PATH
from tests.faults.plan import Kill, Post, Traffic, fate, kills, unit

APP_SECRET: Final = "faults-app-secret"
VERIFY_TOKEN: Final = "faults-verify-token"
ACCESS_TOKEN: Final = "faults-access-token"
ROTATED_ACCESS_TOKEN: Final = "faults-access-token-rotated"
# Past every deadline the consumer gives a Graph call: Meta's edge gives up with a 504 that
# never arrives in time (the request was not processed).
_GATEWAY_TIMEOUT = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n"
# Wall-clock guard for the whole run (it takes a fraction of this).
MAX_RUN_SECONDS: Final = 600.0
HANG_MIN_RECORDS: Final = 5
KILL_ARMED_INVOCATIONS: Final = 8  # a kill waits this long for its point, then yields its turn


@dataclass(frozen=True, slots=True)
class Settings:
    seed: int
    conversations: int
    messages: int
    status_posts: int
    ticks: int
    tick_seconds: float
    consumer_timeout_seconds: float  # the consumer's Lambda timeout in the suite
    kill_weights: Mapping[str, int]  # kills per point (default 1)
    kill_timers: int  # kills at a random moment
    invocations_between_kills: int
    send_fault_probability: float  # per send attempt of a "normal" message
    max_faulty_sends: int  # per message, so random faults alone rarely exhaust its attempts
    # From each of these invocations on, the first one with a batch of at least
    # HANG_MIN_RECORDS records meets a Graph API that answers nothing before any deadline.
    hang_from_invocations: tuple[int, ...]
    token_expires_at_invocation: int  # Meta starts answering 190 to the old token
    token_rotated_at_invocation: int  # the new token is put in the secret


@dataclass
class Tally:
    posts: Counter[str] = field(default_factory=Counter)  # by kind (plus meta_retry)
    answers: Counter[int] = field(default_factory=Counter)  # ingest HTTP statuses
    ingest_faults: Counter[str] = field(default_factory=Counter)
    sqs_entries_accepted: int = 0  # entries SQS said it took (duplicates included)
    graph_faults: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    kills: Counter[str] = field(default_factory=Counter)  # by point
    timeouts: int = 0  # invocations the environment ended, as Lambda does at its timeout
    hung_invocations: int = 0
    receives: int = 0
    redeliveries: int = 0  # receives of a record received before
    redelivered_after_kill: int = 0
    message_ids: set[str] = field(default_factory=set)
    virtual_seconds: float = 0.0
    unexpected: list[str] = field(default_factory=list)  # failures no fault explains


class VirtualClock:
    """The suite's clock: the wall clock plus an offset that only grows. The emulator's SQS
    reads it through its control path, the consumer through its event, the ingest here."""

    def __init__(self, endpoint: str) -> None:
        self._url = endpoint + CONTROL_PATH
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance_to(self, moment: float) -> None:
        self.offset = max(self.offset, moment - time.time())
        self._call("POST", json.dumps({"offset": self.offset}).encode())

    def queue(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = self._call("GET", None, f"?queue={name}")["queues"][name]
        return state

    def _call(self, method: str, body: bytes | None, query: str = "") -> Any:
        request = urllib.request.Request(self._url + query, data=body, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def datetime_class(self) -> type[datetime]:
        clock = self

        class VirtualDatetime(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> VirtualDatetime:
                return cls.fromtimestamp(clock.now(), tz)

        return VirtualDatetime


class GraphFaults:
    """The fake Graph API's `rule`: Meta's answers for each read receipt and send, by the plan."""

    def __init__(self, settings: Settings, tally: Tally) -> None:
        self._settings = settings
        self._tally = tally
        self._calls: Counter[tuple[str, str]] = Counter()
        self.hanging = False

    def __call__(self, request: RecordedRequest) -> Answer | None:
        seed = self._settings.seed
        inbound = inbound_wamid(request) or ""
        self._calls[(request.kind, inbound)] += 1
        n = self._calls[(request.kind, inbound)]
        answer = self._answer(seed, request.kind, inbound, n)
        if answer is not None:
            self._tally.graph_faults[f"{request.kind}: {_label(answer)}"] += 1
        return answer

    def _answer(self, seed: int, kind: str, inbound: str, n: int) -> Answer | None:
        settings = self._settings
        if self.hanging:
            return raw_answer(_GATEWAY_TIMEOUT, seconds_per_byte=settings.consumer_timeout_seconds)
        if kind == "read":
            read_fault: Answer | None = _pick(unit(seed, "read", inbound, n), _READ_FAULTS)
            return read_fault
        destiny = fate(seed, inbound)
        if destiny != "normal":
            return http_error(503) if destiny == "doomed" else meta_error(131026)
        if n > settings.max_faulty_sends:
            return None
        if unit(seed, "send", inbound, n) >= settings.send_fault_probability:
            return None
        build: Callable[[float], Answer] = _pick(unit(seed, "send-fault", inbound, n), _SEND_FAULTS)
        # The variant (which 5xx, which Retry-After) is drawn the same way.
        return build(unit(seed, "variant", inbound, n))


# Cumulative shares of the faults a read receipt meets (else Meta's ordinary answer)...
_READ_FAULTS: Final[tuple[tuple[float, Answer], ...]] = (
    (0.03, http_error(502)),
    (0.05, reset_connection()),
    (0.06, meta_error(130429, http_status=429)),
)
# ...and, given that a send meets one, which.
_SEND_FAULTS: Final[tuple[tuple[float, Callable[[float], Answer]], ...]] = (
    (
        0.35,
        lambda v: meta_error(130429, http_status=429, retry_after=(None, 1, 30)[int(3 * v)]),
    ),
    (0.55, lambda v: meta_error(131056)),
    (0.80, lambda v: http_error((500, 502, 503, 504)[int(4 * v)])),
    (0.95, lambda v: reset_connection()),
    (1.00, lambda v: hang(0.05)),  # slow, well within the deadline: a sent reply
)


def _pick(draw: float, shares: tuple[tuple[float, Any], ...]) -> Any:
    return next((choice for share, choice in shares if draw < share), None)


def _label(answer: Answer) -> str:
    if answer.type == "meta_error":
        return str(answer.code)
    if answer.type == "http_error":
        return "5xx HTML page"
    if answer.type == "raw":
        return "no answer before the deadline"
    return {"reset_connection": "connection reset", "hang": "slow answer"}.get(
        answer.type, answer.type
    )


def inbound_wamid(request: RecordedRequest) -> str | None:
    """The inbound message a read receipt or a reply is about."""
    document = request.json if isinstance(request.json, dict) else {}
    if request.kind == "read":
        value = document.get("message_id")
        return value if isinstance(value, str) else None
    context = document.get("context")
    if isinstance(context, dict) and isinstance(context.get("message_id"), str):
        return str(context["message_id"])
    reaction = document.get("reaction")
    if isinstance(reaction, dict) and isinstance(reaction.get("message_id"), str):
        return str(reaction["message_id"])
    return None


class IngestQueueFaults:
    """The ingest's SQS client's `send_message_batch`, refusing now and then as SQS can: some
    entries of a batch (`Failed`), the whole call, or the answer to a call that SQS did take."""

    def __init__(self, send_message_batch: Callable[..., Any], seed: int, tally: Tally) -> None:
        self._send = send_message_batch
        self._seed = seed
        self._tally = tally
        self._attempts: Counter[str] = Counter()

    def __call__(self, **request: Any) -> Any:
        from botocore.exceptions import ClientError, ReadTimeoutError

        entries = request["Entries"]
        for entry in entries:
            self._attempts[entry["MessageDeduplicationId"]] += 1
        first = entries[0]["MessageDeduplicationId"]
        draw = unit(self._seed, "sqs-call", first, self._attempts[first])
        if draw < 0.01:
            self._tally.ingest_faults["SendMessageBatch refused (503)"] += 1
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "injected"}},
                "SendMessageBatch",
            )
        refused = [
            entry
            for entry in entries
            if unit(self._seed, "sqs-entry", entry["MessageDeduplicationId"])
            < 0.2  # these messages meet a flaky queue...
            and unit(
                self._seed,
                "sqs-entry-attempt",
                entry["MessageDeduplicationId"],
                self._attempts[entry["MessageDeduplicationId"]],
            )
            < 0.5  # ...on half of their sends
        ]
        taken = [entry for entry in entries if entry not in refused]
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        if taken:
            answer = self._send(**{**request, "Entries": taken})
            self._tally.sqs_entries_accepted += len(answer.get("Successful", []))
        if draw < 0.02:
            self._tally.ingest_faults["SendMessageBatch answer lost after SQS took it"] += 1
            raise ReadTimeoutError(endpoint_url=request["QueueUrl"])
        self._tally.ingest_faults["entries refused in a batch"] += len(refused)
        return {
            **answer,
            "Failed": [
                *answer.get("Failed", []),
                *({"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in refused),
            ],
        }


class FaultRun:
    """One run of the suite; `start()`, `run()`, then read the results, `stop()`."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.tally = Tally()
        self.emulator = Emulator(module="tests.faults.emulator_process")
        self.graph = FakeGraphApi(expected_token=ACCESS_TOKEN)
        self.graph_faults = GraphFaults(settings, self.tally)
        self.resources: LocalResources | None = None
        self.clock: VirtualClock | None = None
        self.consumer: ExecutionEnvironments | None = None
        self.consumer_log = workdir / "consumer.log"
        self.traffic = Traffic()
        self._sqs: Any = None
        self._source: SqsEventSource | None = None
        self._killed_message_ids: set[str] = set()
        self._seen: set[str] = set()
        self._hangs_due = sorted(settings.hang_from_invocations)
        self._kills = kills(
            settings.seed,
            tuple(consumer_process.KILL_POINTS),
            weights=settings.kill_weights,
            timers=settings.kill_timers,
        )
        self._next_kill_at = settings.invocations_between_kills

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> dict[str, str]:
        """Everything up; returns the environment the ingest handler runs with in this process."""
        endpoint = self.emulator.start()
        self.clock = VirtualClock(endpoint)
        self.resources = resources = create_resources(
            endpoint, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN, access_token=ACCESS_TOKEN
        )
        self.graph.start()
        self.graph.rule = self.graph_faults
        shared = {
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            ENV_QUEUE_URL: resources.queue_url,
            ENV_SECRET_ID: resources.secret_id,
            ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        }
        self.consumer = ExecutionEnvironments(
            FunctionSpec(
                handler=f"{consumer_process.__name__}.handler",
                function_name="whatsapp-relay-consumer-faults",
                timeout_seconds=self.settings.consumer_timeout_seconds,
                memory_mb=CONSUMER_MEMORY_MB,
                warm_services=("sqs", "dynamodb", "secretsmanager"),
                environment={
                    **shared,
                    ENV_SERVICE_NAME: CONSUMER_SERVICE,
                    ENV_LOG_LEVEL: "INFO",
                    ENV_IDEMPOTENCY_TABLE: resources.table_name,
                    ENV_DEAD_LETTER_QUEUE_URL: resources.dlq_url,
                    ENV_GRAPH_API_URL: self.graph.url,
                    ENV_GRAPH_API_VERSION: DEFAULT_GRAPH_API_VERSION,
                },
            ),
            log_path=self.consumer_log,
            environments=1,
        )
        self.consumer.start()
        self._sqs = aws_client("sqs", endpoint)
        self._source = SqsEventSource(
            self._sqs,
            queue_url=resources.queue_url,
            handler=self._invoke_consumer,
            region=LOCAL_REGION,
            batch_size=CONSUMER_BATCH_SIZE,
            timeout_seconds=self.settings.consumer_timeout_seconds,
            on_batch=self._on_batch,
        )
        return {**shared, ENV_SERVICE_NAME: INGEST_SERVICE, ENV_LOG_LEVEL: "WARNING"}

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.graph.stop()
        self.emulator.stop()

    # --- the simulation --------------------------------------------------------------------------

    def run(self, traffic: Traffic, ingest: Callable[[dict[str, Any], Any], Any]) -> None:
        clock, resources = self.clock, self.resources
        assert clock is not None
        assert resources is not None
        assert self._source is not None
        self.traffic = traffic
        start = clock.now()
        order = itertools.count()
        due: list[tuple[float, int, Post, int]] = [
            (start + post.at, next(order), post, 0) for post in traffic.posts
        ]
        heapq.heapify(due)
        rng = random.Random(self.settings.seed)
        began = time.monotonic()
        stalls = 0
        while True:
            if time.monotonic() - began > MAX_RUN_SECONDS:
                raise AssertionError(f"the run did not settle in {MAX_RUN_SECONDS:.0f} s")
            now = clock.now()
            while due and due[0][0] <= now:
                _, _, post, retry = heapq.heappop(due)
                self.tally.posts["meta_retry" if retry else post.kind] += 1
                status = self._post(post, ingest)
                if status != 200:
                    # Meta retries anything but a 200, sooner at first, for up to 7 days.
                    delay = rng.uniform(5, 60) * (retry + 1)
                    heapq.heappush(due, (clock.now() + delay, next(order), post, retry + 1))
            if self._source.poll_once() is not None:
                stalls = 0
                continue
            queue = clock.queue(INBOUND_QUEUE_NAME)
            moments = [moment for moment in (queue["next_visible"],) if moment is not None]
            if due:
                moments.append(due[0][0])
            if not moments:
                if queue["messages"] == 0:
                    break
                stalls += 1  # visible, but its conversation is still locked: look again
                if stalls > 50:
                    raise AssertionError(f"{queue['messages']} records stuck in the queue")
                moments.append(clock.now() + 1)
            clock.advance_to(max(min(moments), clock.now()) + 0.01)
        self.tally.virtual_seconds = clock.now() - start

    def _post(self, post: Post, ingest: Callable[[dict[str, Any], Any], Any]) -> int:
        event = build_proxy_event(
            method="POST",
            raw_path="/webhook",
            headers=[
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", sign(post.body, APP_SECRET)),
                ("User-Agent", "facebookexternalua"),
            ],
            body=post.body,
        )
        context = StandInContext(
            function_name="whatsapp-relay-ingest-faults",
            timeout_seconds=INGEST_TIMEOUT_SECONDS,
            memory_limit_in_mb=INGEST_MEMORY_MB,
        )
        answer = proxy_response_to_http(ingest(event, context))
        self.tally.answers[answer.status] += 1
        return answer.status

    def _invoke_consumer(self, event: dict[str, Any], _context: Any) -> Any:
        assert self.consumer is not None
        assert self.clock is not None
        settings = self.settings
        self.tally.invocations += 1
        invocation = self.tally.invocations
        if invocation == settings.token_expires_at_invocation:
            self.graph.expected_token = ROTATED_ACCESS_TOKEN  # Meta: the old token expired
        if invocation == settings.token_rotated_at_invocation:
            self._put_access_token(ROTATED_ACCESS_TOKEN)  # the operator rotates the secret
        kill = self._kills[0] if self._kills and invocation >= self._next_kill_at else None
        if kill is not None and invocation - self._next_kill_at >= KILL_ARMED_INVOCATIONS:
            # Its point has not come up for a while (dead letters are rare): later, then.
            self._kills.append(self._kills.pop(0))
            self._next_kill_at = invocation
            kill = self._kills[0]
        event[consumer_process.EVENT_KEY] = {
            "clockOffset": self.clock.offset,
            "seed": f"{settings.seed}:{invocation}",
            "kill": kill.to_json() if kill is not None else None,
        }
        due = self._hangs_due and invocation >= self._hangs_due[0]
        if due and len(event["Records"]) >= HANG_MIN_RECORDS:
            self._hangs_due.pop(0)
            self.graph_faults.hanging = True
            self.tally.hung_invocations += 1
        try:
            return self.consumer.invoke(event)
        except InvocationFailed as failure:
            self._note_failed_invocation(failure, kill, event)
            raise
        finally:
            self.graph_faults.hanging = False

    def _note_failed_invocation(
        self, failure: InvocationFailed, kill: Kill | None, event: Mapping[str, Any]
    ) -> None:
        # (Raising here would only fail the batch: the event source takes any exception so.)
        if type(failure) is not InvocationFailed:  # the handler raised: a bug, not a fault
            self.tally.unexpected.append(f"the consumer handler raised: {failure!r}")
        elif "timed out" in str(failure):
            self.tally.timeouts += 1
        elif kill is not None:
            self.tally.kills[kill.label] += 1
            self._kills.pop(0)
            self._next_kill_at = self.tally.invocations + self.settings.invocations_between_kills
        else:
            self.tally.unexpected.append(f"the consumer's process died unplanned: {failure}")
        self._killed_message_ids.update(record["messageId"] for record in event["Records"])

    def _on_batch(self, result: Any) -> None:
        for record in result.records:
            self.tally.receives += 1
            if record.message_id in self._seen:
                self.tally.redeliveries += 1
                if record.message_id in self._killed_message_ids:
                    self.tally.redelivered_after_kill += 1
                    self._killed_message_ids.discard(record.message_id)
            self._seen.add(record.message_id)
            self.tally.message_ids.add(record.message_id)

    def _put_access_token(self, token: str) -> None:
        assert self.resources is not None
        secrets = aws_client("secretsmanager", self.resources.endpoint)
        secrets.put_secret_value(
            SecretId=self.resources.secret_id,
            SecretString=json.dumps(
                {
                    SECRET_KEY_APP_SECRET: APP_SECRET,
                    SECRET_KEY_VERIFY_TOKEN: VERIFY_TOKEN,
                    SECRET_KEY_ACCESS_TOKEN: token,
                }
            ),
        )

    # --- what is left at the end -----------------------------------------------------------------

    def dead_letters(self) -> list[dict[str, Any]]:
        assert self.resources is not None
        letters: list[dict[str, Any]] = []
        while True:
            batch = self._sqs.receive_message(
                QueueUrl=self.resources.dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                return letters
            letters.extend(batch)
            self._sqs.delete_message_batch(
                QueueUrl=self.resources.dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )

    def ledger(self) -> dict[str, dict[str, Any]]:
        """Every message item, by wamid: its status, outcome and error code."""
        assert self.resources is not None
        dynamodb = aws_client("dynamodb", self.resources.endpoint)
        items: dict[str, dict[str, Any]] = {}
        for page in dynamodb.get_paginator("scan").paginate(TableName=self.resources.table_name):
            for item in page["Items"]:
                key = item["id"]["S"]
                if key.startswith("msg#"):
                    items[key.removeprefix("msg#")] = {
                        name: next(iter(value.values())) for name, value in item.items()
                    }
        return items

    def consumer_results(self) -> Counter[str]:
        """The consumer's own per-record lines: how many of each `result`."""
        results: Counter[str] = Counter()
        for line in self.consumer_log.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"result"' not in line:
                continue
            try:
                document = json.loads(line)
            except ValueError:
                continue  # a line a kill cut short
            if isinstance(document, dict) and isinstance(document.get("result"), str):
                results[document["result"]] += 1
        return results
