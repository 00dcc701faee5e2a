"""Webhook verification + parsing next to pywa, the most used Python WhatsApp SDK.

Both sides get the same signed bodies and do the same job: check `X-Hub-Signature-256`, parse,
and hand each inbound message on (pywa to an `on_message` callback; us to the queue port, which
serialises the record SQS would receive). Also counted: how many of the messages in one delivery
each side hands on — pywa reads only the first message of a change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

ROUNDS = 2_000
APP_SECRET = "peer-benchmark-secret"


def delivery(messages_per_change: int, changes: int) -> bytes:
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": "106540352242922",
                                },
                                # pywa 4.5 requires the 2026 `user_id` here; give it one.
                                "contacts": [
                                    {
                                        "profile": {"name": "Sheena"},
                                        "wa_id": "16505551234",
                                        "user_id": "US.1",
                                    }
                                ],
                                "messages": [
                                    {
                                        "from": "16505551234",
                                        "id": f"wamid.{uuid.uuid4().hex}",
                                        "timestamp": "1749416383",
                                        "type": "text",
                                        "text": {"body": "Olá! Tem em azul? 👍"},
                                    }
                                    for _ in range(messages_per_change)
                                ],
                            },
                        }
                        for _ in range(changes)
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def ours() -> Callable[[bytes, str], int]:
    from functions.domain.ingest.accept import accept_delivery
    from functions.domain.whatsapp.credentials import WhatsAppCredentials

    credentials = WhatsAppCredentials(app_secret=APP_SECRET, verify_token="v", access_token="t")

    class Source:
        def current(self) -> WhatsAppCredentials:
            return credentials

        def refreshed(self) -> WhatsAppCredentials | None:
            return None

    handed_on: list[str] = []

    class Queue:
        def publish(self, records: Sequence[Any]) -> None:
            handed_on.extend(record.to_json() for record in records)

    def run(body: bytes, header: str) -> int:
        handed_on.clear()
        accept_delivery(
            body, header, credentials=Source(), publisher=Queue(), now=lambda: datetime.now(UTC)
        )
        return len(handed_on)

    return run


def pywa() -> Callable[[bytes, str], int]:
    import logging

    from pywa import WhatsApp

    logging.getLogger("pywa").setLevel(logging.CRITICAL)
    client = WhatsApp(
        phone_id="106540352242922",
        token="x",
        server=None,
        verify_token="v",
        app_secret=APP_SECRET,
        validate_updates=True,
    )
    handed_on: list[str] = []
    client.on_message()(lambda _client, message: handed_on.append(message.id))

    def run(body: bytes, header: str) -> int:
        handed_on.clear()
        if client.webhook_update_validator(body, header) is not None:
            raise AssertionError("pywa rejected a valid signature")
        client.webhook_update_handler(body)
        return len(handed_on)

    return run


def timed(run: Callable[[bytes, str], int], bodies: list[tuple[bytes, str]]) -> float:
    samples = []
    for body, header in bodies:
        start = time.perf_counter()
        run(body, header)
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> None:
    try:
        peer = pywa()
    except ImportError:
        print("pywa is not installed: `make bench` installs it (the `bench` extra)")
        return
    mine = ours()
    singles = [(body, signature(body)) for body in (delivery(1, 1) for _ in range(ROUNDS))]
    for run in (mine, peer):  # warm both
        run(*singles[0])
    ours_us = timed(mine, singles)
    pywa_us = timed(peer, singles)
    print(f"1-message webhook, verify + parse + hand on:  whatsapp-relay {ours_us:6.1f} µs")
    print(f"                                             pywa 4.5       {pywa_us:6.1f} µs")
    print(f"                                             ratio          x{pywa_us / ours_us:.2f}")

    big = delivery(20, 50)
    header = signature(big)
    print(
        f"1,000-message delivery (50 changes x 20): messages handed on — "
        f"whatsapp-relay {mine(big, header)}, pywa {peer(big, header)}"
    )
