"""The HTTP API (API Gateway v2) in front of the API function.

One Lambda integration, payload format 2.0, for the routes in
:data:`infra.config.API_ROUTES`; the function authenticates the API key itself
(``Authorization: Bearer``), so the routes have no API Gateway authorizer. The
``$default`` stage auto-deploys, is throttled (config.API_THROTTLE_RATE / _BURST) and
writes JSON access logs to its own log group. CORS preflight is answered by API
Gateway for exactly the configured frontend origins; with none configured there is
no CORS configuration at all (same-origin only).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import config
from infra.constructs.queue_worker import log_retention

# What each access log line carries (HTTP API $context variables), one JSON object.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "responseLatency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
    },
    separators=(",", ":"),
)
CORS_METHODS = (apigw.CorsHttpMethod.GET, apigw.CorsHttpMethod.POST, apigw.CorsHttpMethod.OPTIONS)
CORS_HEADERS = ("authorization", "content-type")


class HttpApi(Construct):
    """HttpApi + $default stage (throttled, access-logged) + the function's routes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        origins: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        cors = (
            apigw.CorsPreflightOptions(
                allow_origins=list(origins),
                allow_methods=list(CORS_METHODS),
                allow_headers=list(CORS_HEADERS),
                max_age=Duration.seconds(config.API_CORS_MAX_AGE_SECONDS),
            )
            if origins
            else None
        )
        self.api = apigw.HttpApi(
            self,
            "Api",
            api_name=f"{Stack.of(self).stack_name}-api",
            description="Pixflare: uploads (presigned POST) and image status",
            cors_preflight=cors,
            create_default_stage=False,
        )
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.API_THROTTLE_RATE, burst_limit=config.API_THROTTLE_BURST
            ),
        )
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT
        )

        integration = integrations.HttpLambdaIntegration(
            "Function",
            function,
            payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
        )
        self.routes: list[apigw.HttpRoute] = []
        for method, path in config.API_ROUTES:
            self.routes.extend(
                self.api.add_routes(
                    path=path, methods=[apigw.HttpMethod(method)], integration=integration
                )
            )

    @property
    def url(self) -> str:
        """The endpoint, ``https://{id}.execute-api.{region}.amazonaws.com/``."""
        return self.stage.url
