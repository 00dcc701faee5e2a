"""moto's server in its own process for the benchmarks, optionally holding every DynamoDB answer
until a fixed time after its request started (what a store on a network costs), plus the few
resources the measured functions need.

`python -m benchmarks.aws --dynamodb-latency-ms 5` is the process; `Aws(...)` starts and stops it.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import IO, Any

from benchmarks.lambda_env import REGION
from local_pipeline.emulator import Emulator, WsgiApp, serve

SECRET_NAME = "whatsapp-relay/bench"


def delay_dynamodb(latency_seconds: float) -> Callable[[WsgiApp], WsgiApp]:
    """Middleware: a DynamoDB request (JSON protocol, `X-Amz-Target: DynamoDB_…`) is answered
    no sooner than `latency_seconds` after it reached the server; others pass untouched."""

    def wrap(app: WsgiApp) -> WsgiApp:
        def delayed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            started = time.perf_counter()
            body = list(app(environ, start_response))
            if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
                remaining = latency_seconds - (time.perf_counter() - started)
                if remaining > 0:
                    time.sleep(remaining)
            return body

        return delayed

    return wrap


class Aws:
    """moto on a free loopback port (own process); clients for the orchestrator's own setup."""

    def __init__(self, *, dynamodb_latency_ms: float = 0.0, log: IO[str] | None = None) -> None:
        args = ["--dynamodb-latency-ms", str(dynamodb_latency_ms)] if dynamodb_latency_ms else []
        self._emulator = Emulator("benchmarks.aws", args, stderr=log)
        self.endpoint = ""
        self._secret_id: str | None = None

    def __enter__(self) -> Aws:
        self.endpoint = self._emulator.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._emulator.stop()

    def client(self, service: str) -> Any:
        import boto3

        make_client: Any = boto3.session.Session().client  # any service, so untyped
        return make_client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    def create_secret(self, app_secret: str, verify_token: str, access_token: str) -> str:
        """The function's secret (created once per server)."""
        if self._secret_id is not None:
            return self._secret_id
        document = {
            "appSecret": app_secret,
            "verifyToken": verify_token,
            "accessToken": access_token,
        }
        self.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps(document)
        )
        self._secret_id = SECRET_NAME
        return SECRET_NAME

    def create_table(self) -> str:
        """A fresh idempotency table (schema of the contract: `id` (S), TTL `expiration`)."""
        name = f"bench-{uuid.uuid4().hex[:12]}"
        self.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return name

    def create_queue(self) -> str:
        """A fresh FIFO queue; its URL."""
        url: str = self.client("sqs").create_queue(
            QueueName=f"bench-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        return url


def main() -> None:
    parser = argparse.ArgumentParser(description="moto's server for the benchmarks")
    parser.add_argument("--dynamodb-latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    latency = args.dynamodb_latency_ms / 1000
    serve(wrap=delay_dynamodb(latency) if latency > 0 else None)


if __name__ == "__main__":
    main()
