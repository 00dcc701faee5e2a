"""`make run`: the whole pipeline on this machine, on loopback, with no AWS account.

    moto's server, own process (queues + DLQs + table + secret, named and sized as the stack
             creates them)
    gateway  127.0.0.1:$PORT/webhook -> functions.ingest.app.handler, in execution environments
             (processes: up to INGEST_ENVIRONMENTS invocations at once, one each)
    worker   child process: SQS event sources (inbound, statuses) -> functions.consumer.app.handler
    fake Graph API (or the real one: GRAPH_API_URL), which sends status webhooks back for the
             messages it accepted (FAKE_GRAPH_STATUSES)

The handlers are the very functions Lambda runs. Their JSON logs (and EMF metrics) go to files
under `.local/logs/`; the console shows one line per pipeline event. Ctrl-C stops everything.

It says Ready only once the consumer can load its reply rules (`local_pipeline/rules_watch.py`),
and while Ready, `.local/pipeline.json` tells `make demo` and `make inspect-dlq` where it is
(`local_pipeline/state.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO, Any

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_METRICS_NAMESPACE,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_EVENT_BUS_NAME,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_LOG_LEVEL,
    ENV_METRICS_NAMESPACE,
    ENV_QUEUE_URL,
    ENV_REPLY_HANDLER,
    ENV_REPLY_RULES_PATH,
    ENV_SECRET_ID,
    ENV_SERVICE_NAME,
    ENV_STATUS_QUEUE_URL,
    INGEST_SERVICE,
)
from infra.constants import INGEST_HANDLER, INGEST_MEMORY_MB, INGEST_TIMEOUT_SECONDS
from local_pipeline.config import (
    AWS_ENV_TO_DROP,
    DEFAULT_APP_SECRET,
    LOCAL_AWS_ENV,
    LOCAL_REGION,
    LocalConfig,
    LocalConfigError,
)
from local_pipeline.console import Console
from local_pipeline.emulator import Emulator, LocalResources, create_resources
from local_pipeline.environments import ExecutionEnvironments, FunctionSpec, InvocationFailed
from local_pipeline.gateway import Exchange, Gateway, PortInUse
from local_pipeline.poller import ENV_LOG_FILE
from local_pipeline.rules_watch import RulesWatch, describe, rules_path
from local_pipeline.samples import encode, message_delivery, signed_curl, text_message
from local_pipeline.state import PipelineState, remove_state, write_state

WORKER_READY_TIMEOUT_SECONDS = 60.0
WORKER_STOP_TIMEOUT_SECONDS = 10.0
INGEST_FUNCTION_NAME = "whatsapp-relay-ingest-local"
# Concurrent ingest invocations: Lambda would scale further, but on a laptop's few cores more
# processes only share the same CPU (and each costs its start-up).
INGEST_ENVIRONMENTS = 4


class StartupError(RuntimeError):
    """The pipeline could not start; the message says why (no traceback for the user)."""


def handler_environment(config: LocalConfig, resources: LocalResources) -> dict[str, str]:
    """What both functions see, as the stack configures them, pointed at moto."""
    return {
        **LOCAL_AWS_ENV,
        "AWS_ENDPOINT_URL": resources.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": resources.dynamodb_endpoint or resources.endpoint,
        ENV_QUEUE_URL: resources.queue_url,
        ENV_STATUS_QUEUE_URL: resources.status_queue_url,
        ENV_SECRET_ID: resources.secret_id,
        ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        ENV_LOG_LEVEL: config.log_level,
    }


class LocalPipeline:
    """Starts and stops every piece; `start()` then `stop()` (also a context manager)."""

    def __init__(self, config: LocalConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.emulator = Emulator()
        # DynamoDB in a moto process of its own, as it is a service of its own in AWS: the
        # consumer's ledger writes then never hold the GIL that the ingest's SendMessageBatch
        # waits for (e2e ack p99 about 250 -> 150 ms under `make bench`; decisions D70).
        self.table_emulator = Emulator()
        self.resources: LocalResources | None = None
        self.graph: Any = None  # local_pipeline.fake_graph.FakeGraphApi when no GRAPH_API_URL
        self.gateway: Gateway | None = None
        self.worker: subprocess.Popen[str] | None = None
        self._worker_ready = threading.Event()
        self._worker_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ingest: ExecutionEnvironments | None = None
        config.log_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_log = config.log_dir / "ingest.log"
        self.consumer_log = config.log_dir / "consumer.log"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        config = self.config
        self.gateway = Gateway(
            self._invoke_ingest, port=config.port, on_exchange=self._on_exchange, info=self.info
        )
        self.gateway.bind()  # first: a taken port fails fast, before anything else starts
        self.emulator.launch()
        self.table_emulator.launch()
        endpoint = self.emulator.wait_ready()
        self.resources = resources = create_resources(
            endpoint,
            dynamodb_endpoint=self.table_emulator.wait_ready(),
            app_secret=config.app_secret,
            verify_token=config.verify_token,
            access_token=config.access_token,
        )
        environment = handler_environment(config, resources)
        bus_name = os.environ.get(ENV_EVENT_BUS_NAME, "").strip()
        if bus_name:
            from local_pipeline.event_bus import LocalEventBus

            bus = LocalEventBus(resources.endpoint, bus_name)
            self._spawn(lambda: bus.watch(self.console, self._stopping), "event-watcher")
        for name in AWS_ENV_TO_DROP:
            os.environ.pop(name, None)
        os.environ.update({**environment, ENV_SERVICE_NAME: INGEST_SERVICE})
        # Started once the environment is the function's (its processes inherit it).
        self.ingest = ExecutionEnvironments(
            FunctionSpec(
                handler=INGEST_HANDLER,
                function_name=INGEST_FUNCTION_NAME,
                timeout_seconds=INGEST_TIMEOUT_SECONDS,
                memory_mb=INGEST_MEMORY_MB,
                warm_services=("sqs", "secretsmanager"),
            ),
            log_path=self.ingest_log,
            environments=INGEST_ENVIRONMENTS,
        )
        self.ingest.launch()  # they start while the consumer worker does
        graph_url = config.graph_api_url
        if graph_url is None:
            from local_pipeline.fake_graph import FakeGraphApi

            self.graph = FakeGraphApi(
                port=config.fake_graph_port, expected_token=config.access_token
            )
            try:
                self.graph.start()
            except OSError as error:
                raise StartupError(
                    f"the fake Graph API cannot listen on 127.0.0.1:{config.fake_graph_port}: "
                    f"{error.strerror}"
                ) from None
            graph_url = str(self.graph.url)
            if config.fake_statuses:
                self.graph.send_statuses(
                    self.gateway.url, config.app_secret, sequence=config.fake_statuses
                )
            self._spawn(self._watch_graph, "graph-watcher")
        self._start_worker(environment, graph_url)
        try:
            self.ingest.wait_ready()
        except InvocationFailed as error:
            raise StartupError(f"the ingest function did not start: {error}") from None

        self.gateway.serve()

    def stop(self) -> None:
        self._stopping.set()
        if self.gateway is not None:
            self.gateway.stop()
        if self.ingest is not None:
            self.ingest.close()
        self._stop_worker()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.graph is not None:
            self.graph.stop()
        self.emulator.stop()
        self.table_emulator.stop()

    def __enter__(self) -> LocalPipeline:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _invoke_ingest(self, event: dict[str, Any]) -> Any:
        assert self.ingest is not None
        return self.ingest.invoke(event)

    # --- the consumer worker -----------------------------------------------------------------

    def _start_worker(self, environment: Mapping[str, str], graph_url: str) -> None:
        resources = self.resources
        assert resources is not None
        child_env = {key: value for key, value in os.environ.items() if key not in AWS_ENV_TO_DROP}
        child_env.update(environment)
        child_env.update(
            {
                ENV_SERVICE_NAME: CONSUMER_SERVICE,
                ENV_IDEMPOTENCY_TABLE: resources.table_name,
                ENV_DEAD_LETTER_QUEUE_URL: resources.dlq_url,
                ENV_GRAPH_API_URL: graph_url,
                ENV_GRAPH_API_VERSION: self.config.graph_api_version,
                ENV_LOG_FILE: str(self.consumer_log.resolve()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        stderr = open(self.consumer_log, "a", encoding="utf-8")  # noqa: SIM115 - child's stderr
        try:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "local_pipeline.poller"],
                env=child_env,
                cwd=Path(__file__).resolve().parent.parent,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                encoding="utf-8",
                start_new_session=True,  # Ctrl-C reaches us; we stop the worker in order
            )
        finally:
            stderr.close()
        self._spawn(self._read_worker, "worker-reader")
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_SECONDS
        while not self._worker_ready.wait(0.1):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise StartupError(
                    "the consumer worker did not start; its last log lines:\n"
                    + _tail(self.consumer_log)
                )

    def _read_worker(self) -> None:
        worker = self.worker
        assert worker is not None
        assert worker.stdout is not None
        for line in worker.stdout:
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if not isinstance(document, dict):
                continue
            if document.get("event") == "ready":
                self._worker_ready.set()
            else:
                self.console.worker_event(document)
        if not self._stopping.is_set():
            self.console.event(
                "error", "red", f"the consumer worker exited; see {self.consumer_log}"
            )

    def wake_worker(self) -> None:
        with self._worker_lock:
            worker = self.worker
            if worker is None or worker.stdin is None or worker.stdin.closed:
                return
            try:
                worker.stdin.write("\n")
                worker.stdin.flush()
            except (BrokenPipeError, OSError):
                return

    def _stop_worker(self) -> None:
        with self._worker_lock:
            worker = self.worker
            if worker is None:
                return
            if worker.stdin is not None and not worker.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    worker.stdin.close()  # EOF: finish the current batch and exit
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            worker.terminate()
            try:
                worker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    # --- observers ---------------------------------------------------------------------------

    def _on_exchange(self, exchange: Exchange) -> None:
        self.console.exchange(exchange)
        if exchange.method == "POST" and exchange.status == 200:
            self.wake_worker()

    def _watch_graph(self) -> None:
        seen = 0
        while not self._stopping.is_set():
            self.graph.wait_for(seen + 1, timeout=0.2)
            calls = self.graph.requests
            if len(calls) < seen:  # the fake was reset
                seen = 0
            for call in calls[seen:]:
                self.console.graph_call(call.to_json())
            seen = len(calls)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- what the demo and the tests ask ---------------------------------------------------

    def info(self) -> dict[str, Any]:
        resources = self.resources
        assert resources is not None
        assert self.gateway is not None
        graph_url = self.graph.url if self.graph is not None else self.config.graph_api_url
        return {
            "webhook_url": self.gateway.url,
            "verify_token": self.config.verify_token,
            "graph_api_url": graph_url,
            "fake_graph": self.graph is not None,
            "graph_api_version": self.config.graph_api_version,
            "aws_endpoint": resources.endpoint,
            "dynamodb_endpoint": resources.dynamodb_endpoint,
            "secret_id": resources.secret_id,
            "queue_url": resources.queue_url,
            "dlq_url": resources.dlq_url,
            "status_queue_url": resources.status_queue_url,
            "status_dlq_url": resources.status_dlq_url,
            "table_name": resources.table_name,
            "max_receive_count": resources.max_receive_count,
            "logs": [str(self.ingest_log), str(self.consumer_log)],
            "fake_statuses": list(self.config.fake_statuses) if self.graph is not None else [],
        }


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(cannot read {path})"


def print_banner(pipeline: LocalPipeline) -> None:
    console, config, info = pipeline.console, pipeline.config, pipeline.info()
    url = info["webhook_url"]
    body = encode(message_delivery(text_message()))
    secret_source = (
        "default; set WHATSAPP_APP_SECRET to change"
        if config.app_secret == DEFAULT_APP_SECRET
        else "from WHATSAPP_APP_SECRET"
    )
    graph = (
        f"fake, {info['graph_api_url']} (records calls; inject errors: "
        f"POST {info['graph_api_url']}/__fake/script)"
        if info["fake_graph"]
        else f"REAL, {info['graph_api_url']} {info['graph_api_version']} (GRAPH_API_URL)"
    )
    bold = console.paint
    console.line(
        bold("whatsapp-relay: the whole pipeline on 127.0.0.1, same handlers as Lambda", "bold")
    )
    console.line(f"  webhook URL    {url}")
    console.line(f"  verify token   {config.verify_token}")
    console.line(f"  app secret     ({secret_source})")
    console.line(f"  Graph API      {graph}")
    console.line(
        f"  AWS (moto)     {info['aws_endpoint']}  queue {Path(info['queue_url']).name}, "
        f"DLQ after {info['max_receive_count']} receives; statuses "
        f"{Path(info['status_queue_url']).name}; table {info['table_name']} at "
        f"{info['dynamodb_endpoint']}"
    )
    if info["fake_statuses"]:
        console.line(
            f"  statuses       the fake sends {' -> '.join(info['fake_statuses'])} for each reply "
            "(FAKE_GRAPH_STATUSES); trace a message: make trace WAMID=<wamid> ARGS=--local"
        )
    console.line(f"  handler logs   {' and '.join(info['logs'])} (LOG_LEVEL={config.log_level})")
    console.line(f"  {_replies_line()}")
    bus = os.environ.get(ENV_EVENT_BUS_NAME, "").strip()
    if bus:
        console.line(f"  events         bus {bus} in moto; each one shown as an `event` line")
    console.line("")
    console.line("Handshake (as Meta does when you save the callback URL):")
    console.line(
        f"  curl -sS '{url}?hub.mode=subscribe&hub.verify_token={config.verify_token}"
        "&hub.challenge=1158201444'"
    )
    console.line("A signed text message (paste it twice: the duplicate gets no second reply):")
    console.line(f"  {signed_curl(url, body, config.app_secret)}")
    console.line("")
    console.line(bold("Ready. Ctrl-C stops everything.", "bold"))


def pipeline_state(pipeline: LocalPipeline) -> PipelineState:
    """What `make demo` and `make inspect-dlq` need to find this pipeline (no secret value)."""
    resources, gateway = pipeline.resources, pipeline.gateway
    assert resources is not None
    assert gateway is not None
    return PipelineState(
        pid=os.getpid(),
        webhook_url=gateway.url,
        aws_endpoint=resources.endpoint,
        region=LOCAL_REGION,
        secret_id=resources.secret_id,
        queue_url=resources.queue_url,
        dlq_url=resources.dlq_url,
        consumer_log=str(pipeline.consumer_log.resolve()),
        table_name=resources.table_name,
        ingest_log=str(pipeline.ingest_log.resolve()),
        status_queue_url=resources.status_queue_url,
        status_dlq_url=resources.status_dlq_url,
        dynamodb_endpoint=resources.dynamodb_endpoint,
    )


def _replies_line() -> str:
    """Who answers: the reply handler of REPLY_HANDLER, or the rules file; both are re-read
    when their file changes."""
    handler = os.environ.get(ENV_REPLY_HANDLER, "").strip()
    if handler:
        return f"reply handler  {handler} (REPLY_HANDLER; re-imported when its file changes)"
    rules = os.environ.get(ENV_REPLY_RULES_PATH) or "functions/consumer/reply_rules.json"
    return f"reply rules    {rules} (re-read when it changes; REPLY_HANDLER=module:function)"


def route_warnings_to(stream: IO[str]) -> None:
    """Python warnings (e.g. Powertools' "no metrics to publish") go to the log, not the
    console; real errors still reach stderr."""
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.addHandler(logging.StreamHandler(stream))
    warnings_logger.propagate = False


def _console_stream() -> IO[str]:
    """The terminal for the console; stdout itself (fd 1) is pointed at the ingest log file,
    where Powertools writes the handler's JSON logs and EMF metrics."""
    return os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")


def main() -> int:
    try:
        config = LocalConfig.from_env()
    except LocalConfigError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 2
    console_stream = _console_stream()
    console = Console(console_stream, graph_visible=config.graph_api_url is None)
    pipeline = LocalPipeline(config, console)
    ingest_log = open(pipeline.ingest_log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    sys.stdout.flush()
    os.dup2(ingest_log.fileno(), 1)
    route_warnings_to(ingest_log)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # a closed terminal: stop cleanly, state file too
    console.line("starting moto, the fake Graph API, the consumer worker and the gateway ...")
    try:
        pipeline.start()
    except (PortInUse, StartupError) as error:
        pipeline.stop()
        console.line(console.paint(f"make run: {error}", "red"))
        return 1
    except BaseException:
        pipeline.stop()
        raise
    ready = threading.Event()
    rules = RulesWatch(
        rules_path(),
        lambda problem: console.line(
            console.paint(
                describe(rules_path(), problem, ready=ready.is_set()),
                "green" if problem is None else "red",
            )
        ),
    )
    try:
        if rules.wait_until_valid(stop):
            # The state file first: whoever sees "Ready." can run `make demo` at once.
            write_state(config.state_dir, pipeline_state(pipeline))
            print_banner(pipeline)
            ready.set()
            threading.Thread(target=rules.watch, args=(stop,), daemon=True).start()
            while not stop.wait(0.5):
                pass
    finally:
        remove_state(config.state_dir, os.getpid())
        console.line("stopping ...")
        pipeline.stop()
        console.line("stopped: gateway, consumer worker, fake Graph API and moto are down.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
