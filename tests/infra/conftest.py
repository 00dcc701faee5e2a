"""One synthesized template per configuration and xdist worker (synth is the slow part): the
default stack (nobody notified of alarms, data retained, the shipped reply rules), and one with
every prop changed, to prove each prop reaches the template."""

from __future__ import annotations

import os

# jsii's Node 20 end-of-life banner, silenced on purpose ("Node 20 banners and CDK notices silenced"
# in docs/decisions.md) also when pytest runs outside `make`. Must be set before aws_cdk starts
# its Node process.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.bundling import REPO_ROOT
from infra.constants import FUNCTIONS_PACKAGE_DIR, STACK_NAME
from infra.nag import run_aws_solutions_checks
from infra.stack import RelayProps, WhatsAppRelayStack

CUSTOM_PROPS: dict[str, Any] = {
    "api_rate_limit_per_second": 123,
    "api_burst_limit": 45,
    "max_receive_count": 40,
    "max_attempts": 4,
    "consumer_max_concurrency": 7,
    "consumer_batch_size": 5,
    "graph_api_url": "https://graph.example.test",
    "graph_api_version": "v26.0",
    "metrics_namespace": "RelayStaging",
    "log_level": "DEBUG",
    "log_retention_days": 90,
    "oldest_message_alarm_seconds": 600,
    "bad_signature_alarm_count": 7,
    "alarm_email": "ops@example.com",
    "web_acl_arn": "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/relay/abc",
    "retain_data": False,
    "reply_rules_file": "tests/infra/reply_rules/custom.json",
    "reply_handler": "examples.order_status:handle",
    "event_bus_name": "crm-events",
    "event_detail": "full",
    "burst_window_seconds": 8,
}


def stand_in_code() -> lambda_.Code:
    """The functions/ package as-is: template tests need an asset, not the pip-bundled one
    (that one is built by `make synth` and checked in test_bundling.py)."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / FUNCTIONS_PACKAGE_DIR), exclude=["**/__pycache__", "*.pyc"]
    )


@dataclass(frozen=True)
class Synthesized:
    stack: WhatsAppRelayStack
    template: Template

    def resources(self, type_: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
        found = self.template.find_resources(type_, {"Properties": props} if props else None)
        return dict(found)

    def one(self, type_: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_, props)
        assert len(found) == 1, f"expected one {type_} matching {props}, found {list(found)}"
        return next(iter(found.items()))

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))


def synthesize(**props: Any) -> Synthesized:
    """Synthesize as app.py does, cdk-nag included: `Template.from_stack` runs the AwsSolutions
    pack and raises on any finding left without an acknowledgement (one synth serves both).
    Without `alarm_email`, the stack is one nobody is notified by (alarmEmail=none)."""
    app = App()
    props.setdefault("alarm_email", None)
    stack = WhatsAppRelayStack(app, STACK_NAME, props=RelayProps(code=stand_in_code(), **props))
    run_aws_solutions_checks(app)
    return Synthesized(stack=stack, template=Template.from_stack(stack))


@pytest.fixture(scope="session")
def default_stack() -> Synthesized:
    return synthesize()


@pytest.fixture(scope="session")
def custom_stack() -> Synthesized:
    return synthesize(**CUSTOM_PROPS)
