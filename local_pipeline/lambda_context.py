"""A stand-in for the Lambda runtime's context object, with a real deadline."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from local_pipeline.config import LOCAL_ACCOUNT_ID, LOCAL_REGION


@dataclass
class LocalLambdaContext:
    function_name: str
    timeout_seconds: float
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "local"
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
