"""The guard rails around the stack: cdk-nag at synth, prop validation, context parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sqs as sqs

from app import CONTEXT_KEYS, props_from_context
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
    ],
)
def test_props_refuse_values_aws_would_refuse_at_deploy(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RelayProps(code=stand_in_code(), **{field: value})  # type: ignore[arg-type]


def test_context_values_become_props() -> None:
    context = {
        "alarmEmail": "ops@example.com",
        "maxReceiveCount": "300",  # `cdk -c key=value` passes strings
        "consumerMaxConcurrency": 20,
        "graphApiVersion": "v26.0",
        "webAclArn": "",  # empty means not set
    }
    props = props_from_context(App(context=context), stand_in_code())
    assert props.alarm_email == "ops@example.com"
    assert props.max_receive_count == 300
    assert props.consumer_max_concurrency == 20
    assert props.graph_api_version == "v26.0"
    assert props.web_acl_arn is None
    assert set(CONTEXT_KEYS.values()) <= set(RelayProps.__dataclass_fields__)


def test_no_context_means_the_defaults() -> None:
    code = stand_in_code()
    assert props_from_context(App(), code) == RelayProps(code=code)
