"""A Lambda context for benchmarks (the tests have their own fixture)."""

from dataclasses import dataclass


@dataclass
class FakeContext:
    function_name: str = "bench"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
