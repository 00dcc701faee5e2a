"""The in-process fuzz suites open no socket: only the `integration` ones reach moto's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _in_process_fuzzing_cannot_open_a_socket(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    from pytest_socket import disable_socket, enable_socket

    disable_socket(allow_unix_socket=False)
    try:
        yield
    finally:
        enable_socket()
