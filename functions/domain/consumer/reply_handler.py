"""Calling the user's reply handler: the mapping it gets, and its time bound.

The handler runs in a thread of its own, and the consumer waits for it no longer than the
invocation can spare. Python cannot stop a thread: a handler still running when that time is up
keeps running in the background (and its answer is thrown away) while the message is retried
(`handler_timeout`). Anything the handler raises is a retry too (`handler_error`), logged with
its traceback by telemetry. Either way the message spends one of its own attempts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from functions.domain.consumer.error_policy import CODE_HANDLER_ERROR, CODE_HANDLER_TIMEOUT
from functions.domain.consumer.ports import ReplyHandler
from functions.domain.whatsapp.queued_record import QueuedRecord
from functions.domain.whatsapp.webhook import Contact


class HandlerFailed(Exception):
    """The handler raised (`error` holds what it raised) or did not return in time."""

    def __init__(
        self, code: str, reason: str, *, error: BaseException | None, latency_ms: float | None
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error = error
        self.latency_ms = latency_ms


@dataclass(frozen=True, slots=True)
class HandlerAnswer:
    returned: object
    latency_ms: float


def handler_event(burst: Sequence[QueuedRecord]) -> dict[str, Any]:
    """The one argument of a reply handler: the last message of `burst` (oldest first), its
    sender's contact and the receiving number, as Meta sent them. A fresh copy per call, so a
    handler that changes it changes nothing else."""
    last = burst[-1].received
    event = {
        "message": dict(last.message.raw),
        "contact": meta_contact(last.contact),
        "metadata": {
            "display_phone_number": last.business.display_phone_number,
            "phone_number_id": last.business.phone_number_id,
        },
        "burst": [dict(member.received.message.raw) for member in burst],
    }
    copied: dict[str, Any] = json.loads(json.dumps(event))
    return copied


def meta_contact(contact: Contact | None) -> dict[str, Any] | None:
    """Meta's `contacts[]` object: as sent when the record kept it, else rebuilt from what every
    record keeps (records queued before `metaContact` existed)."""
    if contact is None:
        return None
    if contact.raw:
        return dict(contact.raw)
    rebuilt: dict[str, Any] = {"profile": {"name": contact.name} if contact.name else {}}
    if contact.wa_id:
        rebuilt["wa_id"] = contact.wa_id
    if contact.user_id:
        rebuilt["user_id"] = contact.user_id
    return rebuilt


def call_handler(
    handler: ReplyHandler, event: dict[str, Any], *, timeout_seconds: float
) -> HandlerAnswer:
    """Run `handler(event)` in its own thread for at most `timeout_seconds`."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["returned"] = handler(event)
        except BaseException as error:  # noqa: BLE001 - whatever user code raises is a retry
            outcome["error"] = error
        finally:
            outcome["seconds"] = time.perf_counter() - started
            done.set()

    started = time.perf_counter()
    # A daemon: a handler that never returns must not keep the process from ending.
    threading.Thread(target=run, name="reply-handler", daemon=True).start()
    if not done.wait(max(0.0, timeout_seconds)):
        raise HandlerFailed(
            CODE_HANDLER_TIMEOUT,
            f"the reply handler did not return within {timeout_seconds:.1f} s (it may still be "
            "running: Python cannot stop it)",
            error=None,
            latency_ms=None,
        )
    latency_ms = outcome["seconds"] * 1000
    error = outcome.get("error")
    if error is not None:
        raise HandlerFailed(
            CODE_HANDLER_ERROR,
            f"the reply handler raised {type(error).__name__}: {error}",
            error=error,
            latency_ms=latency_ms,
        )
    return HandlerAnswer(returned=outcome.get("returned"), latency_ms=latency_ms)
