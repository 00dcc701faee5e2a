"""The guard rails around the stack: cdk-nag at synth, prop validation, context checking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from app import relay_props
from infra.bundling import REPO_ROOT
from infra.constants import DEFAULT_REPLY_RULES_FILE
from infra.context import CONTEXT_KEYS, ContextError, settings_from_context
from infra.nag import run_aws_solutions_checks
from infra.stack import RelayProps
from tests.infra.conftest import Synthesized, stand_in_code

pytestmark = pytest.mark.infra


def test_both_configurations_are_clean_under_the_aws_solutions_pack(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    """The fixtures synthesize with the pack registered exactly as app.py does, so reaching this
    test means no finding is left unacknowledged - with and without WAF and the e-mail
    subscription. The acknowledgements are load-bearing: the API is open to Meta on purpose."""
    for synthesized in (default_stack, custom_stack):
        methods = synthesized.resources("AWS::ApiGateway::Method").values()
        assert {m["Properties"]["AuthorizationType"] for m in methods} == {"NONE"}


def test_an_unacknowledged_finding_fails_synth(tmp_path: Path) -> None:
    # Given a stack with a queue that breaks AwsSolutions rules (no DLQ, no TLS enforcement)
    app = App(outdir=str(tmp_path))
    sqs.Queue(Stack(app, "Careless"), "Queue")
    run_aws_solutions_checks(app)

    # When it is synthesized, then synth fails and the report names the rules
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("consumer_batch_size", 11),
        ("consumer_batch_size", 0),
        ("consumer_max_concurrency", 1),
        ("consumer_max_concurrency", 1001),
        ("max_receive_count", 0),
        ("max_receive_count", 99),  # below 10 attempts x 10 records: held-back records would go
        ("max_attempts", 0),
        ("api_rate_limit_per_second", 0),
        ("log_level", "VERBOSE"),
        ("log_retention_days", 31),
        ("alarm_email", "not-an-email"),
    ],
)
def test_props_refuse_values_aws_would_refuse_at_deploy(field: str, value: object) -> None:
    props: dict[str, object] = {"alarm_email": None, field: value}
    with pytest.raises(ValueError, match=field):
        RelayProps(code=stand_in_code(), **props)  # type: ignore[arg-type]


def test_props_want_the_alarm_recipient_chosen_explicitly() -> None:
    with pytest.raises(TypeError, match="alarm_email"):
        RelayProps(code=stand_in_code())  # type: ignore[call-arg]


# --- context: every key known, every value checked, one line ---------------------------------


def stand_in(_: Sequence[str]) -> lambda_.Code:
    return stand_in_code()


def test_context_values_become_props() -> None:
    context = {
        "alarmEmail": "ops@example.com",
        "maxReceiveCount": "300",  # `cdk -c key=value` passes strings
        "maxAttempts": "12",
        "consumerMaxConcurrency": 20,  # cdk.json may hold numbers
        "graphApiVersion": "v26.0",
        "logLevel": "debug",
        "logRetentionDays": "90",
        "dataRemovalPolicy": "destroy",
        "replyRulesFile": "tests/infra/reply_rules/custom.json",
        "webAclArn": "",  # empty means not set
        "@aws-cdk/core:checkSecretUsage": True,  # CDK's own keys are CDK's business
    }
    props = relay_props(context, stand_in)
    assert props.alarm_email == "ops@example.com"
    assert props.max_receive_count == 300
    assert props.max_attempts == 12
    assert props.consumer_max_concurrency == 20
    assert props.graph_api_version == "v26.0"
    assert props.log_level == "DEBUG"
    assert props.log_retention_days == 90
    assert props.retain_data is False
    assert props.reply_rules_file == "tests/infra/reply_rules/custom.json"
    assert props.web_acl_arn is None
    assert {key.field for key in CONTEXT_KEYS} <= set(RelayProps.__dataclass_fields__)


def test_none_is_the_explicit_choice_of_no_alarm_recipient() -> None:
    props = relay_props({"alarmEmail": "none"}, stand_in)
    code = props.code
    assert props == RelayProps(code=code, alarm_email=None)
    assert props.retain_data is True
    assert props.reply_rules_file == DEFAULT_REPLY_RULES_FILE


def test_the_asset_is_asked_to_carry_the_chosen_rules_file() -> None:
    asked: list[Sequence[str]] = []

    def code_for(extra_files: Sequence[str]) -> lambda_.Code:
        asked.append(extra_files)
        return stand_in_code()

    relay_props({"alarmEmail": "none"}, code_for)
    relay_props(
        {"alarmEmail": "none", "replyRulesFile": "./tests/infra/reply_rules/custom.json"},
        code_for,
    )
    assert asked == [[DEFAULT_REPLY_RULES_FILE], ["tests/infra/reply_rules/custom.json"]]


def test_without_an_alarm_recipient_synth_stops_and_says_how_to_choose() -> None:
    with pytest.raises(ContextError) as raised:
        settings_from_context({})
    assert str(raised.value) == (
        "context key alarmEmail is required: an e-mail address for the alarms "
        "(-c alarmEmail=ops@example.com), or -c alarmEmail=none to deploy with nobody notified"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("alarmEmail", "not-an-email", "an e-mail address"),
        ("alarmEmail", "ops@example.com, dev@example.com", "an e-mail address"),
        ("alarmEmail", "ops@localhost", "an e-mail address"),
        ("maxReceiveCount", "ten", "a whole number from 1 to 1000"),
        ("maxReceiveCount", "0", "a whole number from 1 to 1000"),
        ("maxReceiveCount", "2.5", "a whole number from 1 to 1000"),
        ("maxReceiveCount", True, "a whole number from 1 to 1000"),
        ("consumerMaxConcurrency", "1", "a whole number from 2 to 1000"),
        ("consumerMaxConcurrency", "-5", "a whole number from 2 to 1000"),
        ("apiRateLimitPerSecond", "0", "a whole number, at least 1"),
        ("apiBurstLimit", "lots", "a whole number, at least 1"),
        ("badSignatureAlarmCount", "0", "a whole number, at least 1"),
        ("oldestMessageAlarmSeconds", "30", "a whole number from 60 to"),
        ("oldestMessageAlarmSeconds", "999999", "a whole number from 60 to"),
        ("logRetentionDays", "31", "one of 1, 3, 7, 14, 30, 60, 90, 180, 365 (days)"),
        ("logLevel", "VERBOSE", "one of DEBUG, INFO, WARNING, ERROR"),
        ("graphApiVersion", "25", "a Graph API version like v25.0"),
        ("webAclArn", "arn:aws:wafv2:eu-west-1:123:global/webacl/x/y", "regional WAFv2 web ACL"),
        ("dataRemovalPolicy", "delete", "retain (keep the queues"),
        ("replyRulesFile", "no/such/rules.json", "is not a file"),
        ("replyRulesFile", "/etc/hostname", "outside the repository"),
        ("replyRulesFile", "../rules.json", "outside the repository"),
    ],
)
def test_a_malformed_value_names_its_key_and_what_it_takes(
    key: str, value: object, expected: str
) -> None:
    context = {"alarmEmail": "none", key: value}
    with pytest.raises(ContextError) as raised:
        settings_from_context(context)
    message = str(raised.value)
    assert message.startswith(f"context key {key}: expected ")
    assert expected in message
    assert f"got {value!r}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("alarmEmial", "unknown context key alarmEmial (did you mean alarmEmail?)"),
        ("maxRecieveCount", "unknown context key maxRecieveCount (did you mean maxReceiveCount?)"),
        ("colour", "unknown context key colour: this app takes alarmEmail, webAclArn, "),
    ],
)
def test_an_unknown_key_is_refused_with_the_likely_one(key: str, message: str) -> None:
    with pytest.raises(ContextError) as raised:
        settings_from_context({"alarmEmail": "none", key: "x"})
    assert str(raised.value).startswith(message)


def test_every_problem_is_on_the_one_line() -> None:
    with pytest.raises(ContextError) as raised:
        settings_from_context({"alarmEmial": "ops@example.com", "maxReceiveCount": "ten"})
    message = str(raised.value)
    assert "\n" not in message
    assert "alarmEmial" in message
    assert "context key alarmEmail is required" in message
    assert "context key maxReceiveCount: expected" in message


@pytest.mark.parametrize(
    "key",
    [
        "@aws-cdk/core:newStyleStackSynthesis",  # feature flags (cdk.json)
        "aws:cdk:enable-path-metadata",  # what the CLI passes at every synth
        "aws:cdk:bundling-stacks",
        "availability-zones:account=123456789012:region=eu-west-1",  # a lookup cache entry
        "acknowledged-issue-numbers",  # `cdk acknowledge`
    ],
)
def test_cdk_own_keys_are_left_to_cdk(key: str) -> None:
    assert settings_from_context({"alarmEmail": "none", key: ["x"]}) == {"alarm_email": None}


def test_the_keys_the_cli_really_passes_are_all_accepted() -> None:
    """The context `cdk synth` handed the app on this machine (CLI 2.1148, cdk.json's flags)."""
    passed = json.loads((REPO_ROOT / "cdk.json").read_text())["context"] | {
        "aws:cdk:enable-path-metadata": True,
        "aws:cdk:enable-asset-metadata": True,
        "aws:cdk:disable-version-reporting": True,
        "aws:cdk:bundling-stacks": ["**"],
        "@aws-cdk/core:failSynthOnValidationErrors": False,
        "alarmEmail": "none",
    }
    assert settings_from_context(passed) == {"alarm_email": None}


# --- the app as the CDK CLI runs it: one line on stderr, exit status 1 ------------------------


def run_app(context: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python app.py` with the context passed the way the CDK CLI passes it."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "cdk.out"),
    }
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("context", "line"),
    [
        (
            {"alarmEmial": "ops@example.com"},
            "error: unknown context key alarmEmial (did you mean alarmEmail?); context key "
            "alarmEmail is required: ",
        ),
        (
            {"alarmEmail": "none", "maxReceiveCount": "ten"},
            "error: context key maxReceiveCount: expected a whole number from 1 to 1000, got 'ten'",
        ),
        (
            {"alarmEmail": "not-an-email"},
            "error: context key alarmEmail: expected an e-mail address for the alarms",
        ),
        (
            {"alarmEmail": "none", "replyRulesFile": "tests/infra/reply_rules/broken_rule.json"},
            "error: reply rules tests/infra/reply_rules/broken_rule.json: rule 'opening-hours': "
            "`match` needs types, keywords or replyIds",
        ),
    ],
)
def test_the_app_stops_with_one_line_and_no_traceback(
    context: dict[str, object], line: str, tmp_path: Path
) -> None:
    result = run_app(context, tmp_path)
    assert result.returncode == 1
    lines = [text for text in result.stderr.splitlines() if text.strip()]
    # jsii may print its Node version banner; what the app says is exactly one line
    ours = [text for text in lines if text.startswith("error:")]
    assert len(ours) == 1, result.stderr
    assert ours[0].startswith(line), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cdk.out" / "manifest.json").exists()
