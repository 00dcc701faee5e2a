"""Records the AWS API calls that code of this repository makes, through botocore's own event
hooks: nothing in `functions/` or `tools/` knows about it.

A `CallRecorder` is a botocore `provide-client-params` handler: registered on a session, it sees
every call of every client that session makes, before the request is built, with the caller's
parameters. It keeps what IAM authorizes a call on - the service, the operation and the
parameters that name the resource (a queue URL, a table name, a secret id; never a message body or
a secret value) - and who made it: the Lambda function by the `POWERTOOLS_SERVICE_NAME` in the
environment at the time (each function's template sets it), and the repository file whose code
made the call (the innermost frame in the repository: `functions/adapters/ledger.py` for the
ledger's writes, also when Powertools' SecretsProvider makes the call for `functions/adapters/
secrets.py`).

Two ways to use it:
- in a test: `recording_session(recorder)` gives a boto3 session with the recorder on, to stand
  in for the one `functions/adapters/aws.py` builds its clients from
  (tests/iam/test_function_roles.py);
- for whole test runs, child processes included: `record_every_session(directory)` patches
  botocore's Session class in this process so that every session records, and appends each call
  made by repository code to `<directory>/calls-<pid>.jsonl`. `make test` turns it on with
  RELAY_RECORD_AWS_CALLS (see recording_site/sitecustomize.py, which runs it at interpreter start
  in every Python process of the run: pytest's workers and the processes of `make run` the e2e
  tests start).

This module is loaded by file path at interpreter start (sitecustomize), so it imports nothing
from the repository and botocore only when asked to record.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

ENV_RECORD_DIRECTORY: Final = "RELAY_RECORD_AWS_CALLS"
ENV_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"  # functions/common/names.py ENV_SERVICE_NAME
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# Where code of the repository lives (not its virtual environments).
_CODE_DIRECTORIES: Final = frozenset(
    {"functions", "tools", "examples", "local_pipeline", "tests", "infra", "benchmarks"}
)
# Top-level parameters that name what a call acts on (IAM's resource), by name across services.
RESOURCE_PARAMETERS: Final = (
    "QueueUrl",
    "QueueName",
    "QueueOwnerAWSAccountId",
    "SourceArn",
    "DestinationArn",
    "TableName",
    "SecretId",
    "StackName",
    "logGroupName",
    "logGroupNames",
    "logGroupIdentifiers",
    "queryId",
    "EventBusName",
)


@dataclass(frozen=True)
class AwsCall:
    service: str  # botocore's service name: "sqs", "dynamodb", "secretsmanager", "events", ...
    operation: str  # the API operation: "SendMessageBatch"
    # The resource parameters of RESOURCE_PARAMETERS, and per item of the calls that act on
    # several: TransactWriteItems' [{"kind": "Update", "TableName": ...}], PutEvents'
    # [{"EventBusName": ...}] (absent: the account's default bus).
    resources: Mapping[str, Any]
    function: str | None  # POWERTOOLS_SERVICE_NAME when the call was made
    origin: str | None  # the repository file whose code made the call, relative to the root
    in_pytest: bool = True  # False: a child process (`make run` under the e2e tests)

    @property
    def key(self) -> tuple[str | None, str, str]:
        return (self.origin, self.service, self.operation)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, line: str) -> AwsCall:
        return cls(**json.loads(line))


@dataclass
class CallRecorder:
    """A botocore `provide-client-params` handler that keeps every call it sees."""

    calls: list[AwsCall] = field(default_factory=list)
    sink: Path | None = None  # also append each call to this JSONL file
    # Keep only calls made by code under these top-level directories (None: every call).
    origins: frozenset[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        origin = _origin(sys._getframe(1))
        if self.origins is not None and (
            origin is None or origin.split("/")[0] not in self.origins
        ):
            return
        call = AwsCall(
            service=str(model.service_model.service_name),
            operation=str(model.name),
            resources=resource_parameters(str(model.name), params),
            function=os.environ.get(ENV_SERVICE_NAME),
            origin=origin,
            in_pytest="pytest" in sys.modules,
        )
        with self._lock:
            self.calls.append(call)
            if self.sink is not None:
                with self.sink.open("a", encoding="utf-8") as out:
                    out.write(call.to_json() + "\n")

    def attach(self, botocore_session: Any) -> None:
        # `provide-client-params.<service>.<operation>`: before validation and serialization,
        # with the parameters as the caller passed them. Returning None changes nothing.
        botocore_session.register("provide-client-params.*.*", self)


def resource_parameters(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: params[k] for k in RESOURCE_PARAMETERS if k in params}
    if operation in {"TransactWriteItems", "TransactGetItems"}:
        kept["TransactItems"] = [
            {"kind": kind, "TableName": request.get("TableName")}
            for item in params.get("TransactItems", [])
            for kind, request in item.items()
        ]
    if operation == "PutEvents":
        kept["Entries"] = [
            {"EventBusName": entry.get("EventBusName")} for entry in params.get("Entries", [])
        ]
    return kept


def _origin(frame: Any) -> str | None:
    """The innermost frame that runs code of this repository, as a root-relative path."""
    while frame is not None:
        relative = _repository_path(frame.f_code.co_filename)
        if relative is not None:
            return relative
        frame = frame.f_back
    return None


@lru_cache(maxsize=4096)
def _repository_path(filename: str) -> str | None:
    try:
        relative = Path(filename).resolve().relative_to(REPO_ROOT)
    except ValueError:
        return None
    return (
        relative.as_posix()
        if relative.parts[:1] and relative.parts[0] in _CODE_DIRECTORIES
        else None
    )


def recording_session(recorder: CallRecorder, **session_args: Any) -> Any:
    """A boto3 session whose clients report every call to `recorder`."""
    import boto3

    session = boto3.session.Session(**session_args)
    recorder.attach(session._session)  # boto3 exposes its botocore session only privately
    return session


_PATCHED_MARK: Final = "_relay_records_aws_calls"


def record_every_session(directory: Path) -> None:
    """From now on every botocore session of this process records the calls that code in
    functions/ or tools/ makes, into `directory`/calls-<pid>.jsonl (idempotent). botocore is
    patched when something imports it, not before: a process that never uses it (or measures
    what its imports load) is left as it was."""
    loaded = sys.modules.get("botocore.session")
    if loaded is not None:
        _record_sessions(loaded.Session, directory)
    elif not any(isinstance(finder, _PatchWhenImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchWhenImported(directory))


def _record_sessions(session_class: Any, directory: Path) -> None:
    if getattr(session_class, _PATCHED_MARK, False):
        return
    directory.mkdir(parents=True, exist_ok=True)
    recorder = CallRecorder(
        sink=directory / f"calls-{os.getpid()}.jsonl", origins=frozenset({"functions", "tools"})
    )
    original_init = session_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        recorder.attach(self)

    session_class.__init__ = init
    setattr(session_class, _PATCHED_MARK, True)


class _PatchWhenImported:
    """A `sys.meta_path` finder that lets `botocore.session` load as usual, then patches it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "botocore.session":
            return None
        import importlib.util

        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            loader: Any = _PatchingLoader(spec.loader, self.directory)  # a Loader by its methods
            spec.loader = loader
        return spec


class _PatchingLoader:
    def __init__(self, loader: Any, directory: Path) -> None:
        self._loader = loader
        self._directory = directory

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _record_sessions(module.Session, self._directory)

    def __getattr__(self, name: str) -> Any:  # get_data, get_filename, ... as the real loader
        return getattr(self._loader, name)


def read_calls(directory: Path, pattern: str) -> list[AwsCall]:
    return [
        AwsCall.from_json(line)
        for path in sorted(directory.glob(pattern))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
