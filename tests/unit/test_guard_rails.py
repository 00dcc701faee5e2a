"""The guard rails a successor relies on, proven to hold."""

from __future__ import annotations

import socket

import pytest
from pytest_socket import SocketBlockedError


def test_a_unit_test_cannot_open_a_socket_even_to_loopback() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_tests_under_unit_are_marked_unit_without_saying_so(request: pytest.FixtureRequest) -> None:
    # This module declares no `pytestmark`: the conftest marks it by its folder.
    assert request.node.get_closest_marker("unit") is not None
