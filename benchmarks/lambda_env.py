"""The environment a deployed function runs in, rebuilt on this machine for measured processes.

Lambda's Python runtime sets `LAMBDA_TASK_ROOT`, `AWS_LAMBDA_FUNCTION_NAME`, the X-Ray daemon's
address and a `_X_AMZN_TRACE_ID` per invocation (active tracing); the stack adds the Powertools
variables and the function's settings. Powertools decides at import whether to load the X-Ray SDK
from exactly these variables, so a cold start measured without them measures something else.
The X-Ray daemon is a UDP sink on loopback here (segments are sent, as in Lambda, and dropped).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from infra.constants import LAMBDA_PYTHON_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
RUNTIME_PYTHON = LAMBDA_PYTHON_VERSION  # what the stack deploys

# The runtime contract (docs/contract.md): entry points and settings by name.
INGEST = "ingest"
CONSUMER = "consumer"
HANDLER_MODULES: Mapping[str, str] = {
    INGEST: "functions.ingest.app",
    CONSUMER: "functions.consumer.app",
}
SERVICE_NAMES: Mapping[str, str] = {
    INGEST: "whatsapp-relay-ingest",
    CONSUMER: "whatsapp-relay-consumer",
}
MEMORY_MB: Mapping[str, int] = {INGEST: 256, CONSUMER: 512}
METRICS_NAMESPACE = "WhatsAppRelay"
PRODUCTION_LOG_LEVEL = "INFO"

# What a measured process may inherit from ours; everything AWS-ish is set explicitly or dropped.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")


def clean_environment() -> dict[str, str]:
    """Our environment without anything that could point a client at a real account or change
    how Powertools behaves (AWS_*, POWERTOOLS_*, the function settings)."""
    dropped = ("AWS_", "POWERTOOLS_", "WHATSAPP_", "GRAPH_API", "LOCAL_", "LAMBDA_", "_X_AMZN")
    return {key: value for key, value in os.environ.items() if not key.startswith(dropped)}


def lambda_environment(
    function: str,
    *,
    xray_port: int,
    settings: Mapping[str, str] | None = None,
    endpoint: str | None = None,
) -> dict[str, str]:
    """The variables a deployed `function` (ingest or consumer) sees, plus `settings` (its
    QUEUE_URL, WHATSAPP_SECRET_ID, ...) and, for moto, `AWS_ENDPOINT_URL`."""
    name = f"whatsapp-relay-{function}"
    xray = f"127.0.0.1:{xray_port}"
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(
        {
            # Lambda runtime
            "LAMBDA_TASK_ROOT": str(REPO_ROOT),
            "LAMBDA_RUNTIME_DIR": str(REPO_ROOT),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{RUNTIME_PYTHON}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB[function]),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[$LATEST]bench",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": PRODUCTION_LOG_LEVEL,
            "_HANDLER": f"{HANDLER_MODULES[function]}.handler",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "TZ": ":UTC",
            # active tracing
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": xray,
            "_AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1",
            "_AWS_XRAY_DAEMON_PORT": str(xray_port),
            # what the stack sets on every function
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES[function],
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "LOG_LEVEL": PRODUCTION_LOG_LEVEL,
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
    env.update(settings or {})
    return env


def trace_header() -> str:
    """A sampled `_X_AMZN_TRACE_ID`, as the runtime sets for each invocation."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"


class XRaySink:
    """A UDP socket on loopback standing in for the X-Ray daemon: counts and drops segments."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self.datagrams = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="xray-sink", daemon=True)

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams += 1

    def __enter__(self) -> XRaySink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()
