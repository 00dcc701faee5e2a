"""The consumer as the fault suite runs it: `functions.consumer.app.handler`, unchanged, in one of
the local pipeline's execution environments (a process of its own), with three additions the
suite steers through a key of the event (`faultSuite`, removed before the handler sees it):

- its clock is the suite's virtual clock (the wall clock plus `clockOffset`), the one moto's
  SQS lives by, so leases, attempts and `SentTimestamp` agree while hours of backoff pass;
- the backoff's jitter is seeded per invocation (`seed`);
- `kill` makes the process SIGKILL itself: at the `nth` passage of a named point of the
  adapters (e.g. `after_send`: Meta accepted the reply, the ledger has not recorded it), or
  `after_seconds` into the invocation, wherever the code then is.

Nothing here changes what the handler does; a kill ends it the way Lambda's runtime dying does.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Final

from functions.adapters.dead_letters import SqsDeadLetters
from functions.adapters.graph_client import GraphClient
from functions.adapters.ledger import DynamoDbLedger
from functions.adapters.sqs_visibility import SqsVisibility
from functions.consumer import app, wiring

EVENT_KEY: Final = "faultSuite"

# point -> (class, method, whether the point is passed after the call returned)
KILL_POINTS: Final[Mapping[str, tuple[type, str, bool]]] = {
    "before_begin": (DynamoDbLedger, "begin", False),
    "after_begin": (DynamoDbLedger, "begin", True),  # the message and its first slot taken
    "after_read_receipt": (GraphClient, "mark_read", True),
    "after_send": (GraphClient, "send", True),  # between a send and its ledger record
    "after_record_sent": (DynamoDbLedger, "record_sent", True),  # done, not yet deleted
    "after_finish": (DynamoDbLedger, "finish", True),
    "after_record_failure": (DynamoDbLedger, "record_failure", True),  # no backoff set yet
    "after_dead_letter": (SqsDeadLetters, "send", True),  # on the DLQ, ledger not told
    "after_visibility_change": (SqsVisibility, "change", True),  # about to return
}
TIMER: Final = "after_seconds"

_clock_offset = [0.0]


class VirtualDatetime(datetime):
    """`datetime.now` on the suite's clock; everything else is datetime's."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> VirtualDatetime:
        return cls.fromtimestamp(time.time() + _clock_offset[0], tz)


class _Killer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._point: str | None = None
        self._nth = 0
        self._passed = 0

    def arm(self, point: str | None, nth: int = 1) -> None:
        with self._lock:
            self._point, self._nth, self._passed = point, nth, 0

    def passing(self, point: str) -> None:
        with self._lock:
            if point != self._point:
                return
            self._passed += 1
            if self._passed < self._nth:
                return
        os.kill(os.getpid(), signal.SIGKILL)


_killer = _Killer()


def _instrument(point: str, owner: type, name: str, after: bool) -> None:
    method: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(method)
    def passing(*args: Any, **kwargs: Any) -> Any:
        if not after:
            _killer.passing(point)
        result = method(*args, **kwargs)
        if after:
            _killer.passing(point)
        return result

    setattr(owner, name, passing)


for _point, (_owner, _name, _after) in KILL_POINTS.items():
    _instrument(_point, _owner, _name, _after)
# The consumer's clock: wiring.consumer() builds it as `lambda: datetime.now(UTC)`.
setattr(wiring, "datetime", VirtualDatetime)  # noqa: B010 - not an attribute wiring exports


def handler(event: dict[str, Any], context: Any) -> Any:
    suite = event.pop(EVENT_KEY)
    _clock_offset[0] = float(suite["clockOffset"])
    random.seed(suite["seed"])
    kill = suite.get("kill") or {}
    timer: threading.Timer | None = None
    _killer.arm(kill.get("point"), int(kill.get("nth", 1)))
    if TIMER in kill:
        timer = threading.Timer(float(kill[TIMER]), os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    try:
        return app.handler(event, context)
    finally:
        if timer is not None:
            timer.cancel()
        _killer.arm(None)
