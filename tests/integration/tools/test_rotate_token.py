"""`make rotate-token` (tools/rotate_token.py) against moto's server: the secret found through the
stack's outputs, only `accessToken` replaced, the token read from stdin and never printed."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from functions.common.names import (
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import OUTPUT_SECRET_ARN
from tests.conftest import TEST_REGION, boto_client
from tools import rotate_token

pytestmark = pytest.mark.integration

APP_SECRET = "app-secret-0123456789abcdef0123"
VERIFY_TOKEN = "verify-me-please"
OLD_TOKEN = "EAAGold0123456789abcdefghijklmnop"
NEW_TOKEN = "EAAGnew9876543210zyxwvutsrqponmlkjihgf"


class Terminal(io.StringIO):
    """A stdin that says it is a terminal (so the tool must prompt without echo)."""

    def isatty(self) -> bool:
        return True


def make_secret(aws: str, document: dict[str, Any] | str) -> str:
    secrets = boto_client("secretsmanager", aws)
    text = document if isinstance(document, str) else json.dumps(document)
    created = secrets.create_secret(Name=f"relay-{uuid.uuid4().hex[:12]}", SecretString=text)
    return str(created["ARN"])


def full_secret(aws: str) -> str:
    return make_secret(
        aws,
        {
            SECRET_KEY_APP_SECRET: APP_SECRET,
            SECRET_KEY_VERIFY_TOKEN: VERIFY_TOKEN,
            SECRET_KEY_ACCESS_TOKEN: OLD_TOKEN,
            "note": "kept as well",
        },
    )


def stack_with_secret_output(aws: str, secret_arn: str) -> str:
    name = f"relay-{uuid.uuid4().hex[:8]}"
    boto_client("cloudformation", aws).create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {OUTPUT_SECRET_ARN: {"Value": secret_arn}},
            }
        ),
    )
    return name


def stored(aws: str, secret_id: str) -> dict[str, Any]:
    value = boto_client("secretsmanager", aws).get_secret_value(SecretId=secret_id)
    return dict(json.loads(value["SecretString"]))


def versions(aws: str, secret_id: str) -> int:
    listed = boto_client("secretsmanager", aws).list_secret_version_ids(SecretId=secret_id)
    return len(listed["Versions"])


def no_prompt(_: str) -> str:
    raise AssertionError("a pipe must not be prompted")


def test_a_piped_token_replaces_only_the_access_token_of_the_stacks_secret(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed stack whose secret holds all three keys (and one more)
    secret_arn = full_secret(aws)
    stack = stack_with_secret_output(aws, secret_arn)
    out = io.StringIO()

    # When the operator pipes a new token into `make rotate-token`
    code = rotate_token.main(
        ["--stack-name", stack, "--region", TEST_REGION],
        stdin=io.StringIO(NEW_TOKEN + "\n"),
        out=out,
        prompt=no_prompt,
    )

    # Then the secret has the new token and everything else as it was, in a new version
    assert code == 0
    assert stored(aws, secret_arn) == {
        SECRET_KEY_APP_SECRET: APP_SECRET,
        SECRET_KEY_VERIFY_TOKEN: VERIFY_TOKEN,
        SECRET_KEY_ACCESS_TOKEN: NEW_TOKEN,
        "note": "kept as well",
    }
    assert versions(aws, secret_arn) == 2
    # and the report names the secret, but no value of it is printed anywhere
    printed = out.getvalue() + "".join(capsys.readouterr())
    assert secret_arn in printed
    for value in (NEW_TOKEN, OLD_TOKEN, APP_SECRET, VERIFY_TOKEN):
        assert value not in printed


def test_at_a_terminal_the_token_is_asked_for_without_echo(aws: str) -> None:
    secret_arn = full_secret(aws)
    prompts: list[str] = []

    def getpass_stub(prompt: str) -> str:  # getpass.getpass: reads the terminal without echo
        prompts.append(prompt)
        return NEW_TOKEN

    code = rotate_token.main(
        ["--secret-id", secret_arn, "--region", TEST_REGION],
        stdin=Terminal(),
        out=io.StringIO(),
        prompt=getpass_stub,
    )
    assert code == 0
    assert prompts == [rotate_token.PROMPT]
    assert stored(aws, secret_arn)[SECRET_KEY_ACCESS_TOKEN] == NEW_TOKEN


def test_the_default_prompt_is_getpass() -> None:
    import getpass
    import inspect

    assert inspect.signature(rotate_token.main).parameters["prompt"].default is getpass.getpass
    assert inspect.signature(rotate_token.read_token).parameters["prompt"].default is (
        getpass.getpass
    )


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("", "no access token on standard input"),
        ("\n  \n", "no access token on standard input"),
        ("EAAG new token with spaces in it", "does not look like an access token"),
        ("short", "does not look like an access token"),
    ],
)
def test_what_is_not_a_token_is_refused_and_nothing_is_written(
    aws: str, capsys: pytest.CaptureFixture[str], given: str, why: str
) -> None:
    secret_arn = full_secret(aws)
    code = rotate_token.main(
        ["--secret-id", secret_arn, "--region", TEST_REGION],
        stdin=io.StringIO(given),
        out=io.StringIO(),
        prompt=no_prompt,
    )
    err = capsys.readouterr().err
    assert code == 1
    assert why in err
    if given.strip():
        assert given.strip() not in err  # not echoed back either
    assert versions(aws, secret_arn) == 1
    assert stored(aws, secret_arn)[SECRET_KEY_ACCESS_TOKEN] == OLD_TOKEN


@pytest.mark.parametrize(
    "document",
    [
        {SECRET_KEY_ACCESS_TOKEN: OLD_TOKEN},  # the other two keys were never filled
        {SECRET_KEY_APP_SECRET: APP_SECRET, SECRET_KEY_VERIFY_TOKEN: ""},
        "not json",
        '["a", "list"]',
    ],
)
def test_a_secret_without_the_other_keys_is_left_alone(
    aws: str, capsys: pytest.CaptureFixture[str], document: dict[str, Any] | str
) -> None:
    secret_arn = make_secret(aws, document)
    code = rotate_token.main(
        ["--secret-id", secret_arn, "--region", TEST_REGION],
        stdin=io.StringIO(NEW_TOKEN),
        out=io.StringIO(),
        prompt=no_prompt,
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing was written" in err
    assert NEW_TOKEN not in err
    assert versions(aws, secret_arn) == 1


def test_the_same_token_again_writes_nothing(aws: str) -> None:
    secret_arn = full_secret(aws)
    out = io.StringIO()
    code = rotate_token.main(
        ["--secret-id", secret_arn, "--region", TEST_REGION],
        stdin=io.StringIO(OLD_TOKEN),
        out=out,
        prompt=no_prompt,
    )
    assert code == 0
    assert "nothing written" in out.getvalue()
    assert versions(aws, secret_arn) == 1


def test_a_stack_without_the_output_or_no_stack_is_an_error(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"other-{uuid.uuid4().hex[:8]}"
    boto_client("cloudformation", aws).create_stack(
        StackName=name,
        TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}),
    )
    for stack, why in (
        (name, f"error: stack {name} has no {OUTPUT_SECRET_ARN} output"),
        ("no-such-stack", "error: An error occurred (ValidationError)"),
    ):
        code = rotate_token.main(
            ["--stack-name", stack, "--region", TEST_REGION],
            stdin=io.StringIO(NEW_TOKEN),
            out=io.StringIO(),
            prompt=no_prompt,
        )
        err = capsys.readouterr().err
        assert code == 1
        assert err.startswith(why), err
        assert NEW_TOKEN not in err
