"""What the template promises at run time: routes, redrive, event source, IAM, env, encryption.

Assertions are on behaviour-bearing properties (who may do what to which resource, what the
queue does with a failing message), read from the synthesized CloudFormation template.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from functions.common.names import (
    CONSUMER_SERVICE,
    DEFAULT_GRAPH_API_URL,
    DEFAULT_GRAPH_API_VERSION,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_METRICS_NAMESPACE,
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_GRAPH_API_URL,
    ENV_GRAPH_API_VERSION,
    ENV_IDEMPOTENCY_TABLE,
    ENV_LOG_LEVEL,
    ENV_MAX_ATTEMPTS,
    ENV_METRICS_NAMESPACE,
    ENV_QUEUE_URL,
    ENV_REPLY_RULES_PATH,
    ENV_SECRET_ID,
    ENV_SERVICE_NAME,
    ENV_STATUS_QUEUE_URL,
    INGEST_SERVICE,
    SECRET_KEY_ACCESS_TOKEN,
    SECRET_KEY_APP_SECRET,
    SECRET_KEY_VERIFY_TOKEN,
)
from infra.constants import (
    CONSUMER_HANDLER,
    CONSUMER_MEMORY_MB,
    CONSUMER_TIMEOUT_SECONDS,
    DEFAULT_API_BURST_LIMIT,
    DEFAULT_API_RATE_LIMIT_PER_SECOND,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_REPLY_RULES_FILE,
    DLQ_RETENTION_DAYS,
    IDEMPOTENCY_PARTITION_KEY,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    INGEST_HANDLER,
    INGEST_MEMORY_MB,
    INGEST_TIMEOUT_SECONDS,
    LAMBDA_PYTHON_VERSION,
    LAMBDA_TASK_ROOT,
    OUTPUT_ACCESS_LOG_GROUP,
    OUTPUT_ALARM_RECIPIENT,
    OUTPUT_ALARM_TOPIC_ARN,
    OUTPUT_CONSUMER_LOG_GROUP,
    OUTPUT_DASHBOARD_URL,
    OUTPUT_DLQ_URL,
    OUTPUT_INGEST_LOG_GROUP,
    OUTPUT_QUEUE_URL,
    OUTPUT_SECRET_ARN,
    OUTPUT_STATUS_DLQ_URL,
    OUTPUT_STATUS_QUEUE_URL,
    OUTPUT_TABLE_NAME,
    OUTPUT_WEBHOOK_URL,
    STATUS_BATCH_SIZE,
    STATUS_MAX_CONCURRENCY,
    WEBHOOK_PATH,
)
from tests.infra.conftest import CUSTOM_PROPS, Synthesized

pytestmark = pytest.mark.infra

DAY_SECONDS = 86_400


def function(s: Synthesized, handler: str) -> tuple[str, dict[str, Any]]:
    return s.one("AWS::Lambda::Function", {"Handler": handler})


def role_statements(s: Synthesized, handler: str) -> list[dict[str, Any]]:
    """Every IAM statement attached to the role of the function with this handler."""
    _, fn = function(s, handler)
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    role = s.template.to_json()["Resources"][role_id]
    assert not role["Properties"].get("ManagedPolicyArns"), "no AWS managed policies"
    statements: list[dict[str, Any]] = []
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    statements += [
        statement
        for inline in role["Properties"].get("Policies", [])
        for statement in inline["PolicyDocument"]["Statement"]
    ]
    return statements


def grants(s: Synthesized, handler: str) -> dict[str, set[str]]:
    """action -> the resources it is allowed on (as JSON strings of the CFN expressions)."""
    allowed: dict[str, set[str]] = {}
    for statement in role_statements(s, handler):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in resources if isinstance(resources, list) else [resources]:
                allowed.setdefault(action, set()).add(json.dumps(resource, sort_keys=True))
    return allowed


def arn_of(logical_id: str) -> str:
    return json.dumps({"Fn::GetAtt": [logical_id, "Arn"]}, sort_keys=True)


def ref(logical_id: str) -> str:
    return json.dumps({"Ref": logical_id}, sort_keys=True)


def inbound_queue(s: Synthesized) -> tuple[str, dict[str, Any]]:
    return s.one("AWS::SQS::Queue", {"RedrivePolicy": Match.any_value(), "FifoQueue": True})


def status_queue(s: Synthesized) -> tuple[str, dict[str, Any]]:
    return s.one(
        "AWS::SQS::Queue", {"RedrivePolicy": Match.any_value(), "FifoQueue": Match.absent()}
    )


def dlq_of(queue: dict[str, Any]) -> str:
    return str(queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0])


# --- API ----------------------------------------------------------------------------------------


def test_api_serves_only_get_and_post_on_webhook_through_the_ingest_lambda(
    default_stack: Synthesized,
) -> None:
    s = default_stack
    ingest_id, _ = function(s, INGEST_HANDLER)
    resource_id, _ = s.one("AWS::ApiGateway::Resource", {"PathPart": WEBHOOK_PATH})
    methods = s.resources("AWS::ApiGateway::Method")
    assert sorted(m["Properties"]["HttpMethod"] for m in methods.values()) == ["GET", "POST"]
    for method in methods.values():
        props = method["Properties"]
        assert props["ResourceId"] == {"Ref": resource_id}
        assert props["AuthorizationType"] == "NONE"  # the HMAC in the Lambda is the auth
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert ingest_id in json.dumps(props["Integration"]["Uri"])
    # only the two routes may invoke the function (no test-invoke, no wildcard path)
    source_arns = [
        json.dumps(p["Properties"]["SourceArn"])
        for p in s.resources("AWS::Lambda::Permission").values()
    ]
    assert len(source_arns) == 2
    assert any("/GET/webhook" in arn for arn in source_arns)
    assert any("/POST/webhook" in arn for arn in source_arns)


@pytest.mark.parametrize(
    ("stack_name", "rate", "burst"),
    [
        ("default_stack", DEFAULT_API_RATE_LIMIT_PER_SECOND, DEFAULT_API_BURST_LIMIT),
        (
            "custom_stack",
            CUSTOM_PROPS["api_rate_limit_per_second"],
            CUSTOM_PROPS["api_burst_limit"],
        ),
    ],
)
def test_stage_is_throttled_traced_and_access_logged_as_json(
    stack_name: str, rate: int, burst: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    _, stage = s.one("AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    [settings] = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == rate
    assert settings["ThrottlingBurstLimit"] == burst
    assert (settings["HttpMethod"], settings["ResourcePath"]) == ("*", "/*")
    access_log = json.loads(props["AccessLogSetting"]["Format"])
    assert access_log["requestId"] == "$context.requestId"
    assert access_log["status"] == "$context.status"
    assert "body" not in json.dumps(access_log).lower()
    log_group_id = props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert s.template.to_json()["Resources"][log_group_id]["Properties"]["RetentionInDays"] > 0


def test_web_acl_is_associated_only_when_given(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    assert default_stack.resources("AWS::WAFv2::WebACLAssociation") == {}
    _, association = custom_stack.one("AWS::WAFv2::WebACLAssociation")
    stage_id, _ = custom_stack.one("AWS::ApiGateway::Stage")
    assert association["Properties"]["WebACLArn"] == CUSTOM_PROPS["web_acl_arn"]
    assert stage_id in json.dumps(association["Properties"]["ResourceArn"])


# --- queues -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack_name", "max_receive_count"),
    [("default_stack", DEFAULT_MAX_RECEIVE_COUNT), ("custom_stack", 40)],
)
def test_inbound_fifo_queue_redrives_to_a_fifo_dlq(
    stack_name: str, max_receive_count: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    queue_id, queue = inbound_queue(s)
    dlq_id = queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    dlq = s.template.to_json()["Resources"][dlq_id]["Properties"]
    props = queue["Properties"]
    assert props["RedrivePolicy"]["maxReceiveCount"] == max_receive_count
    assert props["FifoQueue"] is True
    assert dlq["FifoQueue"] is True
    assert props["ContentBasedDeduplication"] is False  # ingest sets the wamid as dedup id
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_DAYS * DAY_SECONDS == 14 * DAY_SECONDS
    # the DLQ keeps a message longer than the inbound queue does, or redrive could lose it
    assert dlq["MessageRetentionPeriod"] > props["MessageRetentionPeriod"]
    for queue_props in (props, dlq):
        assert queue_props["SqsManagedSseEnabled"] is True
    assert queue_id != dlq_id


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(
    default_stack: Synthesized,
) -> None:
    _, queue = inbound_queue(default_stack)
    _, consumer = function(default_stack, CONSUMER_HANDLER)
    assert queue["Properties"]["VisibilityTimeout"] >= 6 * consumer["Properties"]["Timeout"]


def test_queues_refuse_requests_without_tls(default_stack: Synthesized) -> None:
    policies = default_stack.resources("AWS::SQS::QueuePolicy")
    assert len(policies) == 4  # the inbound queue, the status queue and their DLQs
    for policy in policies.values():
        [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- functions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "memory_mb", "timeout_s"),
    [
        (INGEST_HANDLER, INGEST_MEMORY_MB, INGEST_TIMEOUT_SECONDS),
        (CONSUMER_HANDLER, CONSUMER_MEMORY_MB, CONSUMER_TIMEOUT_SECONDS),
    ],
)
def test_functions_are_arm64_current_python_json_logged_and_traced(
    default_stack: Synthesized, handler: str, memory_mb: int, timeout_s: int
) -> None:
    _, fn = function(default_stack, handler)
    props = fn["Properties"]
    assert props["Architectures"] == ["arm64"]
    assert props["Runtime"] == f"python{LAMBDA_PYTHON_VERSION}"
    assert props["MemorySize"] == memory_mb
    assert props["Timeout"] == timeout_s
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = default_stack.template.to_json()["Resources"][log_group_id]["Properties"]
    assert log_group["RetentionInDays"] > 0


def test_each_function_has_its_own_role(default_stack: Synthesized) -> None:
    roles = {
        json.dumps(function(default_stack, h)[1]["Properties"]["Role"])
        for h in (INGEST_HANDLER, CONSUMER_HANDLER)
    }
    assert len(roles) == 2


def _env(s: Synthesized, handler: str) -> dict[str, Any]:
    return dict(function(s, handler)[1]["Properties"]["Environment"]["Variables"])


def test_ingest_environment_is_the_contracts(default_stack: Synthesized) -> None:
    s = default_stack
    queue_id, _ = inbound_queue(s)
    secret_id, _ = s.one("AWS::SecretsManager::Secret")
    status_id, _ = status_queue(s)
    assert _env(s, INGEST_HANDLER) == {
        ENV_QUEUE_URL: {"Ref": queue_id},
        ENV_STATUS_QUEUE_URL: {"Ref": status_id},
        ENV_SECRET_ID: {"Ref": secret_id},
        ENV_SERVICE_NAME: INGEST_SERVICE,
        ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        ENV_LOG_LEVEL: "INFO",
    }


def test_consumer_environment_is_the_contracts(default_stack: Synthesized) -> None:
    s = default_stack
    queue_id, _ = inbound_queue(s)
    secret_id, _ = s.one("AWS::SecretsManager::Secret")
    table_id, _ = s.one("AWS::DynamoDB::Table")
    dlq_id = dlq_of(inbound_queue(s)[1])
    status_id, _ = status_queue(s)
    assert _env(s, CONSUMER_HANDLER) == {
        ENV_QUEUE_URL: {"Ref": queue_id},
        ENV_STATUS_QUEUE_URL: {"Ref": status_id},
        ENV_DEAD_LETTER_QUEUE_URL: {"Ref": dlq_id},
        ENV_MAX_ATTEMPTS: str(DEFAULT_MAX_ATTEMPTS),
        ENV_SECRET_ID: {"Ref": secret_id},
        ENV_IDEMPOTENCY_TABLE: {"Ref": table_id},
        ENV_GRAPH_API_URL: DEFAULT_GRAPH_API_URL,
        ENV_GRAPH_API_VERSION: DEFAULT_GRAPH_API_VERSION,
        ENV_REPLY_RULES_PATH: f"{LAMBDA_TASK_ROOT}/{DEFAULT_REPLY_RULES_FILE}",
        ENV_SERVICE_NAME: CONSUMER_SERVICE,
        ENV_METRICS_NAMESPACE: DEFAULT_METRICS_NAMESPACE,
        ENV_LOG_LEVEL: "INFO",
    }


def test_props_reach_the_functions(custom_stack: Synthesized) -> None:
    env = _env(custom_stack, CONSUMER_HANDLER)
    assert env[ENV_GRAPH_API_URL] == CUSTOM_PROPS["graph_api_url"]
    assert env[ENV_GRAPH_API_VERSION] == CUSTOM_PROPS["graph_api_version"]
    assert env[ENV_METRICS_NAMESPACE] == CUSTOM_PROPS["metrics_namespace"]
    assert env[ENV_LOG_LEVEL] == "DEBUG"
    assert env[ENV_MAX_ATTEMPTS] == str(CUSTOM_PROPS["max_attempts"])
    _, fn = function(custom_stack, CONSUMER_HANDLER)
    assert fn["Properties"]["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"
    log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    resources = custom_stack.template.to_json()["Resources"]
    assert resources[log_group_id]["Properties"]["RetentionInDays"] == 90


# --- event source -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack_name", "batch_size", "max_concurrency"),
    [("default_stack", 10, DEFAULT_MAX_CONCURRENCY), ("custom_stack", 5, 7)],
)
def test_consumer_reads_the_inbound_queue_with_partial_batch_failures(
    stack_name: str, batch_size: int, max_concurrency: int, request: pytest.FixtureRequest
) -> None:
    s: Synthesized = request.getfixturevalue(stack_name)
    queue_id, _ = inbound_queue(s)
    consumer_id, _ = function(s, CONSUMER_HANDLER)
    _, mapping = s.one(
        "AWS::Lambda::EventSourceMapping",
        {"EventSourceArn": {"Fn::GetAtt": [queue_id, "Arn"]}},
    )
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert props["FunctionName"] == {"Ref": consumer_id}
    assert props["BatchSize"] == batch_size <= 10
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": max_concurrency}
    assert "MaximumBatchingWindowInSeconds" not in props  # FIFO queues refuse a window


def test_consumer_reads_the_status_queue_through_its_own_bounded_event_source(
    default_stack: Synthesized,
) -> None:
    s = default_stack
    status_id, status = status_queue(s)
    consumer_id, consumer = function(s, CONSUMER_HANDLER)
    mappings = s.resources("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 2
    _, mapping = s.one(
        "AWS::Lambda::EventSourceMapping", {"EventSourceArn": {"Fn::GetAtt": [status_id, "Arn"]}}
    )
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": consumer_id}
    assert props["BatchSize"] == STATUS_BATCH_SIZE
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # at most this many batches at once, whatever the volume: replies keep their concurrency
    assert props["ScalingConfig"] == {"MaximumConcurrency": STATUS_MAX_CONCURRENCY}
    queue = status["Properties"]
    dlq = s.template.to_json()["Resources"][dlq_of(status)]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == DEFAULT_MAX_RECEIVE_COUNT
    assert queue["VisibilityTimeout"] >= 6 * consumer["Properties"]["Timeout"]
    assert "FifoQueue" not in dlq
    for queue_props in (queue, dlq):
        assert queue_props["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


# --- IAM ----------------------------------------------------------------------------------------


def test_ingest_may_only_send_to_the_two_queues_and_read_the_secret(
    default_stack: Synthesized,
) -> None:
    s = default_stack
    queue_id, _ = inbound_queue(s)
    status_id, _ = status_queue(s)
    secret_id, _ = s.one("AWS::SecretsManager::Secret")
    _, fn = function(s, INGEST_HANDLER)
    log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert grants(s, INGEST_HANDLER) == {
        "sqs:SendMessage": {arn_of(queue_id), arn_of(status_id)},
        "secretsmanager:GetSecretValue": {ref(secret_id)},
        "logs:CreateLogStream": {arn_of(log_group_id)},
        "logs:PutLogEvents": {arn_of(log_group_id)},
        "xray:PutTraceSegments": {'"*"'},
        "xray:PutTelemetryRecords": {'"*"'},
    }


def test_consumer_may_only_touch_its_queues_table_and_secret(default_stack: Synthesized) -> None:
    s = default_stack
    queue_id, _ = inbound_queue(s)
    status_id, _ = status_queue(s)
    dlq_id = dlq_of(inbound_queue(s)[1])
    secret_id, _ = s.one("AWS::SecretsManager::Secret")
    table_id, _ = s.one("AWS::DynamoDB::Table")
    _, fn = function(s, CONSUMER_HANDLER)
    log_group_id = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    sqs_actions = (
        "ReceiveMessage",
        "DeleteMessage",
        "ChangeMessageVisibility",
        "GetQueueAttributes",
        "GetQueueUrl",
    )
    dynamodb_actions = ("PutItem", "UpdateItem")
    assert grants(s, CONSUMER_HANDLER) == {
        **{f"sqs:{a}": {arn_of(queue_id), arn_of(status_id)} for a in sqs_actions},
        "sqs:SendMessage": {arn_of(dlq_id)},
        **{f"dynamodb:{a}": {arn_of(table_id)} for a in dynamodb_actions},
        "secretsmanager:GetSecretValue": {ref(secret_id)},
        "logs:CreateLogStream": {arn_of(log_group_id)},
        "logs:PutLogEvents": {arn_of(log_group_id)},
        "xray:PutTraceSegments": {'"*"'},
        "xray:PutTelemetryRecords": {'"*"'},
    }


# --- state --------------------------------------------------------------------------------------


def test_idempotency_table_is_on_demand_encrypted_recoverable_and_expiring(
    default_stack: Synthesized,
) -> None:
    _, table = default_stack.one("AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": IDEMPOTENCY_PARTITION_KEY, "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [
        {"AttributeName": IDEMPOTENCY_PARTITION_KEY, "AttributeType": "S"}
    ]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_secret_has_the_contract_keys_and_a_random_app_secret(default_stack: Synthesized) -> None:
    _, secret = default_stack.one("AWS::SecretsManager::Secret")
    generator = secret["Properties"]["GenerateSecretString"]
    template = json.loads(generator["SecretStringTemplate"])
    assert set(template) | {generator["GenerateStringKey"]} == {
        SECRET_KEY_APP_SECRET,
        SECRET_KEY_VERIFY_TOKEN,
        SECRET_KEY_ACCESS_TOKEN,
    }
    # nobody can sign a webhook for a freshly deployed stack: the app secret is random
    assert generator["GenerateStringKey"] == SECRET_KEY_APP_SECRET
    assert generator["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]


# --- outputs ------------------------------------------------------------------------------------


def test_outputs_give_the_operator_everything_to_wire_and_watch(
    default_stack: Synthesized,
) -> None:
    outputs = default_stack.template.to_json()["Outputs"]
    assert set(outputs) == {
        OUTPUT_WEBHOOK_URL,
        OUTPUT_DASHBOARD_URL,
        OUTPUT_ALARM_TOPIC_ARN,
        OUTPUT_ALARM_RECIPIENT,
        OUTPUT_QUEUE_URL,
        OUTPUT_DLQ_URL,
        OUTPUT_STATUS_QUEUE_URL,
        OUTPUT_STATUS_DLQ_URL,
        OUTPUT_TABLE_NAME,
        OUTPUT_SECRET_ARN,
        OUTPUT_INGEST_LOG_GROUP,
        OUTPUT_CONSUMER_LOG_GROUP,
        OUTPUT_ACCESS_LOG_GROUP,
    }
    webhook_url = json.dumps(outputs[OUTPUT_WEBHOOK_URL]["Value"])
    assert webhook_url.endswith(f'/{WEBHOOK_PATH}"]]}}')
    assert "#dashboards:name=" in json.dumps(outputs[OUTPUT_DASHBOARD_URL]["Value"])


def test_exactly_one_url_of_the_api_is_an_output(default_stack: Synthesized) -> None:
    """RestApi's own `Endpoint` output (the API root, where nothing answers) is removed."""
    outputs = default_stack.template.to_json()["Outputs"]
    api_urls = [key for key, o in outputs.items() if "execute-api" in json.dumps(o["Value"])]
    assert api_urls == [OUTPUT_WEBHOOK_URL]


def test_log_group_outputs_name_the_groups_the_functions_and_the_stage_write_to(
    default_stack: Synthesized,
) -> None:
    s = default_stack
    outputs = s.template.to_json()["Outputs"]
    for handler, key in (
        (INGEST_HANDLER, OUTPUT_INGEST_LOG_GROUP),
        (CONSUMER_HANDLER, OUTPUT_CONSUMER_LOG_GROUP),
    ):
        _, fn = function(s, handler)
        assert outputs[key]["Value"] == fn["Properties"]["LoggingConfig"]["LogGroup"], key
    _, stage = s.one("AWS::ApiGateway::Stage")
    access_log_group = stage["Properties"]["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    assert outputs[OUTPUT_ACCESS_LOG_GROUP]["Value"] == {"Ref": access_log_group}


def test_the_alarm_recipient_output_says_who_is_told(
    default_stack: Synthesized, custom_stack: Synthesized
) -> None:
    nobody = default_stack.template.to_json()["Outputs"][OUTPUT_ALARM_RECIPIENT]["Value"]
    assert nobody.startswith("NOBODY: deployed with alarmEmail=none")
    assert OUTPUT_ALARM_TOPIC_ARN in nobody
    someone = custom_stack.template.to_json()["Outputs"][OUTPUT_ALARM_RECIPIENT]["Value"]
    assert someone.startswith(f"{CUSTOM_PROPS['alarm_email']} (by e-mail")


def test_a_stack_without_recipient_warns_at_synth(default_stack: Synthesized) -> None:
    Annotations.from_stack(default_stack.stack).has_warning(
        "*", Match.string_like_regexp("NOBODY: deployed with alarmEmail=none")
    )


# --- what outlives the stack ------------------------------------------------------------------

STATEFUL_TYPES = ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::SecretsManager::Secret")


def stateful_resources(s: Synthesized) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for type_ in STATEFUL_TYPES:
        found |= s.resources(type_)
    return found


def test_queues_table_and_secret_survive_deletion_and_replacement_by_default(
    default_stack: Synthesized,
) -> None:
    stateful = stateful_resources(default_stack)
    # the inbound queue and its DLQ, the status queue and its DLQ, the table, the secret
    assert sorted(r["Type"] for r in stateful.values()) == sorted(
        [
            *["AWS::SQS::Queue"] * 4,
            "AWS::DynamoDB::Table",
            "AWS::SecretsManager::Secret",
        ]
    )
    for logical_id, resource in stateful.items():
        assert resource.get("DeletionPolicy") == "Retain", logical_id
        assert resource.get("UpdateReplacePolicy") == "Retain", logical_id


def test_a_throw_away_stack_deletes_its_data(custom_stack: Synthesized) -> None:
    assert CUSTOM_PROPS["retain_data"] is False
    for logical_id, resource in stateful_resources(custom_stack).items():
        assert resource.get("DeletionPolicy") == "Delete", logical_id
        assert resource.get("UpdateReplacePolicy") == "Delete", logical_id


def test_nothing_else_is_retained(default_stack: Synthesized) -> None:
    """Logs, alarms, the API: recreated by the next deploy, so a deletion takes them along."""
    stateful = set(stateful_resources(default_stack))
    resources = default_stack.template.to_json()["Resources"]
    retained = {k for k, r in resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == stateful
