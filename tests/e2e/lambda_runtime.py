"""A stand-in for Lambda's Python runtime, as far as logging goes, run as a child process:

    python -m tests.e2e.lambda_runtime functions.ingest.app.handler

Before it imports the handler's module it does what Lambda's runtime does when the function's
log format is JSON with an application log level (`AWS_LAMBDA_LOG_FORMAT=JSON`,
`AWS_LAMBDA_LOG_LEVEL`): the root logger at that level, with one handler that writes every
record it receives as a JSON line (to stderr here; CloudWatch in Lambda). The handler's module
is imported with the environment it was started with, as in Lambda's init phase.

It then invokes the handler once per line on stdin (a JSON event; EOF ends it), in one warm
process, and writes each answer on stdout as one line starting with `ANSWER_PREFIX`. Everything
else the process writes (Powertools' JSON logs, EMF metrics, the root handler's lines) is what
CloudWatch would receive.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import Any

ANSWER_PREFIX = "@@answer "
_STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class LambdaJsonFormatter(logging.Formatter):
    """Like the runtime's JSON formatter, and stricter: every extra field of the record goes out
    too, so nothing a library attaches to a record escapes the test that reads these lines."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["stackTrace"] = traceback.format_exception(*record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_KEYS:
                document[key] = value
        return json.dumps(document, default=repr)


def install_lambda_logging() -> None:
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LambdaJsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def main(dotted_handler: str) -> None:
    install_lambda_logging()
    from functions.common.lambda_context import StandInContext
    from local_pipeline.poller import load_handler

    handler = load_handler(dotted_handler)  # the init phase: the module is imported here
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "whatsapp-relay-test")
    for line in sys.stdin:
        event = json.loads(line)
        answer = handler(event, StandInContext(function_name=function_name, timeout_seconds=30))
        sys.stdout.write(ANSWER_PREFIX + json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
