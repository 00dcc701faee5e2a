"""The REST API Meta calls: `GET` (subscription check) and `POST` (deliveries) on `/webhook`."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constants import API_STAGE_NAME, WEBHOOK_PATH
from infra.nag import acknowledge

_F = apigw.AccessLogField

# One JSON object per request: enough to tie a Meta retry to a Lambda invocation and a trace,
# and nothing from the body (which holds message text and phone numbers).
ACCESS_LOG_FIELDS = {
    "requestId": _F.context_request_id(),
    "requestTime": _F.context_request_time(),
    "httpMethod": _F.context_http_method(),
    "resourcePath": _F.context_resource_path(),
    "status": _F.context_status(),
    "responseLatencyMs": _F.context_response_latency(),
    "integrationLatencyMs": _F.context_integration_latency(),
    "integrationStatus": _F.context_integration_status(),
    "responseLength": _F.context_response_length(),
    "sourceIp": _F.context_identity_source_ip(),
    # THROTTLED, MISSING_AUTHENTICATION_TOKEN, ...: an enum, so it cannot break the JSON line
    # (free-text `error.message` could contain quotes).
    "errorType": _F.context_error_response_type(),
    "xrayTraceId": _F.context_xray_trace_id(),
}

_OPEN_TO_META_REASON = (
    "Meta's webhook deliveries cannot carry an API key, a token or IAM credentials: each POST is "
    "authenticated by its X-Hub-Signature-256 HMAC (the app secret), which the ingest Lambda "
    "checks before anything is queued, and GET only echoes a challenge after the verify token "
    "matches."
)


class WebhookApi(Construct):
    """Regional REST API -> ingest Lambda (proxy), throttled, access-logged as JSON, traced."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        rate_limit_per_second: int,
        burst_limit: int,
        log_retention: logs.RetentionDays,
        web_acl_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description="WhatsApp Cloud API webhook of whatsapp-relay",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE_NAME,
                throttling_rate_limit=rate_limit_per_second,
                throttling_burst_limit=burst_limit,
                tracing_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        integration = apigw.LambdaIntegration(handler, proxy=True, allow_test_invoke=False)
        self.webhook = self.api.root.add_resource(WEBHOOK_PATH)
        for method in ("GET", "POST"):
            self.webhook.add_method(
                method, integration, authorization_type=apigw.AuthorizationType.NONE
            )
        self.stage = self.api.deployment_stage
        # RestApi adds an `Endpoint` output with the API's root URL, where nothing answers: the
        # stack's one URL output is the webhook's (WebhookUrl), so this one goes.
        self.api.node.try_remove_child("Endpoint")
        self.webhook_url = self.api.url_for_path(f"/{WEBHOOK_PATH}")

        if web_acl_arn:
            wafv2.CfnWebACLAssociation(
                self, "WebAcl", resource_arn=self.stage.stage_arn, web_acl_arn=web_acl_arn
            )
        else:
            acknowledge(
                self.stage,
                "AwsSolutions-APIG3",
                "WAF is optional (prop web_acl_arn / context webAclArn): a web ACL costs a fixed "
                "monthly fee, and the stage is already throttled and every POST HMAC-checked.",
            )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(self.api, rule, _OPEN_TO_META_REASON)
        acknowledge(
            self.api,
            "AwsSolutions-APIG2",
            "The body cannot be validated by API Gateway: the signature is over its exact bytes, "
            "and the contract answers a missing signature with 401 and a non-object body with "
            "400 from the Lambda, which a request validator would turn into a generic 400.",
        )
        acknowledge(
            self.stage,
            "AwsSolutions-APIG6",
            "Execution logging needs the account-wide API Gateway CloudWatch role, a setting of "
            "the whole account this stack should not change. The stage writes JSON access logs "
            "(status, latencies, integration status, trace id) and X-Ray traces instead.",
        )
