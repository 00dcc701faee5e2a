"""Put a new WhatsApp access token into the relay's secret, keeping the other two keys.

    make rotate-token                      # asks for the token without echoing it
    pbpaste | make rotate-token            # or any pipe: the token is read from standard input
    python -m tools.rotate_token [--stack-name NAME | --secret-id ID] [--region REGION]

The secret is found through the stack's `SecretArn` output unless `--secret-id` names it. The
token is read from standard input only (never an argument, which shell history and `ps` would
keep), without echo when that is a terminal, and is never printed. The secret's JSON keeps
`appSecret`, `verifyToken` and any other key as they are; only `accessToken` changes, written as
a new version with `PutSecretValue`. The functions pick it up within their secret cache's age
(5 minutes), and the consumer at once after Meta answers 190 to the old one.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import OUTPUT_SECRET_ARN, STACK_NAME
from tools.stack_outputs import MissingOutput, required_output

KEPT_KEYS = (SECRET_KEY_APP_SECRET, SECRET_KEY_VERIFY_TOKEN)
PROMPT = "New WhatsApp access token (input is not shown): "
# Meta's access tokens are long runs of letters and digits; this only refuses what is surely not
# one (a blank line, a pasted sentence), without echoing it back.
MIN_TOKEN_LENGTH = 20


class RotationError(Exception):
    """Something the operator has to fix; the message never contains a secret value."""


@dataclass(frozen=True, slots=True)
class Rotation:
    secret_id: str
    version_id: str | None  # None: the secret already held this token, nothing was written


def read_token(stdin: TextIO, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """The token from a terminal (no echo) or from a pipe, stripped of surrounding whitespace."""
    raw = prompt(PROMPT) if stdin.isatty() else stdin.read()
    token = raw.strip()
    if not token:
        raise RotationError("no access token on standard input")
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or any(c.isspace() for c in token):
        raise RotationError(
            f"that does not look like an access token (expected one line of at least "
            f"{MIN_TOKEN_LENGTH} letters and digits, no spaces); nothing was written"
        )
    return token


def rotate_access_token(secrets: Any, secret_id: str, token: str) -> Rotation:
    """Replace `accessToken` in the secret's JSON and keep everything else."""
    current = secrets.get_secret_value(SecretId=secret_id)
    try:
        document = json.loads(current.get("SecretString") or "")
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RotationError(f"secret {secret_id} does not hold a JSON object; nothing was written")
    missing = [key for key in KEPT_KEYS if not document.get(key)]
    if missing:
        raise RotationError(
            f"secret {secret_id} lacks {', '.join(missing)}: fill all three keys first "
            "(docs/deploy.md, step 3); nothing was written"
        )
    arn = str(current.get("ARN", secret_id))
    if document.get(SECRET_KEY_ACCESS_TOKEN) == token:
        return Rotation(secret_id=arn, version_id=None)
    document[SECRET_KEY_ACCESS_TOKEN] = token
    written = secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(document))
    return Rotation(secret_id=arn, version_id=str(written["VersionId"]))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.rotate_token", description=__doc__.split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack-name", default=STACK_NAME, help="find the secret in its outputs")
    where.add_argument("--secret-id", help="the secret's name or ARN (instead of the stack)")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    args = _parser().parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    try:
        token = read_token(stdin, prompt)
        secret_id = args.secret_id or required_output(
            session.client("cloudformation"), args.stack_name, OUTPUT_SECRET_ARN
        )
        rotation = rotate_access_token(session.client("secretsmanager"), secret_id, token)
    except (RotationError, MissingOutput, ClientError, BotoCoreError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    if rotation.version_id is None:
        out.write(f"{rotation.secret_id} already holds this access token: nothing written.\n")
    else:
        out.write(
            f"accessToken replaced in {rotation.secret_id} (version {rotation.version_id}); "
            f"{' and '.join(KEPT_KEYS)} kept. The functions use it within 5 minutes, the "
            "consumer at once if Meta refuses the old one (190).\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
