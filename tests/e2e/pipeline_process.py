"""`python -m local_pipeline.run` as a child process for end-to-end tests: start it on free
ports, talk to it over real HTTP, read its console, stop it with Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from functions.domain.ingest.signature import sign

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0
APP_SECRET = "e2e-app-secret"
VERIFY_TOKEN = "e2e-verify-token"
ACCESS_TOKEN = "e2e-access-token"
_URL_LINE = re.compile(r"^\s+webhook URL\s+(?P<url>http://\S+)")

Calls = list[dict[str, Any]]


def pipeline_env(state_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "WHATSAPP_", "GRAPH_API", "LOCAL_"))
    }
    env.update(
        {
            "PORT": "0",
            "FAKE_GRAPH_PORT": "0",
            "LOCAL_STATE_DIR": str(state_dir),
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
            "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status), dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), dict(error.headers.items()), error.read()


class PipelineProcess:
    def __init__(self, state_dir: Path, **env_overrides: str) -> None:
        self.state_dir = state_dir
        self.env = pipeline_env(state_dir, **env_overrides)
        self.process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._ready = threading.Event()
        self._stderr = ""
        self._readers: list[threading.Thread] = []
        self.webhook_url = ""
        self.info: dict[str, Any] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> PipelineProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local_pipeline.run"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        assert self.process is not None
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"make run did not start:\n{self.output()}\nstderr:\n{self._stderr}"
                )
        status, _, body = http("GET", self.webhook_url.replace("/webhook", "/__local/info"))
        assert status == 200
        self.info = json.loads(body)

    def interrupt(self) -> int:
        """Ctrl-C, then wait: the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.wait_exit(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError("make run did not stop within 30 s of Ctrl-C") from None

    def wait_exit(self, timeout: float = START_TIMEOUT_SECONDS) -> int:
        """Wait for the process to end and its output to be read in full: the exit code."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def _read_stdout(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lines_lock:
                self._lines.append(line.rstrip("\n"))
            match = _URL_LINE.match(line)
            if match:
                self.webhook_url = match["url"]
            if line.startswith("Ready."):
                self._ready.set()

    def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        self._stderr = self.process.stderr.read()

    def output(self) -> str:
        with self._lines_lock:
            return "\n".join(self._lines)

    @property
    def stderr(self) -> str:
        return self._stderr

    # --- talking to it -------------------------------------------------------------------------

    def post(self, body: bytes, *, signature: str | None = None) -> tuple[int, bytes]:
        status, _, answer = http(
            "POST",
            self.webhook_url,
            body,
            {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature or sign(body, APP_SECRET),
            },
        )
        return status, answer

    def graph_calls(self) -> Calls:
        status, _, body = http("GET", self.info["graph_api_url"] + "/__fake/requests")
        assert status == 200
        calls: Calls = json.loads(body)
        return calls

    def script_graph(self, kind: str, *answers: Mapping[str, Any]) -> None:
        status, _, _ = http(
            "POST",
            self.info["graph_api_url"] + "/__fake/script",
            json.dumps({"kind": kind, "answers": list(answers)}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200

    def wait_for(
        self, predicate: Callable[[Calls], bool], *, timeout: float = 30.0
    ) -> Calls | None:
        """The Graph calls once `predicate` holds; None if it did not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.graph_calls()
            if predicate(calls):
                return calls
            time.sleep(0.05)
        return None

    def wait_quiet(self, seconds: float = 1.5, *, timeout: float = 30.0) -> Calls:
        """The Graph calls once none arrived for `seconds`."""
        deadline = time.monotonic() + timeout
        calls = self.graph_calls()
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < seconds and time.monotonic() < deadline:
            time.sleep(0.1)
            latest = self.graph_calls()
            if len(latest) != len(calls):
                calls, quiet_since = latest, time.monotonic()
        return calls


def processes_with_env(marker: str) -> list[int]:
    """Pids of processes (ours: /proc/<pid>/environ is readable) whose environment holds
    `marker` — how a test sees that nothing it started is left running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
