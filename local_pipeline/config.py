"""Settings of the local pipeline, read once from the environment, with documented defaults.

| variable | default | meaning |
|---|---|---|
| `PORT` | `3000` | port of the webhook endpoint on 127.0.0.1 (`0` picks a free one) |
| `WHATSAPP_APP_SECRET` | `local-app-secret` | app secret the webhooks are signed with |
| `WHATSAPP_VERIFY_TOKEN` | `local-verify-token` | verify token of the GET handshake |
| `WHATSAPP_ACCESS_TOKEN` | `local-access-token` | bearer token sent to the Graph API |
| `GRAPH_API_URL` | unset: the fake Graph API | a real Graph API (`https://graph.facebook.com`) |
| `GRAPH_API_VERSION` | the consumer's default | Graph API version in the request path |
| `FAKE_GRAPH_PORT` | `0` (a free port) | port of the fake Graph API on 127.0.0.1 |
| `LOG_LEVEL` | `INFO` | level of the handlers' JSON logs (written under `.local/logs/`) |
| `LOCAL_STATE_DIR` | `.local` | where the logs and `pipeline.json` (where `make run` is) go |
| `FAKE_GRAPH_STATUSES` | `sent,delivered,read` | statuses the fake sends back per reply |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from functions.common.names import (
    DEFAULT_GRAPH_API_VERSION,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_LOG_LEVEL,
)

ENV_PORT = "PORT"
ENV_APP_SECRET = "WHATSAPP_APP_SECRET"  # noqa: S105 - a variable name
ENV_VERIFY_TOKEN = "WHATSAPP_VERIFY_TOKEN"  # noqa: S105 - a variable name
ENV_ACCESS_TOKEN = "WHATSAPP_ACCESS_TOKEN"  # noqa: S105 - a variable name
ENV_FAKE_GRAPH_PORT = "FAKE_GRAPH_PORT"
ENV_STATE_DIR = "LOCAL_STATE_DIR"
ENV_FAKE_GRAPH_STATUSES = "FAKE_GRAPH_STATUSES"
FAKE_STATUS_NAMES = frozenset({"sent", "delivered", "read", "played", "failed"})
DEFAULT_FAKE_STATUSES = ("sent", "delivered", "read")

DEFAULT_PORT = 3000
# Well-known, local-only defaults: they protect nothing and are printed on start.
DEFAULT_APP_SECRET = "local-app-secret"  # noqa: S105
DEFAULT_VERIFY_TOKEN = "local-verify-token"  # noqa: S105
DEFAULT_ACCESS_TOKEN = "local-access-token"  # noqa: S105
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_STATE_DIR = Path(".local")

# The emulated account. moto accepts any credentials; these can never reach AWS because every
# client is pointed at moto's server on loopback.
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
}
# Variables that could send a boto3 client to a real account; removed from the handlers' env.
AWS_ENV_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def local_function_arn(function_name: str) -> str:
    """The ARN a function of the emulated account would have (for the stand-in context)."""
    return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{function_name}"


class LocalConfigError(ValueError):
    """A local setting is malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class LocalConfig:
    port: int = DEFAULT_PORT
    app_secret: str = field(default=DEFAULT_APP_SECRET, repr=False)
    verify_token: str = field(default=DEFAULT_VERIFY_TOKEN, repr=False)
    access_token: str = field(default=DEFAULT_ACCESS_TOKEN, repr=False)
    graph_api_url: str | None = None  # None: start the fake Graph API
    graph_api_version: str = DEFAULT_GRAPH_API_VERSION
    fake_graph_port: int = 0
    log_level: str = DEFAULT_LOG_LEVEL
    state_dir: Path = DEFAULT_STATE_DIR
    fake_statuses: tuple[str, ...] = DEFAULT_FAKE_STATUSES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LocalConfig:
        graph_api_url = (environ.get(ENV_GRAPH_API_URL) or "").strip().rstrip("/") or None
        if graph_api_url and not graph_api_url.startswith(("http://", "https://")):
            raise LocalConfigError(f"{ENV_GRAPH_API_URL} must be an http(s) URL")
        return cls(
            port=_port(environ, ENV_PORT, DEFAULT_PORT),
            app_secret=environ.get(ENV_APP_SECRET) or DEFAULT_APP_SECRET,
            verify_token=environ.get(ENV_VERIFY_TOKEN) or DEFAULT_VERIFY_TOKEN,
            access_token=environ.get(ENV_ACCESS_TOKEN) or DEFAULT_ACCESS_TOKEN,
            graph_api_url=graph_api_url,
            graph_api_version=(
                environ.get(ENV_GRAPH_API_VERSION) or DEFAULT_GRAPH_API_VERSION
            ).strip("/"),
            fake_graph_port=_port(environ, ENV_FAKE_GRAPH_PORT, 0),
            log_level=(environ.get(ENV_LOG_LEVEL) or DEFAULT_LOG_LEVEL).upper(),
            state_dir=Path(environ.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR),
            fake_statuses=_statuses(environ),
        )

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def _statuses(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = (environ.get(ENV_FAKE_GRAPH_STATUSES) or "").strip().lower()
    if not raw:
        return DEFAULT_FAKE_STATUSES
    if raw == "none":
        return ()
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in FAKE_STATUS_NAMES]
    if unknown:
        raise LocalConfigError(
            f"{ENV_FAKE_GRAPH_STATUSES} takes statuses from {sorted(FAKE_STATUS_NAMES)} or "
            f"'none', not {unknown[0]!r}"
        )
    return names


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise LocalConfigError(f"{name} must be a port number, not {raw!r}") from None
    if not 0 <= port <= 65535:
        raise LocalConfigError(f"{name} must be between 0 and 65535, not {port}")
    return port
