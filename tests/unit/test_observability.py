"""What `functions/common/observability.py` guarantees about log lines, whatever the levels.

The whole-scenario proof (both handlers, Lambda's log setup, every debug switch) is
tests/e2e/test_no_personal_data_in_logs.py; these are the two mechanisms, fast.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from functions.common.observability import LIBRARY_LOGGERS, lambda_handler


@pytest.fixture
def root_at_debug() -> Iterator[list[logging.LogRecord]]:
    """The root logger as Lambda sets it for `LOG_LEVEL=DEBUG`: DEBUG, a handler taking all."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, previous_level = Keep(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


@pytest.mark.parametrize(
    "name", [*LIBRARY_LOGGERS, "botocore.endpoint", "botocore.parsers", "urllib3.connectionpool"]
)
def test_library_loggers_say_nothing_below_warning_with_the_root_at_debug(
    name: str, root_at_debug: list[logging.LogRecord]
) -> None:
    library = logging.getLogger(name)
    library.debug("Response body: %s", "SecretString")
    library.info("request body")
    library.warning("connection pool is full")
    assert [r.getMessage() for r in root_at_debug] == ["connection pool is full"]


def test_the_event_is_never_logged_even_when_powertools_is_told_to(
    monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    # POWERTOOLS_LOGGER_LOG_EVENT is read when the decorator is applied, as at a cold start
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")

    @lambda_handler()
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"ok": True}

    assert handler({"text": {"body": "my door code is 4096"}}, None) == {"ok": True}
    assert "door code" not in captured_logs.getvalue()
