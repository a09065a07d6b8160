"""The frontend's flow in the template: S3 notifications to the ingest queue, the
ingest mapping, the HTTP API (routes, payload format, throttling, access logs, CORS),
the bucket's CORS rule for presigned POSTs, and the outputs."""

from __future__ import annotations

import json

import pytest

from infra import config
from infra.synth import SynthResult
from tests.infra.support import (
    FRONTEND_ORIGINS,
    NOTIFICATIONS_HANDLER,
    Template,
    function_by_handler,
    mapping_for,
    props,
    queue_by_name,
    refs,
    resources,
    single,
)

pytestmark = pytest.mark.slow

STACK = config.STACK_NAME
INGEST = "lambdas.ingest.handler.handler"
API = "lambdas.api.handler.handler"
API_KINDS = (
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
)


def _bucket(template: Template) -> str:
    return single(template, "AWS::S3::Bucket", "StorageImagesBucket")


def _notifications(template: Template) -> dict:
    (lid,) = resources(template, "Custom::S3BucketNotifications")
    return props(template, lid)


# --- ingest -------------------------------------------------------------------------


def test_ingest_mapping_numbers(template: Template) -> None:
    fn = function_by_handler(template, INGEST)
    queue = queue_by_name(template, f"{STACK}-ingest")
    mapping = mapping_for(template, fn)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert mapping["BatchSize"] == 10
    assert "MaximumBatchingWindowInSeconds" not in mapping  # 0: users wait for it
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == 2
    assert (props(template, fn)["Timeout"], props(template, fn)["MemorySize"]) == (30, 256)
    assert props(template, queue)["VisibilityTimeout"] == 6 * 30
    dlq = queue_by_name(template, f"{STACK}-ingest-dlq")
    assert props(template, queue)["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
        "maxReceiveCount": 3,
    }


def test_originals_notify_the_ingest_queue(template: Template) -> None:
    notifications = _notifications(template)
    assert notifications["BucketName"] == {"Ref": _bucket(template)}
    assert notifications["ServiceToken"]["Fn::GetAtt"][0].startswith(NOTIFICATIONS_HANDLER)
    config_ = notifications["NotificationConfiguration"]
    assert set(config_) == {"QueueConfigurations"}
    (queue_config,) = config_["QueueConfigurations"]
    queue = queue_by_name(template, f"{STACK}-ingest")
    assert queue_config["QueueArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert queue_config["Events"] == ["s3:ObjectCreated:*"]
    assert queue_config["Filter"] == {
        "Key": {"FilterRules": [{"Name": "suffix", "Value": "/original"}]}
    }


def test_only_the_bucket_may_send_to_the_ingest_queue(template: Template) -> None:
    queue = queue_by_name(template, f"{STACK}-ingest")
    (policy,) = [
        res["Properties"]
        for res in resources(template, "AWS::SQS::QueuePolicy").values()
        if res["Properties"]["Queues"] == [{"Ref": queue}]
    ]
    (allow,) = [st for st in policy["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "sqs:SendMessage" in allow["Action"]
    assert allow["Condition"] == {
        "ArnLike": {"aws:SourceArn": {"Fn::GetAtt": [_bucket(template), "Arn"]}}
    }
    # The notification is applied after the queue policy lets S3 send (S3 checks it).
    (lid,) = resources(template, "Custom::S3BucketNotifications")
    assert any(
        dep.startswith("IngestQueuePolicy") for dep in template["Resources"][lid]["DependsOn"]
    )


def test_the_notifications_provider_can_only_configure_the_images_bucket(
    template: Template,
) -> None:
    (handler,) = [lid for lid in resources(template, "AWS::Lambda::Function") if
                  lid.startswith(NOTIFICATIONS_HANDLER)]  # fmt: skip
    role = props(template, handler)["Role"]["Fn::GetAtt"][0]
    statements = [
        st
        for res in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in res["Properties"]["Roles"]
        for st in res["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements == [
        {
            "Action": "s3:PutBucketNotification",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [_bucket(template), "Arn"]},
        }
    ]


# --- HTTP API -----------------------------------------------------------------------


def test_routes_reach_the_api_function_with_payload_format_2(template: Template) -> None:
    api = single(template, "AWS::ApiGatewayV2::Api", "HttpApi")
    assert props(template, api)["ProtocolType"] == "HTTP"
    assert props(template, api)["Name"] == f"{STACK}-api"
    fn = function_by_handler(template, API)
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "POST /v1/uploads",
        "GET /v1/images",
        "GET /v1/images/{id}",
    }
    integrations = resources(template, "AWS::ApiGatewayV2::Integration")
    for route in routes.values():
        p = route["Properties"]
        assert p["ApiId"] == {"Ref": api}
        assert p["AuthorizationType"] == "NONE"  # the function checks the API key
        (integration,) = refs(p["Target"])
        ip = integrations[integration]["Properties"]
        assert ip["IntegrationType"] == "AWS_PROXY"
        assert ip["PayloadFormatVersion"] == "2.0"
        assert ip["IntegrationUri"] == {"Fn::GetAtt": [fn, "Arn"]}
    # API Gateway may invoke it, for this API's routes only.
    permissions = [
        res["Properties"]
        for res in resources(template, "AWS::Lambda::Permission").values()
        if res["Properties"]["FunctionName"] == {"Fn::GetAtt": [fn, "Arn"]}
    ]
    assert len(permissions) == 3
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert api in refs(permission["SourceArn"])


def test_default_stage_is_throttled_and_access_logged(template: Template) -> None:
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage")
    p = props(template, stage)
    assert p["StageName"] == "$default"
    assert p["AutoDeploy"] is True
    assert p["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": config.API_THROTTLE_RATE,
        "ThrottlingBurstLimit": config.API_THROTTLE_BURST,
    }
    assert (config.API_THROTTLE_RATE, config.API_THROTTLE_BURST) == (50, 100)
    logs = p["AccessLogSettings"]
    (group,) = refs(logs["DestinationArn"])
    assert template["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
    assert props(template, group)["RetentionInDays"] == config.LOG_RETENTION_DAYS
    fields = json.loads(logs["Format"])
    assert fields["status"] == "$context.status"
    assert fields["routeKey"] == "$context.routeKey"


def test_no_cors_without_frontend_origins(template: Template) -> None:
    api = single(template, "AWS::ApiGatewayV2::Api", "HttpApi")
    assert "CorsConfiguration" not in props(template, api)
    assert "CorsConfiguration" not in props(template, _bucket(template))


def test_cors_allows_exactly_the_frontend_origins(custom: Template) -> None:
    api = single(custom, "AWS::ApiGatewayV2::Api", "HttpApi")
    assert props(custom, api)["CorsConfiguration"] == {
        "AllowOrigins": FRONTEND_ORIGINS,
        "AllowMethods": ["GET", "POST", "OPTIONS"],
        "AllowHeaders": ["authorization", "content-type"],
        "MaxAge": 3600,
    }
    # The browser POSTs the file straight to the bucket (presigned POST).
    assert props(custom, _bucket(custom))["CorsConfiguration"] == {
        "CorsRules": [
            {
                "AllowedMethods": ["POST"],
                "AllowedOrigins": FRONTEND_ORIGINS,
                "AllowedHeaders": ["*"],
                "MaxAge": 3600,
            }
        ]
    }


def test_outputs_point_at_the_api_and_the_ingest_queues(template: Template) -> None:
    outputs = {name: out["Value"] for name, out in template["Outputs"].items()}
    api = single(template, "AWS::ApiGatewayV2::Api", "HttpApi")
    assert refs(outputs["ApiUrl"]) - {"AWS::Region", "AWS::URLSuffix"} == {api}
    parts = outputs["ApiUrl"]["Fn::Join"][1]
    assert parts[0] == "https://" and parts[-1] == "/"
    assert outputs["IngestQueueUrl"] == {"Ref": queue_by_name(template, f"{STACK}-ingest")}
    assert outputs["IngestDlqUrl"] == {"Ref": queue_by_name(template, f"{STACK}-ingest-dlq")}
    deployed = json.loads(outputs["RuntimeSettings"])
    assert deployed["FRONTEND_ORIGINS"] == ""


def test_queues_off_has_no_api_no_ingest_no_notification(queues_off: Template) -> None:
    for kind in (*API_KINDS, "Custom::S3BucketNotifications", "AWS::Lambda::Permission"):
        if kind == "AWS::Lambda::Permission":
            principals = {
                res["Properties"]["Principal"] for res in resources(queues_off, kind).values()
            }
            assert "apigateway.amazonaws.com" not in principals
        else:
            assert not resources(queues_off, kind), kind
    names = {
        r["Properties"].get("QueueName") for r in resources(queues_off, "AWS::SQS::Queue").values()
    }
    assert f"{STACK}-ingest" not in names
    assert not {"ApiUrl", "IngestQueueUrl", "IngestDlqUrl"} & set(queues_off["Outputs"])
    assert not any(lid.startswith(NOTIFICATIONS_HANDLER) for lid in queues_off["Resources"])


def test_route_acknowledgments_are_per_route(default_synth: SynthResult) -> None:
    apig4 = [f for f in default_synth.acknowledged if f.rule == "AwsSolutions-APIG4"]
    assert sorted(f.path.split("/Api/")[1] for f in apig4) == [
        "GET--v1--images--{id}/Resource",
        "GET--v1--images/Resource",
        "POST--v1--uploads/Resource",
    ]
    for finding in apig4:
        assert "authenticates every request itself" in finding.reason
