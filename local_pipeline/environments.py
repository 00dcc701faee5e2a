"""Lambda's execution environments for a function behind the gateway: a pool of processes, each
running one invocation at a time, as Lambda runs concurrent invocations.

A Lambda execution environment is a process: module-level state (Powertools' Logger and Metrics,
cached clients, the secret cache) belongs to it and is never shared by two invocations at once.
Threads in one process would share it, so each environment here is a process of its own. The
pool starts all `environments` at once, before the first request (each through its init phase:
handler imported, clients built), like provisioned concurrency: starting them under load would
take the CPU the running ones need. An invocation takes whichever environment is free first. An
environment that crashes or overruns the function's timeout is discarded, as Lambda does, the
invocation fails (the gateway answers 502) and a new one starts when one is next needed.

Each environment is `python -m local_pipeline.environments`, in a session of its own (Ctrl-C in
the terminal reaches `make run`, which closes the environments in order); it appends its stdout
and stderr (the handler's JSON logs, EMF metrics, warnings) to `log_path`.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 60.0
TIMEOUT_SLACK_SECONDS = 1.0  # beyond the function's timeout, before the environment is killed


class InvocationFailed(RuntimeError):
    """The environment crashed or overran the function's timeout, or the handler raised."""


def _handler_error(type_name: str, message: str) -> InvocationFailed:
    """The handler's exception, re-raised here under its own class name (what the console
    shows: "handler raised KeyError: ..."), since the object itself stayed in its process."""
    error_class: type[InvocationFailed] = type(type_name, (InvocationFailed,), {})
    return error_class(message)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What an environment runs: the handler's dotted path and its Lambda settings."""

    handler: str  # e.g. functions.ingest.app.handler
    function_name: str
    timeout_seconds: float
    memory_mb: int
    warm_services: Sequence[str] = ()  # boto3 clients built in the init phase
    # The function's own variables, over the pool's environment (as Lambda's configuration).
    environment: Mapping[str, str] = field(default_factory=dict)


def _environment_main(connection: Connection, spec: FunctionSpec) -> None:
    """One execution environment: init, then invocations until the pool closes the socket."""
    from functions.common.lambda_context import StandInContext
    from local_pipeline.config import local_function_arn
    from local_pipeline.poller import load_handler, warm_clients

    handler = load_handler(spec.handler)
    warm_clients(*spec.warm_services)
    connection.send(("ready", None))
    while True:
        try:
            event = connection.recv()
        except EOFError:
            return
        context = StandInContext(
            function_name=spec.function_name,
            invoked_function_arn=local_function_arn(spec.function_name),
            timeout_seconds=spec.timeout_seconds,
            memory_limit_in_mb=spec.memory_mb,
        )
        try:
            answer: tuple[str, Any] = ("ok", handler(event, context))
        except Exception as error:  # noqa: BLE001 - reported to the caller, as Lambda does
            answer = ("error", (type(error).__name__, str(error)))
        connection.send(answer)


class _Environment:
    """One process (`python -m local_pipeline.environments`), talked to over a socket pair."""

    def __init__(self, spec: FunctionSpec, log_path: Path) -> None:
        ours, theirs = socket.socketpair()
        with open(log_path, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local_pipeline.environments", str(theirs.fileno())],
                cwd=Path(__file__).resolve().parent.parent,
                # Each log line as it is written.
                env={**os.environ, **spec.environment, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # Ctrl-C reaches `make run`, which stops us in order
            )
        theirs.close()
        assert self.process.stdin is not None
        self.process.stdin.write(pickle.dumps(spec))
        self.process.stdin.close()
        self.connection = Connection(ours.detach())

    def wait_ready(self) -> None:
        if not self.connection.poll(START_TIMEOUT_SECONDS):
            self.close()
            raise InvocationFailed("an execution environment did not start (see the log)")
        try:
            self.connection.recv()
        except EOFError:
            self.close()
            raise InvocationFailed("an execution environment died starting (see the log)") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: dict[str, Any], timeout_seconds: float) -> Any:
        self.connection.send(event)
        if not self.connection.poll(timeout_seconds + TIMEOUT_SLACK_SECONDS):
            self.process.kill()  # as Lambda ends an environment whose invocation timed out
            self.close()
            raise InvocationFailed(f"Task timed out after {timeout_seconds:.2f} seconds")
        try:
            status, value = self.connection.recv()
        except EOFError:
            self.close()
            raise InvocationFailed("the execution environment exited (see the log)") from None
        if status != "ok":
            raise _handler_error(*value)
        return value

    def close(self) -> None:
        self.connection.close()  # EOF: the environment returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ExecutionEnvironments:
    """`invoke(event)` on a free environment, at most `environments` invocations at once."""

    def __init__(self, spec: FunctionSpec, *, log_path: Path, environments: int) -> None:
        self._spec = spec
        self._log_path = log_path
        self._max = max(1, environments)
        self._idle: list[_Environment] = []
        self._count = 0  # idle + busy + starting
        self._closed = False
        self._failed_start: str | None = None  # a replacement's init failed: one waiter hears it
        self._starting: list[_Environment] = []
        self._changed = threading.Condition()

    def start(self) -> None:
        """Every environment, started together; returns once all are ready."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start every environment's process; `wait_ready()` then waits for their init."""
        self._starting = [_Environment(self._spec, self._log_path) for _ in range(self._max)]

    def wait_ready(self) -> None:
        starting, self._starting = self._starting, []
        try:
            for environment in starting:
                environment.wait_ready()
        except InvocationFailed:
            for environment in starting:
                environment.close()
            raise
        with self._changed:
            self._count = len(starting)
            self._idle.extend(starting)
            self._changed.notify_all()

    def _add(self, environment: _Environment) -> None:
        """A replacement environment, once it is ready."""
        try:
            environment.wait_ready()
        except InvocationFailed as error:
            with self._changed:
                self._count -= 1
                self._failed_start = str(error)
                self._changed.notify_all()
            return
        with self._changed:
            if self._closed:
                environment.close()
                return
            self._idle.append(environment)
            self._changed.notify()

    def _take(self) -> _Environment:
        with self._changed:
            while not self._idle:
                if self._closed:
                    raise InvocationFailed("the function's environments are shut down")
                if self._failed_start is not None:  # Lambda fails the invocation of an init error
                    failure, self._failed_start = self._failed_start, None
                    raise InvocationFailed(failure)
                if self._count < self._max:
                    self._count += 1
                    fresh = _Environment(self._spec, self._log_path)
                    threading.Thread(
                        target=self._add, args=(fresh,), name="environment-start", daemon=True
                    ).start()
                self._changed.wait()
            return self._idle.pop()

    def _give_back(self, environment: _Environment, *, healthy: bool) -> None:
        with self._changed:
            keep = healthy and not self._closed
            if keep:
                self._idle.append(environment)
            else:
                self._count -= 1
            self._changed.notify()
        if not keep:
            environment.close()

    def invoke(self, event: dict[str, Any]) -> Any:
        environment = self._take()
        try:
            answer = environment.invoke(event, self._spec.timeout_seconds)
        except InvocationFailed:
            self._give_back(environment, healthy=environment.alive())
            raise
        except BaseException:
            self._give_back(environment, healthy=False)
            raise
        self._give_back(environment, healthy=True)
        return answer

    def close(self) -> None:
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            starting, self._starting = self._starting, []
            self._changed.notify_all()
        for environment in [*idle, *starting]:
            environment.close()


def main() -> None:
    """`python -m local_pipeline.environments FD`: the spec arrives pickled on stdin, invocations
    on the socket FD; stdout and stderr are the log."""
    spec: FunctionSpec = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - from our parent
    _environment_main(Connection(int(sys.argv[1])), spec)


if __name__ == "__main__":
    main()
