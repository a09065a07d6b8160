"""The local HTTP API stand-in (pixflare.local.http_api) and what the template evaluator
reads for it and for S3 notifications: events, routes, CORS, throttling, responses.

The expected event shape is API Gateway's documented payload format 2.0
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
"""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from pixflare.local.environments import Invocation
from pixflare.local.http_api import (
    MAX_BODY_BYTES,
    ApiRequest,
    HttpApi,
    HttpApiServer,
    TokenBucket,
    UnusableResponseError,
    build_event,
    cors_response_headers,
    http_response,
    match_route,
    preflight_headers,
)
from pixflare.local.template import (
    PROVIDER_REASON,
    CorsSpec,
    FunctionSpec,
    HttpApiSpec,
    Provisioner,
    RouteSpec,
    TemplateError,
    ThrottleSpec,
)

# The keys of the documented 2.0 event (stageVariables, authorizer and authentication
# only appear when the API has them).
EVENT_KEYS = {
    "version",
    "routeKey",
    "rawPath",
    "rawQueryString",
    "cookies",
    "headers",
    "queryStringParameters",
    "requestContext",
    "body",
    "pathParameters",
    "isBase64Encoded",
}
CONTEXT_KEYS = {
    "accountId",
    "apiId",
    "domainName",
    "domainPrefix",
    "http",
    "requestId",
    "routeKey",
    "stage",
    "time",
    "timeEpoch",
}
NOW = 1583348638.390  # 2020-03-04T19:03:58.390Z


def request(method: str, target: str, *headers: tuple[str, str], body: bytes = b"") -> ApiRequest:
    return ApiRequest(method=method, target=target, headers=list(headers), body=body)


# -- the event -----------------------------------------------------------------------
def test_the_event_has_the_documented_2_0_shape() -> None:
    # Given a POST with repeated headers and query parameters, cookies and a JSON body
    incoming = request(
        "POST",
        "/v1/images/abc?album=trip&tag=a&tag=b",
        ("Host", "127.0.0.1:8080"),
        ("User-Agent", "agent/1"),
        ("Content-Type", "application/json"),
        ("X-Custom", "one"),
        ("x-custom", "two"),
        ("Cookie", "c1=v1; c2=v2"),
        body=b'{"a": 1}',
    )
    # When it becomes an event
    event = build_event(
        incoming,
        route_key="POST /v1/images/{id}",
        path_parameters={"id": "abc"},
        api_id="a1b2c3d4e5",
        request_id="JKJaXmPLvHcESHA=",
        now=NOW,
        server_port=8080,
    )
    # Then it has exactly the documented fields, filled as API Gateway fills them
    assert set(event) == EVENT_KEYS
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/images/{id}"
    assert event["rawPath"] == "/v1/images/abc"
    assert event["rawQueryString"] == "album=trip&tag=a&tag=b"
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["queryStringParameters"] == {"album": "trip", "tag": "a,b"}
    assert event["pathParameters"] == {"id": "abc"}
    assert event["body"] == '{"a": 1}'
    assert event["isBase64Encoded"] is False
    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["x-custom"] == "one,two"
    assert headers["user-agent"] == "agent/1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == "8080"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["content-length"] == "8"
    assert "cookie" not in headers
    context = event["requestContext"]
    assert set(context) == CONTEXT_KEYS
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "a1b2c3d4e5"
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"
    assert context["http"] == {
        "method": "POST",
        "path": "/v1/images/abc",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "agent/1",
    }
    assert context["requestId"] == "JKJaXmPLvHcESHA="
    assert context["routeKey"] == "POST /v1/images/{id}"
    assert context["stage"] == "$default"
    assert context["time"] == "04/Mar/2020:19:03:58 +0000"
    assert context["timeEpoch"] == 1583348638390
    json.dumps(event)  # what the function receives is JSON


def test_a_get_without_body_query_or_parameters_leaves_those_fields_out() -> None:
    event = build_event(
        request("GET", "/v1/images", ("Host", "localhost")),
        route_key="GET /v1/images",
        path_parameters={},
        api_id="x",
        request_id="r",
        now=NOW,
    )
    assert set(event) == EVENT_KEYS - {"cookies", "queryStringParameters", "pathParameters", "body"}
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        ("image/jpeg", True),
        (None, True),
        ("application/octet-stream", True),
        ("text/plain; charset=utf-8", False),
        ("application/json", False),
        ("application/problem+json", False),
    ],
)
def test_a_body_is_base64_encoded_unless_its_type_is_text(
    content_type: str | None, encoded: bool
) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    body = "héllo".encode()
    event = build_event(
        ApiRequest("POST", "/x", headers, body),
        route_key="POST /x",
        path_parameters={},
        api_id="x",
        request_id="r",
        now=NOW,
    )
    assert event["isBase64Encoded"] is encoded
    assert event["body"] == (base64.b64encode(body).decode() if encoded else "héllo")


# -- routes -----------------------------------------------------------------------------
def route(key: str) -> RouteSpec:
    return RouteSpec(logical_id=key, route_key=key, function="Fn")


ROUTES = [
    route("POST /v1/uploads"),
    route("GET /v1/images"),
    route("GET /v1/images/{id}"),
    route("GET /v1/images/latest"),
    route("ANY /v1/images/{id}"),
    route("GET /files/{path+}"),
]


@pytest.mark.parametrize(
    ("method", "path", "key", "parameters"),
    [
        ("GET", "/v1/images", "GET /v1/images", {}),
        ("GET", "/v1/images/abc", "GET /v1/images/{id}", {"id": "abc"}),
        ("GET", "/v1/images/a%20b", "GET /v1/images/{id}", {"id": "a b"}),
        ("GET", "/v1/images/latest", "GET /v1/images/latest", {}),
        ("DELETE", "/v1/images/abc", "ANY /v1/images/{id}", {"id": "abc"}),
        ("POST", "/v1/uploads", "POST /v1/uploads", {}),
        ("GET", "/files/a/b/c", "GET /files/{path+}", {"path": "a/b/c"}),
    ],
)
def test_the_most_specific_route_wins(
    method: str, path: str, key: str, parameters: dict[str, str]
) -> None:
    matched = match_route(ROUTES, method, path)
    assert matched is not None
    assert (matched[0].route_key, matched[1]) == (key, parameters)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/uploads"),
        ("GET", "/v1/images/abc/extra"),
        ("GET", "/v1/images/"),
        ("GET", "/files"),
        ("GET", "/"),
        ("get", "/v1/images"),
    ],
)
def test_no_route_matches_other_methods_and_paths(method: str, path: str) -> None:
    assert match_route(ROUTES, method, path) is None


def test_the_default_route_takes_what_nothing_else_matches() -> None:
    routes = [*ROUTES, route("$default")]
    matched = match_route(routes, "PUT", "/anything")
    assert matched is not None
    assert matched[0].route_key == "$default"
    assert match_route(routes, "GET", "/v1/images")[0].route_key == "GET /v1/images"  # type: ignore[index]


# -- CORS -------------------------------------------------------------------------------
CORS = CorsSpec(
    allow_origins=("https://app.example",),
    allow_methods=("GET", "POST", "OPTIONS"),
    allow_headers=("authorization", "content-type"),
    max_age_seconds=600,
)


def test_a_preflight_from_an_allowed_origin_gets_the_configured_headers() -> None:
    assert dict(preflight_headers(CORS, "https://app.example")) == {
        "access-control-allow-origin": "https://app.example",
        "access-control-allow-methods": "GET,POST,OPTIONS",
        "access-control-allow-headers": "authorization,content-type",
        "access-control-max-age": "600",
    }


@pytest.mark.parametrize("origin", ["https://evil.example", None, "https://app.example.evil"])
def test_other_origins_get_no_cors_headers(origin: str | None) -> None:
    assert preflight_headers(CORS, origin) == []
    assert cors_response_headers(CORS, origin) == []


def test_a_wildcard_origin_answers_with_a_wildcard() -> None:
    wildcard = CorsSpec(allow_origins=("*",))
    assert cors_response_headers(wildcard, "https://any.example") == [
        ("access-control-allow-origin", "*")
    ]


# -- throttling ---------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2 per second
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 60  # refilled, never past the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_zero_burst_throttles_everything() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=0, clock=clock)
    clock.now += 10
    assert bucket.take() is False


# -- responses ----------------------------------------------------------------------------
def test_a_2_0_response_becomes_the_reply() -> None:
    reply = http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "X-Thing": "a,b"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": '{"ok": true}',
        }
    )
    assert reply.status == 201
    assert reply.body == b'{"ok": true}'
    assert ("content-type", "application/json") in reply.headers
    assert ("x-thing", "a,b") in reply.headers
    assert [v for k, v in reply.headers if k == "set-cookie"] == ["a=1; Path=/", "b=2"]


def test_a_base64_response_body_is_decoded() -> None:
    reply = http_response(
        {
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }
    )
    assert reply.body == b"\x89PNG"


@pytest.mark.parametrize(
    ("returned", "body"),
    [
        ({"message": "hi"}, b'{"message": "hi"}'),
        ("Hello from Lambda!", b"Hello from Lambda!"),
        ([1, 2], b"[1, 2]"),
        (None, b"null"),
    ],
)
def test_a_response_without_status_code_is_a_200_json_body(returned: Any, body: bytes) -> None:
    reply = http_response(returned)
    assert (reply.status, reply.body) == (200, body)
    assert reply.header("content-type") == "application/json"


@pytest.mark.parametrize(
    "returned",
    [
        {"statusCode": "200"},
        {"statusCode": 99},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_an_unusable_response_is_refused(returned: Any) -> None:
    with pytest.raises(UnusableResponseError):
        http_response(returned)


# -- the API, without sockets ------------------------------------------------------------
class FakeFunction:
    def __init__(self, *results: Invocation, timeout_seconds: int = 10) -> None:
        self.spec = FunctionSpec(
            logical_id="Fn",
            name="api",
            arn="arn:aws:lambda:us-east-1:123456789012:function:api",
            handler="h.handler",
            timeout_seconds=timeout_seconds,
            memory_mb=128,
            environment={},
        )
        self.results = list(results)
        self.events: list[Any] = []

    def invoke(self, event: Any) -> Invocation:
        self.events.append(event)
        return self.results.pop(0) if self.results else ok({"statusCode": 200, "body": "{}"})


def ok(response: Any) -> Invocation:
    return Invocation(ok=True, response=response)


def spec(**changes: Any) -> HttpApiSpec:
    base: dict[str, Any] = {
        "logical_id": "Api",
        "api_id": "a1b2c3d4e5",
        "name": "Api",
        "endpoint": "http://127.0.0.1:1",
        "routes": (route("GET /v1/images/{id}"), route("POST /v1/uploads")),
    }
    return HttpApiSpec(**{**base, **changes})


def test_the_function_gets_the_event_and_its_answer_is_the_reply() -> None:
    function = FakeFunction(ok({"statusCode": 404, "body": '{"message":"no"}'}))
    api = HttpApi(spec(), {"Fn": function}, page=None)
    reply = api.handle(request("GET", "/v1/images/xyz", ("Host", "127.0.0.1:9")))
    assert reply.status == 404
    assert reply.body == b'{"message":"no"}'
    assert reply.header("apigw-requestid")
    (event,) = function.events
    assert event["pathParameters"] == {"id": "xyz"}
    assert event["requestContext"]["requestId"] == reply.header("apigw-requestid")


@pytest.mark.parametrize(
    "failure",
    [
        Invocation(ok=False, error="Unhandled: boom", error_type="Unhandled"),
        Invocation(ok=False, error="Task timed out after 10.00 seconds", timed_out=True),
        ok({"statusCode": "nope"}),
    ],
)
def test_a_function_error_timeout_or_bad_answer_is_a_500(failure: Invocation) -> None:
    api = HttpApi(spec(), {"Fn": FakeFunction(failure)}, page=None)
    reply = api.handle(request("GET", "/v1/images/xyz"))
    assert (reply.status, json.loads(reply.body)) == (500, {"message": "Internal Server Error"})


def test_no_route_is_a_404_and_the_function_is_not_invoked() -> None:
    function = FakeFunction()
    api = HttpApi(spec(), {"Fn": function}, page=None)
    reply = api.handle(request("GET", "/v1/nothing"))
    assert (reply.status, json.loads(reply.body)) == (404, {"message": "Not Found"})
    assert function.events == []


def test_the_page_is_served_at_the_root_when_it_exists(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    api = HttpApi(spec(), {"Fn": FakeFunction()}, page=page)
    assert api.handle(request("GET", "/")).status == 404  # not written yet
    page.write_text("<!doctype html><title>pixflare</title>")
    for path in ("/", "/index.html"):
        reply = api.handle(request("GET", path))
        assert reply.status == 200
        assert reply.header("content-type") == "text/html; charset=utf-8"
        assert reply.body.startswith(b"<!doctype html>")


def test_stage_throttling_answers_429_per_route() -> None:
    clock = Clock()
    api = HttpApi(
        spec(throttle=ThrottleSpec(rate_limit=1, burst_limit=2)),
        {"Fn": FakeFunction()},
        page=None,
        clock=clock,
    )
    statuses = [api.handle(request("GET", "/v1/images/a")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert json.loads(api.handle(request("GET", "/v1/images/a")).body) == {
        "message": "Too Many Requests"
    }
    # Another route has a bucket of its own.
    assert api.handle(request("POST", "/v1/uploads")).status == 200
    clock.now += 1
    assert api.handle(request("GET", "/v1/images/a")).status == 200


def test_cors_preflight_and_responses_follow_the_configuration() -> None:
    function = FakeFunction(
        ok({"statusCode": 200, "headers": {"Access-Control-Allow-Origin": "*"}, "body": "{}"})
    )
    api = HttpApi(spec(cors=CORS), {"Fn": function}, page=None)
    preflight = api.handle(
        request(
            "OPTIONS",
            "/v1/uploads",
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        )
    )
    assert preflight.status == 204
    assert preflight.header("access-control-allow-methods") == "GET,POST,OPTIONS"
    assert function.events == []  # API Gateway answers preflights itself
    other = api.handle(
        request(
            "OPTIONS",
            "/v1/uploads",
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        )
    )
    assert other.header("access-control-allow-origin") is None
    # The integration's own CORS headers give way to the API's.
    allowed = api.handle(request("GET", "/v1/images/a", ("Origin", "https://app.example")))
    assert [v for k, v in allowed.headers if k == "access-control-allow-origin"] == [
        "https://app.example"
    ]
    stranger = api.handle(request("GET", "/v1/images/a", ("Origin", "https://evil.example")))
    assert stranger.header("access-control-allow-origin") is None


def test_without_cors_an_options_request_is_just_unrouted() -> None:
    api = HttpApi(spec(), {"Fn": FakeFunction()}, page=None)
    reply = api.handle(
        request(
            "OPTIONS",
            "/v1/uploads",
            ("Origin", "https://a"),
            ("Access-Control-Request-Method", "POST"),
        )
    )
    assert reply.status == 404


def test_an_integration_past_its_timeout_is_a_503() -> None:
    class Slow(FakeFunction):
        def invoke(self, event: Any) -> Invocation:
            import time

            time.sleep(0.5)
            return ok({})

    slow = route("GET /slow")
    api = HttpApi(
        spec(routes=(RouteSpec("R", "GET /slow", "Fn", timeout_ms=50),)),
        {"Fn": Slow(timeout_seconds=60)},
        page=None,
    )
    assert slow.timeout_ms == 30000
    reply = api.handle(request("GET", "/slow"))
    assert (reply.status, json.loads(reply.body)) == (503, {"message": "Service Unavailable"})


# -- over a socket ------------------------------------------------------------------------
def test_the_server_answers_over_http_and_refuses_a_body_over_10_mb() -> None:
    function = FakeFunction(
        ok({"statusCode": 201, "headers": {"content-type": "application/json"}, "body": "{}"})
    )
    server = HttpApiServer()
    try:
        server.serve(spec(), {"Fn": function}, page=None)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(
            "POST",
            "/v1/uploads",
            body=b'{"album": "trip"}',
            headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
        )
        reply = connection.getresponse()
        assert (reply.status, reply.read()) == (201, b"{}")
        (event,) = function.events
        assert event["body"] == '{"album": "trip"}'
        assert event["headers"]["authorization"] == "Bearer k"
        assert event["requestContext"]["domainName"] == "127.0.0.1"
        # Same connection (keep-alive): a declared body over the limit is refused unread.
        connection.putrequest("POST", "/v1/uploads")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        reply = connection.getresponse()
        assert (reply.status, json.loads(reply.read())) == (
            413,
            {"message": "Request Entity Too Large"},
        )
        connection.close()
    finally:
        server.stop()


# -- the template ---------------------------------------------------------------------------
class FakeClients:
    """Just enough of S3 and SQS for the provisioner, recording what it asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, service: str) -> Any:
        owner = self

        class Client:
            def __getattr__(self, name: str) -> Any:
                def call(**kwargs: Any) -> Any:
                    owner.calls.append((name, kwargs))
                    if name == "create_queue":
                        return {"QueueUrl": f"http://sqs/{kwargs['QueueName']}"}
                    return {}

                return call

        return Client()


# What CDK synthesizes for bucket.add_event_notification(OBJECT_CREATED,
# SqsDestination(queue), NotificationKeyFilter(suffix="/original")) and an HttpApi with
# one Lambda integration (aws-cdk-lib 2.275), trimmed to what matters.
TEMPLATE: dict[str, Any] = {
    "Resources": {
        "Images": {"Type": "AWS::S3::Bucket"},
        "IngestQueue": {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}},
        "IngestQueuePolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {"Queues": [{"Ref": "IngestQueue"}]},
        },
        "ImagesNotifications": {
            "Type": "Custom::S3BucketNotifications",
            "Properties": {
                "ServiceToken": {"Fn::GetAtt": ["BucketNotificationsHandler050a", "Arn"]},
                "BucketName": {"Ref": "Images"},
                "NotificationConfiguration": {
                    "QueueConfigurations": [
                        {
                            "Events": ["s3:ObjectCreated:*"],
                            "Filter": {
                                "Key": {"FilterRules": [{"Name": "suffix", "Value": "/original"}]}
                            },
                            "QueueArn": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                        }
                    ]
                },
                "Managed": True,
                "SkipDestinationValidation": False,
            },
        },
        "BucketNotificationsHandler050a": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Code": {"ZipFile": "import boto3"},
                "Handler": "index.handler",
                "Runtime": "python3.13",
                "Timeout": 300,
            },
        },
        "ApiFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Handler": "lambdas.api.handler.handler", "Timeout": 10},
        },
        "HttpApi": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": "HttpApi",
                "ProtocolType": "HTTP",
                "CorsConfiguration": {
                    "AllowHeaders": ["authorization", "content-type"],
                    "AllowMethods": ["GET", "POST", "OPTIONS"],
                    "AllowOrigins": ["http://localhost:3000"],
                    "MaxAge": 600,
                },
            },
        },
        "Stage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "AutoDeploy": True,
                "DefaultRouteSettings": {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50},
                "StageName": "$default",
            },
        },
        "Integration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": "HttpApi"},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::GetAtt": ["ApiFunction", "Arn"]},
                "PayloadFormatVersion": "2.0",
            },
        },
        "Permission": {"Type": "AWS::Lambda::Permission", "Properties": {}},
        **{
            f"Route{index}": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "HttpApi"},
                    "AuthorizationType": "NONE",
                    "RouteKey": key,
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]},
                },
            }
            for index, key in enumerate(
                ("POST /v1/uploads", "GET /v1/images", "GET /v1/images/{id}")
            )
        },
    },
    "Outputs": {"ApiUrl": {"Value": {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]}}},
}


def provision(template: dict[str, Any], **kwargs: Any) -> tuple[Provisioner, FakeClients]:
    clients = FakeClients()
    provisioner = Provisioner(
        template, clients=clients, stack_name="Stack", region="eu-west-1", **kwargs
    )
    provisioner.provision()
    return provisioner, clients


def test_bucket_notifications_are_put_on_the_bucket_with_the_queues_arn() -> None:
    _, clients = provision(TEMPLATE)
    (put,) = [kwargs for name, kwargs in clients.calls if name.startswith("put_bucket_notif")]
    assert put == {
        "Bucket": "stack-images",
        "NotificationConfiguration": {
            "QueueConfigurations": [
                {
                    # The ARN moto's SQS gives the queue: its account, the stack's region.
                    "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:Stack-IngestQueue",
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": "/original"}]}},
                }
            ]
        },
    }


def test_the_notifications_provider_is_not_run_and_is_listed_with_the_reason() -> None:
    provisioner, _ = provision(TEMPLATE)
    assert list(provisioner.functions) == ["ApiFunction"]
    assert provisioner.not_created() == {
        f"AWS::Lambda::Function ({PROVIDER_REASON})": 1,
        "AWS::SQS::QueuePolicy": 1,
        "AWS::Lambda::Permission": 1,
    }


def test_a_notification_to_another_destination_is_refused_by_name() -> None:
    template = json.loads(json.dumps(TEMPLATE))
    configuration = template["Resources"]["ImagesNotifications"]["Properties"]
    configuration["NotificationConfiguration"]["LambdaFunctionConfigurations"] = []
    with pytest.raises(TemplateError, match="LambdaFunctionConfigurations"):
        provision(template)


def test_the_http_api_becomes_a_spec_with_its_routes_cors_and_throttling() -> None:
    endpoints: list[str] = []

    def bind(logical_id: str) -> str:
        endpoints.append(logical_id)
        return "http://127.0.0.1:5555"

    provisioner, _ = provision(TEMPLATE, api_endpoint=bind)
    (api,) = provisioner.http_apis
    assert endpoints == ["HttpApi"]
    assert api.endpoint == "http://127.0.0.1:5555"
    assert provisioner.outputs() == {"ApiUrl": "http://127.0.0.1:5555"}
    assert api.stage == "$default"
    assert [(r.route_key, r.function, r.payload_format) for r in api.routes] == [
        ("POST /v1/uploads", "ApiFunction", "2.0"),
        ("GET /v1/images", "ApiFunction", "2.0"),
        ("GET /v1/images/{id}", "ApiFunction", "2.0"),
    ]
    assert api.cors == CorsSpec(
        allow_origins=("http://localhost:3000",),
        allow_methods=("GET", "POST", "OPTIONS"),
        allow_headers=("authorization", "content-type"),
        max_age_seconds=600,
    )
    assert api.throttle == ThrottleSpec(rate_limit=50, burst_limit=100)
    assert len(api.api_id) == 10


def test_without_a_cors_configuration_there_is_no_cors() -> None:
    template = json.loads(json.dumps(TEMPLATE))
    del template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    provisioner, _ = provision(template)
    assert provisioner.http_apis[0].cors is None


@pytest.mark.parametrize(
    ("resource", "prop", "value", "says"),
    [
        ("Integration", "PayloadFormatVersion", "1.0", "payload format 1.0"),
        ("Integration", "IntegrationType", "HTTP_PROXY", "HTTP_PROXY"),
        ("Route0", "AuthorizationType", "JWT", "authorization JWT"),
        ("HttpApi", "ProtocolType", "WEBSOCKET", "only HTTP APIs"),
    ],
)
def test_what_the_stand_in_cannot_serve_is_refused_by_name(
    resource: str, prop: str, value: str, says: str
) -> None:
    template = json.loads(json.dumps(TEMPLATE))
    template["Resources"][resource]["Properties"][prop] = value
    with pytest.raises(TemplateError, match=says):
        provision(template)


def test_a_stage_url_built_with_fn_join_names_the_local_server() -> None:
    # As CDK writes HttpStage.url: https://{api}.execute-api.{region}.{suffix}/
    template = json.loads(json.dumps(TEMPLATE))
    template["Outputs"]["ApiUrl"]["Value"] = {
        "Fn::Join": [
            "",
            [
                "https://",
                {"Ref": "HttpApi"},
                ".execute-api.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
                "/",
            ],
        ]
    }
    provisioner, _ = provision(template, api_endpoint=lambda _: "http://127.0.0.1:5555")
    assert provisioner.outputs() == {"ApiUrl": "http://127.0.0.1:5555/"}
