"""The HTTP API function: API Gateway HTTP API (payload format 2.0) -> JSON responses.

Routes (each needs ``Authorization: Bearer <key>``; see lambdas.api.service):

- ``POST /v1/uploads``: reserve a name, answer a presigned S3 POST for its original;
- ``GET /v1/images/{id}``: the image's status document, variants with presigned GETs;
- ``GET /v1/images?album=&limit=&cursor=``: a page of the caller's images.

Errors become responses in one place (lambdas.api.errors.problem_for), inside the one
middleware that also logs each request: its route, status and owner (never the key or
the Authorization header). CORS headers come from API Gateway's CORS configuration,
never from here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.metrics import MetricUnit

from lambdas.api import service
from lambdas.api.errors import Problem, RouteNotFound, problem_for
from lambdas.api.inputs import body_text, parse_limit, parse_upload_request
from lambdas.shared.config import load_settings
from lambdas.shared.deadline import Deadline, LambdaContextLike
from lambdas.shared.observability import logger, metrics, publish_metrics
from lambdas.shared.tracing import tracer

JSON = "application/json"

app = APIGatewayHttpResolver()


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    # no-store: answers hold presigned URLs and change while an image is processed.
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_response(problem: Problem) -> Response:
    return json_response(problem.status, problem.body(), problem.headers)


def caller() -> str:
    """The owner of the request's key (every route asks first); Unauthorized otherwise."""
    header = app.current_event.headers.get("authorization")
    owner = service.authenticate(load_settings(), header)
    app.append_context(owner=owner)
    return owner


@app.post("/v1/uploads")
def create_upload() -> Response:
    owner = caller()
    event = app.current_event
    text = body_text(event.body, base64_encoded=bool(event.is_base64_encoded))
    request = parse_upload_request(text)
    return json_response(201, service.create_upload(load_settings(), owner, request))


@app.get("/v1/images/<image_id>")
def get_image(image_id: str) -> Response:
    owner = caller()
    return json_response(200, service.image_status(load_settings(), owner, image_id))


@app.get("/v1/images")
def list_images() -> Response:
    owner = caller()
    query = app.current_event.query_string_parameters
    page = service.list_images(
        load_settings(),
        owner,
        album=query.get("album"),
        limit=parse_limit(query.get("limit")),
        cursor=query.get("cursor"),
    )
    return json_response(200, page)


@app.not_found
def route_not_found(_: NotFoundError) -> Response:
    return problem_response(problem_for(RouteNotFound()))


def access(resolver: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """Every request: its errors answered (problem_for), then one log line and metrics."""
    started = time.perf_counter()
    reason = None
    try:
        response = next_middleware(resolver)
    except Exception as err:
        problem = problem_for(err)
        if problem.internal:
            logger.exception("request failed", extra={"error": type(err).__name__})
        reason = problem.message
        response = problem_response(problem)
    event = resolver.current_event
    logger.info(
        "request",
        extra={
            "route": event.route_key,
            "method": event.request_context.http.method,
            "path": event.raw_path,
            "status": response.status_code,
            "owner": resolver.context.get("owner"),  # absent: no valid key
            "reason": reason,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="ApiServerErrors", unit=MetricUnit.Count, value=int(response.status_code >= 500)
    )
    return response


app.use(middlewares=[access])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    with Deadline.from_context(context).bound():
        return app.resolve(event, context)  # type: ignore[arg-type]
