"""The guard rails a successor relies on, proven to hold."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_unit_test_cannot_open_a_socket_even_to_loopback() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_tests_under_unit_are_marked_unit_without_saying_so(request: pytest.FixtureRequest) -> None:
    # This module declares no `pytestmark`: the conftest marks it by its folder.
    assert request.node.get_closest_marker("unit") is not None


def test_importing_the_handlers_loads_neither_boto3_nor_the_xray_sdk() -> None:
    # Every cold start pays for what the handler modules import: boto3 comes with the first
    # client (wiring), the X-Ray SDK not at all (Lambda's active tracing records invocations).
    probe = (
        "import sys; import functions.ingest.app, functions.consumer.app; "
        "print(sorted(m for m in ('boto3', 'botocore.client', 'aws_xray_sdk') if m in sys.modules))"
    )
    env = {**os.environ, "LAMBDA_TASK_ROOT": str(REPO_ROOT), "POWERTOOLS_SERVICE_NAME": "probe"}
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert answer.stdout.strip() == "[]"
