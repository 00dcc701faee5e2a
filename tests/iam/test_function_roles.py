"""Every AWS call the handlers make is allowed by the role they run under in the synthesized
stack, and the roles allow nothing that no call uses.

For the default stack and one with every optional feature on (reply handler, event bus, burst
window), the template's queues, table and secret are created in moto, and the real handlers run
every path that calls AWS (tests/iam/scenario.py) with the environment the template gives each
function, on botocore clients that record each call (tests/iam/recorder.py, in place of the one
session functions/adapters/aws.py builds clients from). Each recorded call becomes the IAM
permission(s) AWS authorizes it with, on the ARN of the resource it names
(tests/iam/authorization.py), plus what Lambda itself does with the role (logs, X-Ray, polling
the queue); the role's statements from the template are evaluated for each
(tests/infra/policy_evaluation.py).

The scenario's reach is checked against the code: every boto3 operation a file of functions/
calls must have been recorded from that file, so a new call in the code fails here until the
scenario makes it, and then fails if the role lacks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name

from functions.adapters import aws
from local_pipeline.fake_graph import FakeGraphApi
from tests.conftest import ACCESS_TOKEN
from tests.iam.authorization import (
    ArnNames,
    FunctionRoles,
    Need,
    NoRule,
    Permission,
    needs_of,
    permissions_for,
    refused,
    unused_grants,
)
from tests.iam.emulated_stack import EmulatedStack, deploy
from tests.iam.recorder import (
    ENV_RECORD_DIRECTORY,
    REPO_ROOT,
    AwsCall,
    CallRecorder,
    recording_session,
)
from tests.iam.scenario import Lambda, drive_every_path, secret_document
from tests.iam.source_scan import operations_called_in, services_with_clients
from tests.infra.conftest import CUSTOM_PROPS, synthesize
from tests.infra.policy_evaluation import Decision, Request, Unsupported, evaluate

pytestmark = [pytest.mark.infra, pytest.mark.integration]

FUNCTIONS_DIR = REPO_ROOT / "functions"


@dataclass(frozen=True)
class Proof:
    roles: FunctionRoles
    calls: list[AwsCall]
    needs: list[Need]

    @property
    def stack(self) -> EmulatedStack:
        return self.roles.stack


def prove(name: str, moto_endpoint: str, **props: Any) -> Proof:
    """Synthesize, create the stack's resources in moto, run the scenario with every client of
    the handlers recording."""
    template = synthesize(**props).template.to_json()
    stack = deploy(template, moto_endpoint, secret_string=secret_document(ACCESS_TOKEN))
    recorder = CallRecorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        session = recording_session(recorder)
        patch.setattr(aws, "_session", lambda: session)
        aws._client.cache_clear()  # clients built before would not record
        try:
            with FakeGraphApi(expected_token=ACCESS_TOKEN) as graph:
                drive_every_path(Lambda(stack, graph, moto_endpoint))
        finally:
            aws._client.cache_clear()  # nothing after this test gets a recording client
    if os.environ.get(ENV_RECORD_DIRECTORY):  # `make test`: the suites' calls are checked too
        sink = Path(os.environ[ENV_RECORD_DIRECTORY]) / f"scenario-functions-{name}.jsonl"
        sink.write_text("".join(call.to_json() + "\n" for call in recorder.calls), "utf-8")
    roles = FunctionRoles.of(stack)
    return Proof(roles=roles, calls=recorder.calls, needs=needs_of(recorder.calls, roles))


@pytest.fixture(scope="module")
def default_proof(moto_endpoint: str) -> Proof:
    return prove("default", moto_endpoint)


@pytest.fixture(scope="module")
def custom_proof(moto_endpoint: str) -> Proof:
    return prove("custom", moto_endpoint, **CUSTOM_PROPS)


@pytest.fixture(params=["default_proof", "custom_proof"])
def proof(request: pytest.FixtureRequest) -> Proof:
    found: Proof = request.getfixturevalue(request.param)
    return found


def describe(refusals: list[tuple[Need, Decision]]) -> str:
    return "\n".join(
        f"{need.function} needs {need.permission.action} on {need.permission.resource} "
        f"({need.because}): {decision.value}"
        for need, decision in refusals
    )


# --- the proof ---------------------------------------------------------------------------------


def test_every_call_the_handlers_make_is_allowed_by_their_role(proof: Proof) -> None:
    refusals = refused(proof.needs, proof.roles)
    assert refusals == [], "\n" + describe(refusals)


def test_the_roles_allow_nothing_that_no_call_uses(proof: Proof) -> None:
    """Least privilege: each action on each resource a role's statement names is used by a
    call of its function or by Lambda for it (X-Ray's two actions for active tracing, the log
    stream writes, the event source mapping's polling are such uses: authorization.py).
    The consumer's sqs:GetQueueUrl comes with CDK's grant for the event source mapping; the
    consumer calls it itself when QUEUE_URL is unset (the contract allows that; this stack
    always sets it), a path the scenario runs."""
    assert unused_grants(proof.needs, proof.roles) == []


def test_without_any_one_statement_of_a_role_some_call_is_refused(custom_proof: Proof) -> None:
    """Each statement is needed: taking it out of the synthesized role refuses a call. (Also
    what proves the check above would fail if the code gained a call its role lacks.)"""
    roles = custom_proof.roles
    removable = []
    for role in list(roles.roles.values()):
        for grant in role.grants:
            roles.roles[role.function] = role.without(grant)
            try:
                if not refused(custom_proof.needs, roles):
                    removable.append(grant.label)
            finally:
                roles.roles[role.function] = role
    assert removable == []


def test_the_ingest_without_its_send_statement_is_refused_its_batches(
    default_proof: Proof,
) -> None:
    roles = default_proof.roles
    ingest = roles.by_service_name("whatsapp-relay-ingest")
    send = next(g for g in ingest.grants if g.statement["Action"] == "sqs:SendMessage")
    roles.roles[ingest.function] = ingest.without(send)
    try:
        refusals = refused(default_proof.needs, roles)
    finally:
        roles.roles[ingest.function] = ingest
    assert {(n.permission.action, n.because, d) for n, d in refusals} == {
        (
            "sqs:SendMessage",
            "functions/adapters/sqs_publisher.py: sqs SendMessageBatch",
            Decision.IMPLICIT_DENY,
        )
    }


def test_each_function_made_the_calls_it_exists_for(custom_proof: Proof) -> None:
    made = {(c.function, c.service, c.operation) for c in custom_proof.calls}
    assert {
        ("whatsapp-relay-ingest", "secretsmanager", "GetSecretValue"),
        ("whatsapp-relay-ingest", "sqs", "SendMessageBatch"),
        ("whatsapp-relay-consumer", "secretsmanager", "GetSecretValue"),
        ("whatsapp-relay-consumer", "dynamodb", "UpdateItem"),
        ("whatsapp-relay-consumer", "dynamodb", "TransactWriteItems"),
        ("whatsapp-relay-consumer", "events", "PutEvents"),
        ("whatsapp-relay-consumer", "sqs", "SendMessage"),
        ("whatsapp-relay-consumer", "sqs", "ChangeMessageVisibilityBatch"),
        ("whatsapp-relay-consumer", "sqs", "GetQueueUrl"),
    } <= made


# --- the scenario reaches every call in the code ----------------------------------------------


def test_the_scan_finds_the_services_the_client_factory_builds_clients_for() -> None:
    assert services_with_clients(FUNCTIONS_DIR) >= {"sqs", "dynamodb", "secretsmanager", "events"}


def test_every_aws_call_in_the_code_was_made_by_the_scenario(
    default_proof: Proof, custom_proof: Proof
) -> None:
    in_source = operations_called_in(FUNCTIONS_DIR)
    recorded = {
        (call.origin, xform_name(call.operation))
        for call in default_proof.calls + custom_proof.calls
    }
    assert in_source, "the scan found no AWS call in functions/: it is broken"
    missing = sorted(in_source - recorded)
    assert missing == [], (
        f"calls in the code that tests/iam/scenario.py never made: {missing} - make the "
        "scenario reach them, so that their permissions are checked"
    )


# --- the rules the proof relies on -------------------------------------------------------------

NAMES = ArnNames(region="eu-west-1", account="111122223333")
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/111122223333/relay.fifo"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:111122223333:relay.fifo"
TABLE_ARN = "arn:aws:dynamodb:eu-west-1:111122223333:table/ledger"


def call(service: str, operation: str, **resources: Any) -> AwsCall:
    return AwsCall(service, operation, resources, function=None, origin=None)


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("SendMessageBatch", "sqs:SendMessage"),
        ("ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"),
        ("DeleteMessageBatch", "sqs:DeleteMessage"),
        ("SendMessage", "sqs:SendMessage"),
    ],
)
def test_sqs_batches_are_authorized_by_their_single_message_action(
    operation: str, action: str
) -> None:
    assert permissions_for(call("sqs", operation, QueueUrl=QUEUE_URL), NAMES) == [
        Permission(action, QUEUE_ARN)
    ]


def test_a_transaction_is_authorized_item_by_item() -> None:
    items = [
        {"kind": "Update", "TableName": "ledger"},
        {"kind": "Put", "TableName": "ledger"},
        {"kind": "ConditionCheck", "TableName": "other"},
    ]
    assert permissions_for(call("dynamodb", "TransactWriteItems", TransactItems=items), NAMES) == [
        Permission("dynamodb:UpdateItem", TABLE_ARN),
        Permission("dynamodb:PutItem", TABLE_ARN),
        Permission(
            "dynamodb:ConditionCheckItem", "arn:aws:dynamodb:eu-west-1:111122223333:table/other"
        ),
    ]


def test_a_message_move_reads_the_source_and_sends_to_the_destination() -> None:
    dlq_arn = "arn:aws:sqs:eu-west-1:111122223333:relay-dlq.fifo"
    found = permissions_for(
        call("sqs", "StartMessageMoveTask", SourceArn=dlq_arn, DestinationArn=QUEUE_ARN), NAMES
    )
    assert sorted(found) == sorted(
        [
            Permission("sqs:StartMessageMoveTask", dlq_arn),
            Permission("sqs:ReceiveMessage", dlq_arn),
            Permission("sqs:DeleteMessage", dlq_arn),
            Permission("sqs:GetQueueAttributes", dlq_arn),
            Permission("sqs:SendMessage", QUEUE_ARN),
        ]
    )


def test_events_are_authorized_on_each_entrys_bus() -> None:
    entries = [{"EventBusName": "crm"}, {"EventBusName": None}, {"EventBusName": "crm"}]
    assert permissions_for(call("events", "PutEvents", Entries=entries), NAMES) == [
        Permission("events:PutEvents", "arn:aws:events:eu-west-1:111122223333:event-bus/crm"),
        Permission("events:PutEvents", "arn:aws:events:eu-west-1:111122223333:event-bus/default"),
    ]


@pytest.mark.parametrize(
    "unmapped",
    [
        call("s3", "PutObject", Bucket="b"),  # a service without a rule
        call("secretsmanager", "GetSecretValue", SecretId="by-name"),  # not the ARN IAM judges
        call("sqs", "ListQueues"),  # no resource named
    ],
)
def test_a_call_without_a_rule_fails_instead_of_being_guessed(unmapped: AwsCall) -> None:
    with pytest.raises(NoRule):
        permissions_for(unmapped, NAMES)


def test_identity_policies_are_judged_without_a_principal_and_refuse_one() -> None:
    statement = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE_ARN}
    request = Request(principal={}, action="sqs:SendMessage", resource=QUEUE_ARN)
    assert evaluate({"Statement": [statement]}, request, identity_based=True) is Decision.ALLOW
    other = Request(principal={}, action="sqs:SendMessage", resource=QUEUE_ARN + "-other")
    assert evaluate({"Statement": [statement]}, other, identity_based=True) is (
        Decision.IMPLICIT_DENY
    )
    with pytest.raises(Unsupported):
        evaluate({"Statement": [{**statement, "Principal": "*"}]}, request, identity_based=True)
