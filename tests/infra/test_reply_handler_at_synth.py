"""`-c replyHandler=module.path:function`: found in the repository at synth without importing
it, shipped in the asset beside functions/, named to the consumer by REPLY_HANDLER."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_

from app import relay_props
from functions.common.names import ENV_BURST_WINDOW_SECONDS, ENV_REPLY_HANDLER
from infra.constants import CONSUMER_HANDLER, DEFAULT_REPLY_RULES_FILE
from infra.context import ContextError, settings_from_context
from infra.reply_handler_check import ReplyHandlerSpecError, locate_handler
from infra.stack import RelayProps
from tests.infra.conftest import CUSTOM_PROPS, Synthesized, stand_in_code

pytestmark = pytest.mark.infra


def test_the_shipped_examples_are_found_with_their_package_and_data() -> None:
    found = locate_handler("examples.order_status:handle")

    assert found.module_file == "examples/order_status.py"
    assert set(found.files) >= {
        "examples/__init__.py",
        "examples/echo.py",
        "examples/order_status.py",
        "examples/orders.json",  # a data file the handler reads beside its code
    }
    assert not [f for f in found.files if "__pycache__" in f or f.endswith(".pyc")]


def test_code_under_functions_needs_nothing_extra() -> None:
    assert locate_handler("functions.handler_kit:text").files == ()


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "source",
    [
        "def handle(event):\n    return None\n",
        "from bot.impl import reply as handle\n",
        "handle = make_handler()\n",
        "handle: object = make_handler()\n",
    ],
)
def test_a_function_defined_or_bound_at_the_top_level_is_accepted(
    tmp_path: Path, source: str
) -> None:
    root = _repo(tmp_path, {"bot/__init__.py": "", "bot/replies.py": source})

    found = locate_handler("bot.replies:handle", root)

    assert found.files == ("bot/__init__.py", "bot/replies.py")


def test_a_module_at_the_repository_root_ships_alone(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"mybot.py": "def handle(event):\n    return None\n"})

    assert locate_handler("mybot:handle", root).files == ("mybot.py",)


@pytest.mark.parametrize(
    ("spec", "files", "says"),
    [
        ("bot.replies", {}, "expected module.path:function"),
        ("bot/replies:handle", {}, "expected module.path:function"),
        ("bot.replies:handle", {}, "no bot/replies.py or bot/replies/__init__.py"),
        ("bot:handle", {"bot.py": "def other(event): ...\n"}, "bot.py defines no handle"),
        ("bot:handle", {"bot.py": "async def handle(event): ...\n"}, "is `async def`"),
        ("bot:handle", {"bot.py": "def handle(event)\n"}, "cannot read it"),
        ("bot:handle", {"bot.py": "def outer():\n    def handle(e): ...\n"}, "defines no"),
    ],
)
def test_a_handler_that_is_not_there_stops_synth_saying_why(
    tmp_path: Path, spec: str, files: dict[str, str], says: str
) -> None:
    root = _repo(tmp_path, files)

    with pytest.raises(ReplyHandlerSpecError) as raised:
        locate_handler(spec, root)

    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_context_key_is_checked_and_names_itself() -> None:
    assert (
        settings_from_context({"alarmEmail": "none", "replyHandler": "examples.echo:handle"})[
            "reply_handler"
        ]
        == "examples.echo:handle"
    )
    with pytest.raises(ContextError) as raised:
        settings_from_context({"alarmEmail": "none", "replyHandler": "examples.echo:nope"})
    message = str(raised.value)
    assert message.startswith("context key replyHandler: expected module.path:function")
    assert "echo.py defines no nope" in message


def test_the_asset_is_asked_to_carry_the_handler_package() -> None:
    asked: list[Sequence[str]] = []

    def code_for(extra_files: Sequence[str]) -> lambda_.Code:
        asked.append(extra_files)
        return stand_in_code()

    props = relay_props(
        {"alarmEmail": "none", "replyHandler": "examples.order_status:handle"}, code_for
    )

    assert props.reply_handler == "examples.order_status:handle"
    (files,) = asked
    assert files[0] == DEFAULT_REPLY_RULES_FILE
    assert "examples/order_status.py" in files
    assert "examples/orders.json" in files


def test_props_refuse_a_missing_handler() -> None:
    with pytest.raises(ReplyHandlerSpecError, match="defines no nope"):
        RelayProps(code=stand_in_code(), alarm_email=None, reply_handler="examples.echo:nope")


def test_the_consumer_is_told_the_handler_only_when_there_is_one(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    def consumer_env(s: Synthesized) -> dict[str, str]:
        _, consumer = s.one("AWS::Lambda::Function", {"Handler": CONSUMER_HANDLER})
        variables: dict[str, str] = consumer["Properties"]["Environment"]["Variables"]
        return variables

    assert ENV_REPLY_HANDLER not in consumer_env(default_stack)
    assert consumer_env(custom_stack)[ENV_REPLY_HANDLER] == CUSTOM_PROPS["reply_handler"]


def test_a_burst_window_reaches_the_consumer_only_when_set(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    def consumer_env(s: Synthesized) -> dict[str, str]:
        _, consumer = s.one("AWS::Lambda::Function", {"Handler": CONSUMER_HANDLER})
        variables: dict[str, str] = consumer["Properties"]["Environment"]["Variables"]
        return variables

    assert ENV_BURST_WINDOW_SECONDS not in consumer_env(default_stack)
    assert consumer_env(custom_stack)[ENV_BURST_WINDOW_SECONDS] == "8"
    assert (
        settings_from_context({"alarmEmail": "none", "burstWindowSeconds": "15"})[
            "burst_window_seconds"
        ]
        == 15
    )
    with pytest.raises(ContextError, match="a whole number from 0 to 120"):
        settings_from_context({"alarmEmail": "none", "burstWindowSeconds": "600"})
