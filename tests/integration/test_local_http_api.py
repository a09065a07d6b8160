"""The local stack's side of the frontend flow, as a black box over HTTP: one stack
for the module, from the synthesized template.

- an original dropped into the bucket by ``put_object`` alone (no record) reaches the
  ingest function through S3's event notification and its queue, as on AWS, and
  becomes a ready image the HTTP API lists;
- an upload through ``POST /v1/uploads`` and its presigned POST becomes a ready image;
- API Gateway's own answers (404 for no route) and the function's (401 without a key)
  come back through the stand-in, which also serves the page at ``/``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.shared.api_keys import ApiKeyRepository
from pixflare.local import samples
from pixflare.local.http_api import PAGE
from pixflare.local.stack import LocalStack
from tests.support.local_stack import started_stack, use_stack_clients, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory, "local-http-api") as running:
        yield running


@pytest.fixture(autouse=True)
def stack_env(monkeypatch: pytest.MonkeyPatch, stack: LocalStack) -> None:
    use_stack_clients(monkeypatch, stack)


@pytest.fixture
def api_key(stack: LocalStack, stack_env: None) -> str:
    return ApiKeyRepository(stack.outputs["ApiKeysTableName"]).create("olga").key


def call(
    stack: LocalStack,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
) -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        stack.api_url + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, raw, reply_headers = reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as err:
        status, raw, reply_headers = err.code, err.read(), dict(err.headers)
    content_type = reply_headers.get("content-type", "")
    return status, reply_headers, json.loads(raw) if "json" in content_type else raw


def listed(stack: LocalStack, key: str, album: str) -> list[dict[str, Any]]:
    status, _, page = call(stack, "GET", f"/v1/images?album={album}", key=key)
    assert status == 200, page
    return list(page["items"])


def test_the_templates_api_url_output_names_the_local_server(stack: LocalStack) -> None:
    assert stack.api_url.startswith("http://127.0.0.1:")
    # The template's ApiUrl (the $default stage's URL) names the local server
    assert stack.outputs["ApiUrl"].rstrip("/") == stack.api_url


def test_an_original_put_into_the_bucket_alone_becomes_a_ready_image(
    stack: LocalStack, api_key: str
) -> None:
    # Given a JPEG written straight into the bucket at an original's key, with no record
    album = f"drop-{uuid.uuid4().hex[:6]}"
    stack.client("s3").put_object(
        Bucket=stack.outputs["ImagesBucketName"],
        Key=f"olga/{album}/beach.jpg/original",
        Body=samples.photo_jpeg(320, 240),
        ContentType="image/jpeg",
    )

    # When S3's notification reaches the ingest function through its queue
    def ready() -> dict[str, Any] | None:
        items = listed(stack, api_key, album)
        return items[0] if items and items[0]["variants_status"] == "ready" else None

    # Then the owner's API lists it, ready, with eight variants and their URLs
    image = wait_until(ready, "the dropped original to be ready")
    assert image["filename"] == "beach.jpg"
    assert len(image["variants_ready"]) == 8
    assert all(v.get("url") for v in image["variants"].values())


def test_an_upload_through_the_api_and_its_presigned_post_becomes_ready(
    stack: LocalStack, api_key: str
) -> None:
    # Given an upload reserved through the API
    data = samples.photo_jpeg(300, 200)
    status, _, upload = call(
        stack,
        "POST",
        "/v1/uploads",
        key=api_key,
        body={
            "album": "posted",
            "filename": "p.jpg",
            "contentType": "image/jpeg",
            "size": len(data),
        },
    )
    assert status == 201, upload
    # When the file is POSTed to the presigned URL with its fields (as a browser does)
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in upload["upload"]["fields"].items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    post = urllib.request.Request(
        upload["upload"]["url"],
        data=b"".join(parts),
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(post, timeout=30) as reply:
        assert reply.status in (200, 201, 204)

    # Then its status URL shows it ready
    def ready() -> dict[str, Any] | None:
        status, _, document = call(stack, "GET", upload["statusUrl"], key=api_key)
        assert status == 200, document
        return document if document["variants_status"] == "ready" else None

    document = wait_until(ready, "the uploaded image to be ready")
    assert document["imageId"] == upload["imageId"]
    assert len(document["variants_ready"]) == 8


def test_api_gateway_and_function_answers_come_back_through_the_stand_in(
    stack: LocalStack,
) -> None:
    # No route: API Gateway's own 404
    status, headers, body = call(stack, "GET", "/v2/nothing")
    assert (status, body) == (404, {"message": "Not Found"})
    assert headers.get("apigw-requestid")
    # A route without a key: the function's 401
    status, _, body = call(stack, "GET", f"/v1/images/{uuid.uuid4().hex}")
    assert status == 401
    assert set(body) == {"message"}
    # The page, same-origin with the API
    status, headers, page = call(stack, "GET", "/")
    if Path(PAGE).is_file():
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert page == PAGE.read_bytes()
    else:
        assert status == 404
