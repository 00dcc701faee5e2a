"""How long a failed record stays invisible before SQS redelivers it.

Backoff is SQS's visibility timeout, never a sleep in the function: the message's own failed
attempts (counted in the ledger, never the receives it spent held back) are the attempt number,
the error class gives the schedule
(`error_policy.POLICIES`), the jitter spreads a throttled number's retries, `Retry-After` is
honoured, and the result never leaves [floor, 12 hours].
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from functions.domain.consumer.error_policy import MAX_VISIBILITY_SECONDS, Backoff

# "Equal jitter": half the exponential delay is fixed, half random — retries spread out, yet a
# later attempt never waits much less than an earlier one.
JITTER_SHARE = 0.5
MAX_EXPONENT = 32  # beyond this every schedule is at its cap anyway


def delay_seconds(
    backoff: Backoff,
    attempt: int,
    *,
    retry_after_seconds: float | None = None,
    random_unit: Callable[[], float] = random.random,
) -> int:
    """Visibility timeout after the `attempt`-th failure (1 = the first), in whole seconds."""
    exponent = min(max(attempt, 1) - 1, MAX_EXPONENT)
    exponential = min(backoff.cap_seconds, backoff.base_seconds * backoff.factor**exponent)
    jittered = exponential * (1 - JITTER_SHARE) + exponential * JITTER_SHARE * random_unit()
    delay = max(backoff.floor_seconds, jittered)
    if retry_after_seconds is not None and retry_after_seconds > 0:
        delay = max(delay, retry_after_seconds)
    return min(MAX_VISIBILITY_SECONDS, math.ceil(delay))
