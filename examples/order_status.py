"""An order-status bot: "where is my order A-1001?" -> the order's status, then buttons.

It shows what a real handler does:
- reads the text (or the burst of texts) the user sent, and the tap on a button it sent earlier;
- looks the order up in another system — here a JSON file (`ORDERS_FILE`, default
  `examples/orders.json`), in real life your order API or database;
- answers with several messages (a text, then reply buttons), sent in order, at most once each;
- lets an outage of that other system be a retry: it raises, and the pipeline retries the
  message with backoff (`handler_error`), then dead-letters it after its own attempts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from functions.handler_kit import HandlerEvent, Message, buttons, reply_id_of, text, text_of

ORDERS_FILE_VARIABLE = "ORDERS_FILE"
DEFAULT_ORDERS_FILE = Path(__file__).with_name("orders.json")
ORDER_NUMBER = re.compile(r"\b([A-Z])-?(\d{4})\b", re.IGNORECASE)
TRACK_ANOTHER = "track-another"
TALK_TO_US = "talk-to-us"


def handle(event: HandlerEvent) -> Message | list[Message] | None:
    message = event["message"]
    if message.get("type") in ("reaction", "system", "unsupported"):
        return None
    choice = reply_id_of(message)
    if choice == TRACK_ANOTHER:
        return text("Send me the order number, like A-1001.")
    if choice == TALK_TO_US:
        return text("Someone from the team will write to you here shortly.")
    # With a burst window, "hi" + "my order" + "A-1001" arrive together: read them all.
    said = " ".join(words for words in (text_of(item) for item in event["burst"]) if words)
    found = ORDER_NUMBER.search(said)
    if found is None:
        name = _first_name(event["contact"])
        return text(f"Hi{name}! Send me your order number (like A-1001) and I'll look it up.")
    number = f"{found.group(1).upper()}-{found.group(2)}"
    order = find_order(number)
    if order is None:
        return text(f"I can't find order {number}. Is it the number from your confirmation?")
    return [
        text(_describe(number, order)),
        buttons(
            "Anything else?",
            {TRACK_ANOTHER: "Track another order", TALK_TO_US: "Talk to a person"},
        ),
    ]


def find_order(number: str) -> dict[str, Any] | None:
    """The order system. Raising here (it is down) makes the pipeline retry the message later;
    returning None means "no such order", an answer in its own right."""
    path = Path(os.environ.get(ORDERS_FILE_VARIABLE) or DEFAULT_ORDERS_FILE)
    orders = json.loads(path.read_text(encoding="utf-8"))  # OSError / ValueError: retried
    order = orders.get(number)
    return order if isinstance(order, dict) else None


def _describe(number: str, order: dict[str, Any]) -> str:
    status = str(order.get("status", "being processed"))
    parts = [f"Order {number} is {status}"]
    if order.get("carrier"):
        parts.append(f"with {order['carrier']}")
    if order.get("eta"):
        parts.append(f"(expected {order['eta']})")
    return " ".join(parts) + "."


def _first_name(contact: dict[str, Any] | None) -> str:
    profile = (contact or {}).get("profile") or {}
    name = profile.get("name") if isinstance(profile, dict) else None
    return f" {name.split()[0]}" if isinstance(name, str) and name.strip() else ""
