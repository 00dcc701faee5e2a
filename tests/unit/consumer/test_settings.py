"""The consumer's new settings, read and checked per invocation: REPLY_HANDLER,
EVENT_BUS_NAME / EVENT_DETAIL and BURST_WINDOW_SECONDS."""

from __future__ import annotations

import pytest

from functions.common.settings import ConfigurationError, ConsumerSettings, split_handler_spec

pytestmark = pytest.mark.unit

BASE = {
    "WHATSAPP_SECRET_ID": "secret",
    "IDEMPOTENCY_TABLE": "table",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq.fifo",
}


def settings(**extra: str) -> ConsumerSettings:
    return ConsumerSettings.from_env(BASE | extra)


def test_defaults_are_the_rules_no_events_no_bursts() -> None:
    s = settings()
    assert (s.reply_handler, s.event_bus_name, s.event_content, s.burst_window_seconds) == (
        None,
        None,
        False,
        0,
    )


def test_the_new_settings_are_read() -> None:
    s = settings(
        REPLY_HANDLER=" examples.echo:handle ",
        EVENT_BUS_NAME="crm",
        EVENT_DETAIL="FULL",
        BURST_WINDOW_SECONDS="15",
    )
    assert (s.reply_handler, s.event_bus_name, s.event_content, s.burst_window_seconds) == (
        "examples.echo:handle",
        "crm",
        True,
        15,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REPLY_HANDLER", "examples.echo"),
        ("REPLY_HANDLER", "examples/echo.py:handle"),
        ("REPLY_HANDLER", "examples.echo:handle()"),
        ("EVENT_DETAIL", "everything"),
        ("BURST_WINDOW_SECONDS", "-1"),
        ("BURST_WINDOW_SECONDS", "121"),
        ("BURST_WINDOW_SECONDS", "2.5"),
    ],
)
def test_a_malformed_value_names_its_variable_never_its_value(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings(**{name: value})
    assert name in str(raised.value)
    assert value not in str(raised.value)


def test_a_handler_spec_splits_into_module_and_function() -> None:
    assert split_handler_spec("bot.replies:handle") == ("bot.replies", "handle")
    with pytest.raises(ValueError, match=r"module\.path:function"):
        split_handler_spec("bot.replies:handle:extra")
