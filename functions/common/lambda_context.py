"""The one stand-in for Lambda's context object, for every caller outside Lambda: an entry point
invoked without a context, the local pipeline, the tools, the benchmarks and the tests.

It has what Powertools and the consumer read, and a real deadline: the remaining time falls as
the clock runs, from `timeout_seconds` at creation. A test that needs a fixed remaining time
passes a clock that stands still.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass
class StandInContext:
    function_name: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "whatsapp-relay")
    )
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))
