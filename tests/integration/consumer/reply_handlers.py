"""Reply handlers the integration and end-to-end tests name in REPLY_HANDLER
(`tests.integration.consumer.reply_handlers:<function>`)."""

from __future__ import annotations

import threading
from typing import Any

from functions.handler_kit import HandlerEvent, Message, text

# Set by a test to let `blocks` return (it never does otherwise, within its 30 s).
RELEASE = threading.Event()
CALLS: list[HandlerEvent] = []


def three_texts(event: HandlerEvent) -> list[Message]:
    CALLS.append(event)
    return [text("one"), text("two"), text("three")]


def raises(event: HandlerEvent) -> Message:
    CALLS.append(event)
    raise LookupError("the order system is down")


def blocks(event: HandlerEvent) -> Message:
    CALLS.append(event)
    RELEASE.wait(30)
    return text("too late")


def invalid(event: HandlerEvent) -> dict[str, Any]:
    CALLS.append(event)
    return {"type": "text", "text": {"body": "x" * 5000}}


not_a_function = "REPLY_HANDLER must name a function"
