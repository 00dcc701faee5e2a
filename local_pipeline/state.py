"""Where a running `make run` is, for the commands that talk to it (`make demo`,
`make inspect-dlq`, `make redrive`), so nobody repeats `PORT` or the secret.

`make run` writes `<LOCAL_STATE_DIR>/pipeline.json` once it is Ready and removes it when it
stops. The file says where things are, never a secret value: whoever needs the app secret reads
it from moto's Secrets Manager by the id written here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass
from pathlib import Path
from typing import Any

from local_pipeline.config import DEFAULT_STATE_DIR, ENV_STATE_DIR

STATE_FILE_NAME = "pipeline.json"


class NoRunningPipeline(Exception):
    """No live `make run` to talk to; the message is one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class PipelineState:
    pid: int
    webhook_url: str
    aws_endpoint: str
    region: str
    secret_id: str
    queue_url: str
    dlq_url: str
    consumer_log: str
    # `make trace --local` (a file without them is from an older `make run`: trace says so)
    table_name: str = ""
    ingest_log: str = ""
    status_queue_url: str = ""
    status_dlq_url: str = ""
    # the table's moto (`make run` runs DynamoDB apart); empty in an older file: aws_endpoint
    dynamodb_endpoint: str = ""

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PipelineState:
        values = {
            name: document[name]
            for name, spec in cls.__dataclass_fields__.items()
            if name in document or spec.default is MISSING
        }
        if not isinstance(values["pid"], int) or not all(
            isinstance(value, str) for name, value in values.items() if name != "pid"
        ):
            raise TypeError("a field has the wrong type")
        return cls(**values)


def state_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR)


def state_file(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


def write_state(state_dir: Path, state: PipelineState) -> Path:
    """Atomically: a reader never sees half a file."""
    path = state_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{state.pid}.tmp")
    partial.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def remove_state(state_dir: Path, pid: int) -> None:
    """Remove the file if this process wrote it (another `make run` may have replaced it)."""
    path = state_file(state_dir)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        return


def process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def running_pipeline(
    state_dir: Path, *, is_alive: Callable[[int], bool] = process_is_alive
) -> PipelineState:
    """The live `make run` that wrote `state_dir`'s file; `NoRunningPipeline` otherwise."""
    path = state_file(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoRunningPipeline(
            f"no `make run` is running ({path} does not exist): start one with `make run`"
        ) from None
    except OSError as error:
        raise NoRunningPipeline(f"cannot read {path}: {error.strerror}") from None
    try:
        state = PipelineState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):
        raise NoRunningPipeline(
            f"{path} is not a `make run` state file: delete it and start `make run` again"
        ) from None
    if not is_alive(state.pid):
        raise NoRunningPipeline(
            f"{path} is stale: the `make run` that wrote it (pid {state.pid}) is no longer "
            "running; start it again with `make run`"
        )
    return state


def app_secret_from_emulator(aws_endpoint: str, secret_id: str) -> str:
    """The app secret the running pipeline verifies signatures with, from moto's Secrets
    Manager (the value is never written to a file)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from functions.domain.whatsapp.credentials import SecretFormatError, WhatsAppCredentials
    from local_pipeline.emulator import aws_client

    try:
        secret = aws_client("secretsmanager", aws_endpoint).get_secret_value(SecretId=secret_id)
        return WhatsAppCredentials.from_secret_string(secret["SecretString"]).app_secret
    except (BotoCoreError, ClientError, SecretFormatError, KeyError) as error:
        raise NoRunningPipeline(
            f"cannot read the app secret {secret_id} from moto at {aws_endpoint} "
            f"({type(error).__name__}); pass WHATSAPP_APP_SECRET=<the secret make run uses>"
        ) from None
