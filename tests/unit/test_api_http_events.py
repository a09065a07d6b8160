"""The test event factory builds what API Gateway sends (payload format 2.0)."""

from __future__ import annotations

import base64
import json

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from tests.support.http_events import get_image, http_event, list_images, post_upload


def test_a_route_with_a_path_parameter() -> None:
    event = get_image("pfk_x", "abc")
    parsed = APIGatewayProxyEventV2(event)
    assert event["version"] == "2.0"
    assert parsed.route_key == "GET /v1/images/{id}"
    assert parsed.raw_path == "/v1/images/abc" == parsed.path
    assert parsed.path_parameters == {"id": "abc"}
    assert parsed.request_context.http.method == "GET"
    assert parsed.request_context.http.path == "/v1/images/abc"
    assert parsed.request_context.http.source_ip == "203.0.113.7"
    assert parsed.headers["authorization"] == "Bearer pfk_x"
    assert all(name == name.lower() for name in event["headers"])
    assert "queryStringParameters" not in event and "body" not in event
    assert event["rawQueryString"] == "" and event["isBase64Encoded"] is False


def test_path_parameters_are_escaped_into_the_raw_path() -> None:
    event = get_image(None, "a b/c")
    assert event["rawPath"] == "/v1/images/a%20b%2Fc"
    assert "authorization" not in event["headers"]


def test_a_query_as_api_gateway_joins_it() -> None:
    event = http_event("GET /v1/images", query={"album": "trips", "tag": ["a", "b"]})
    assert event["rawQueryString"] == "album=trips&tag=a&tag=b"
    assert event["queryStringParameters"] == {"album": "trips", "tag": "a,b"}
    assert list_images(None, limit="2")["queryStringParameters"] == {"limit": "2"}


def test_bodies() -> None:
    event = post_upload("k", {"album": "a"})
    assert json.loads(event["body"]) == {"album": "a"} and not event["isBase64Encoded"]
    assert event["headers"]["content-type"] == "application/json"
    assert event["headers"]["content-length"] == str(len(event["body"]))
    raw = post_upload("k", b"\xff\x00")
    assert raw["isBase64Encoded"] and base64.b64decode(raw["body"]) == b"\xff\x00"
    assert raw["headers"]["content-length"] == "2"


def test_headers_are_lower_cased_and_the_catch_all_route() -> None:
    event = http_event("$default", method="DELETE", raw_path="/v1/x", headers={"X-Thing": "1"})
    assert event["headers"]["x-thing"] == "1"
    assert event["routeKey"] == "$default" == event["requestContext"]["routeKey"]
    assert event["requestContext"]["http"]["method"] == "DELETE"
