"""Which AWS operations the code of a directory calls, read from its source: a method call whose
name is an operation (boto3's snake_case) of a service the same code builds clients for.

It finds `self._sqs.send_message_batch(...)` and `sqs.get_queue_url(...)`; the services are the
string literals passed to a function named `client` or `*_client`
(`client("sqs", limits)` in functions/adapters/aws.py, `session.client("logs")` in tools/).
Calls a library makes for the code (Powertools' SecretsProvider reading a secret) are not in the
source: the recorded scenarios see those.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.iam.recorder import REPO_ROOT


def _calls(directory: Path) -> Iterator[tuple[Path, ast.Call]]:
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                yield path, node


def _name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def services_with_clients(directory: Path) -> set[str]:
    services = set()
    for _, node in _calls(directory):
        name = _name(node)
        if (
            name is not None
            and (name == "client" or name.endswith("_client"))
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            services.add(node.args[0].value)
    return services


def operations_called_in(directory: Path) -> set[tuple[str, str]]:
    """(repository-relative file, snake_case operation) for each AWS call in the source."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    operations = {
        xform_name(name)
        for service in services_with_clients(directory)
        for name in session.get_service_model(service).operation_names
    }
    return {
        (path.relative_to(REPO_ROOT).as_posix(), name)
        for path, node in _calls(directory)
        if isinstance(node.func, ast.Attribute) and (name := node.func.attr) in operations
    }
