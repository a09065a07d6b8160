"""The HTTP API function under moto, driven with API Gateway payload-2.0 events."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from lambdas.api import handler as api
from lambdas.api.cursor import encode_cursor
from lambdas.api.errors import UNAUTHORIZED_MESSAGE
from lambdas.shared.api_keys import ApiKeyRepository
from lambdas.shared.clock import iso
from lambdas.shared.config import load_settings
from lambdas.shared.errors import TransientError
from lambdas.shared.images import MAX_UPLOAD_BYTES, ImageRepository
from lambdas.shared.keys import VARIANT_NAMES
from lambdas.shared.observability import logger
from lambdas.shared.originals import ingest_original
from tests.support.aws_resources import REGION, Resources
from tests.support.env import use_env
from tests.support.events import FakeLambdaContext
from tests.support.http_events import get_image, http_event, list_images, post_upload

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def env(aws: Resources, monkeypatch: pytest.MonkeyPatch) -> Resources:
    use_env(monkeypatch, aws.env())
    return aws


@pytest.fixture
def keys(env: Resources) -> ApiKeyRepository:
    return ApiKeyRepository(env.tables["api_keys"])


@pytest.fixture
def alice(keys: ApiKeyRepository) -> str:
    return keys.create("alice").key


@pytest.fixture
def bob(keys: ApiKeyRepository) -> str:
    return keys.create("bob").key


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The function's log lines, as Powertools formats them."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logger.registered_formatter.format(record))

    keep = Keep()
    logger._logger.addHandler(keep)
    yield lines
    logger._logger.removeHandler(keep)


def call(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api.handler(event, FakeLambdaContext(remaining_ms=10_000))
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert not any(name.startswith("access-control-") for name in headers)  # API Gateway's job
    return response["statusCode"], headers, json.loads(response["body"])


def upload_body(**overrides: Any) -> dict[str, Any]:
    return {
        "album": "trips",
        "filename": "beach.jpg",
        "contentType": "image/jpeg",
        "size": len(JPEG),
        **overrides,
    }


def create(key: str, **overrides: Any) -> dict[str, Any]:
    status, _, body = call(post_upload(key, upload_body(**overrides)))
    assert status == 201, body
    return body


def policy_of(upload: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(upload["fields"]["policy"]))


def upload_original(env: Resources, created: dict[str, Any]) -> str:
    """What the browser's POST does (moto does not check a POST's policy, so the test
    stores the object as the form would), then the ingest step S3's event starts."""
    fields = created["upload"]["fields"]
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=env.bucket,
        Key=fields["key"],
        Body=JPEG,
        ContentType=fields["Content-Type"],
        Metadata={"image-id": fields["x-amz-meta-image-id"]},
    )
    outcome = ingest_original(load_settings(), bucket=env.bucket, key=fields["key"])
    assert outcome.status == "ingested" and outcome.image_id == created["imageId"]
    return fields["key"]


# -- auth -------------------------------------------------------------------------------
ROUTES = [
    lambda key: post_upload(key, upload_body()),
    lambda key: get_image(key, "0" * 32),
    lambda key: list_images(key),
]


@pytest.mark.parametrize("route", ROUTES, ids=["post-upload", "get-image", "list-images"])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer pfk_short", "Bearer " + "pfk_" + "A" * 43],
    ids=["absent", "empty", "no-key", "basic", "malformed-key", "unknown-key"],
)
def test_every_route_needs_a_valid_key(
    env: Resources, route: Any, authorization: str | None
) -> None:
    event = route(None)
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    status, headers, body = call(event)
    assert status == 401
    assert body == {"message": UNAUTHORIZED_MESSAGE}
    assert headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_gets_401(keys: ApiKeyRepository) -> None:
    created = keys.create("alice")
    assert call(list_images(created.key))[0] == 200
    keys.revoke(created.record.key_id)
    status, headers, body = call(list_images(created.key))
    assert status == 401 and body == {"message": UNAUTHORIZED_MESSAGE}
    assert headers["www-authenticate"] == "Bearer"


def test_the_key_scheme_is_case_insensitive(alice: str) -> None:
    event = list_images(None)
    event["headers"]["authorization"] = f"bearer {alice}"
    assert call(event)[0] == 200


def test_requests_are_logged_with_route_status_and_owner_never_the_key(
    alice: str, log_lines: list[str]
) -> None:
    call(list_images(alice))
    call(list_images(None))
    logged = [json.loads(line) for line in log_lines if '"request"' in line]
    assert [(r["route"], r["status"], r.get("owner")) for r in logged] == [
        ("GET /v1/images", 200, "alice"),
        ("GET /v1/images", 401, None),
    ]
    assert logged[1]["reason"] == UNAUTHORIZED_MESSAGE
    text = "\n".join(log_lines)
    assert alice not in text and alice.removeprefix("pfk_") not in text
    assert '"authorization"' not in text.lower() and '"headers"' not in text
    assert "bearer pfk_" not in text.lower()


# -- POST /v1/uploads ---------------------------------------------------------------------
def test_upload_answers_a_presigned_post_pinned_to_this_image(env: Resources, alice: str) -> None:
    before = datetime.now(UTC)
    created = create(alice)
    image_id = created["imageId"]
    key = "alice/trips/beach.jpg/original"
    assert created["statusUrl"] == f"/v1/images/{image_id}"
    upload = created["upload"]
    assert env.bucket in upload["url"]
    fields = upload["fields"]
    assert fields["key"] == key
    assert fields["Content-Type"] == "image/jpeg"
    assert fields["x-amz-meta-image-id"] == image_id
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4, never SigV2

    policy = policy_of(upload)
    conditions = policy["conditions"]
    assert ["eq", "$key", key] in conditions or {"key": key} in conditions
    assert not any(c[0] == "starts-with" for c in conditions if isinstance(c, list))
    assert ["content-length-range", 1, MAX_UPLOAD_BYTES] in conditions
    assert ["eq", "$Content-Type", "image/jpeg"] in conditions
    assert ["eq", "$x-amz-meta-image-id", image_id] in conditions
    assert {"bucket": env.bucket} in conditions
    expires = datetime.fromisoformat(policy["expiration"])
    assert expires <= before + timedelta(seconds=300) + timedelta(seconds=1)
    assert expires > before + timedelta(seconds=240)

    # The reservation outlives the presigned POST
    record = ImageRepository(env.tables["images"]).get(image_id)
    assert record is not None and record.upload_expires_at is not None
    assert datetime.fromisoformat(record.upload_expires_at) >= expires


def test_upload_status_goes_from_awaiting_to_received_with_variant_urls(
    env: Resources, alice: str
) -> None:
    created = create(alice)
    image_id = created["imageId"]

    status, _, doc = call(get_image(alice, image_id))
    assert status == 200
    assert doc["imageId"] == image_id and doc["owner"] == "alice"
    assert doc["upload_status"] == "awaiting" and doc["upload_expires_at"]
    assert doc["variants_status"] == "pending" and doc["variants"] == {}

    upload_original(env, created)
    status, _, doc = call(get_image(alice, image_id))
    assert status == 200 and doc["upload_status"] == "received"

    # When the variant step records its output
    path = "alice/trips/beach.jpg/"
    variants = {
        name: {"key": path + name, "width": 128, "height": 96, "bytes": 900,
               "content_type": "image/webp"}
        for name in VARIANT_NAMES
    }  # fmt: skip
    ImageRepository(env.tables["images"]).update(
        image_id,
        {"variants": variants, "variants_ready": list(VARIANT_NAMES), "variants_status": "ready"},
    )
    status, _, doc = call(get_image(alice, image_id))
    assert status == 200 and doc["variants_status"] == "ready"
    assert set(doc["variants"]) == set(VARIANT_NAMES)
    for name, entry in doc["variants"].items():
        url = urlsplit(entry["url"])
        assert url.path.endswith(f"/{path}{name}")
        query = parse_qs(url.query)
        assert query["X-Amz-Expires"] == ["900"]
        assert entry["width"] == 128 and entry["key"] == path + name


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"filename": "../x"}, "filename"),
        ({"filename": "a/b.jpg"}, "slash"),
        ({"album": ""}, "album is empty"),
        ({"contentType": "text/html"}, "not accepted"),
        ({"size": MAX_UPLOAD_BYTES + 1}, "limit"),
        ({"size": 0}, "size"),
        ({"size": "12"}, "size"),
        ({"size": 1.5}, "size"),
        ({"album": 7}, "album"),
        ({"extra": "x"}, "extra"),
    ],
)
def test_upload_refuses_bad_requests_with_a_reason(
    env: Resources, alice: str, overrides: dict[str, Any], reason: str
) -> None:
    status, _, body = call(post_upload(alice, upload_body(**overrides)))
    assert status == 400
    assert set(body) == {"message"} and reason in body["message"]
    assert "\n" not in body["message"]
    # Nothing was reserved
    assert (
        boto3.client("dynamodb", region_name=REGION).scan(TableName=env.tables["images"])["Count"]
        == 0
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        ({"album": "trips"}, "Field required"),
    ],
)
def test_upload_refuses_malformed_bodies(alice: str, body: Any, reason: str) -> None:
    status, _, answer = call(post_upload(alice, body))
    assert status == 400 and reason in answer["message"]


def test_a_json_body_may_arrive_base64_encoded(alice: str) -> None:
    assert call(post_upload(alice, json.dumps(upload_body()).encode()))[0] == 201


def test_a_taken_name_is_409(alice: str) -> None:
    create(alice)
    status, _, body = call(post_upload(alice, upload_body()))
    assert status == 409 and "alice/trips/beach.jpg" in body["message"]
    # Another album, or another owner, may use the name
    create(alice, album="home")


def test_another_owner_may_use_the_same_name(alice: str, bob: str) -> None:
    create(alice)
    assert call(post_upload(bob, upload_body()))[0] == 201


# -- GET /v1/images/{id} ------------------------------------------------------------------
def test_other_owners_unknown_malformed_and_deleted_images_are_one_404(
    env: Resources, alice: str, bob: str
) -> None:
    image_id = create(alice)["imageId"]
    unknown = call(get_image(alice, "f" * 32))
    assert unknown[0] == 404
    assert call(get_image(bob, image_id)) == unknown
    assert call(get_image(alice, "not-an-id")) == unknown
    assert call(get_image(alice, image_id.upper())) == unknown
    ImageRepository(env.tables["images"]).soft_delete(image_id, iso(datetime.now(UTC)))
    assert call(get_image(alice, image_id)) == unknown


# -- GET /v1/images -----------------------------------------------------------------------
def test_listing_pages_newest_first(alice: str, bob: str) -> None:
    made = [create(alice, filename=f"p{i}.jpg")["imageId"] for i in range(5)]
    create(bob, filename="theirs.jpg")
    seen: list[str] = []
    pages = 0
    query: dict[str, str] = {"limit": "2"}
    while True:
        status, _, page = call(list_images(alice, **query))
        assert status == 200
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(item["imageId"] for item in page["items"])
        assert all(item["owner"] == "alice" for item in page["items"])
        if page["next"] is None:
            break
        assert pages < 5
        query = {"limit": "2", "cursor": page["next"]}
    assert seen == list(reversed(made))
    assert pages == 3


def test_listing_by_album_and_leaving_out_deleted_images(env: Resources, alice: str) -> None:
    trips = [create(alice, filename=f"t{i}.jpg")["imageId"] for i in range(3)]
    home = create(alice, album="home", filename="h.jpg")["imageId"]
    ImageRepository(env.tables["images"]).soft_delete(trips[0], iso(datetime.now(UTC)))

    status, _, page = call(list_images(alice, album="trips"))
    assert status == 200 and page["next"] is None
    assert [i["imageId"] for i in page["items"]] == [trips[2], trips[1]]
    status, _, page = call(list_images(alice, album="home"))
    assert [i["imageId"] for i in page["items"]] == [home]
    status, _, page = call(list_images(alice))
    assert [i["imageId"] for i in page["items"]] == [home, trips[2], trips[1]]
    status, _, page = call(list_images(alice, album="nothing-here"))
    assert status == 200 and page == {"items": [], "next": None}


def test_listed_items_are_status_documents_with_urls(env: Resources, alice: str) -> None:
    image_id = create(alice)["imageId"]
    ImageRepository(env.tables["images"]).update(
        image_id,
        {"variants": {"thumb": {"key": "alice/trips/beach.jpg/thumb", "width": 1, "height": 1,
                                "bytes": 1, "content_type": "image/webp"}}},
    )  # fmt: skip
    _, _, page = call(list_images(alice))
    (item,) = page["items"]
    assert item["upload_status"] == "awaiting"
    assert "/alice/trips/beach.jpg/thumb" in item["variants"]["thumb"]["url"]


def _tampered(cursor: str, **changes: str) -> str:
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data.update(changes)
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_cursors_are_400(alice: str, bob: str) -> None:
    for i in range(3):
        create(alice, filename=f"p{i}.jpg")
        create(bob, filename=f"p{i}.jpg")
    _, _, page = call(list_images(alice, limit="1"))
    cursor = page["next"]
    assert cursor and call(list_images(alice, limit="1", cursor=cursor))[0] == 200

    _, _, album_page = call(list_images(alice, album="trips", limit="1"))
    album_cursor = album_page["next"]
    bad = [
        "not a cursor",
        "e30",  # {}
        cursor + "x",
        _tampered(cursor, owner="bob"),
        _tampered(cursor, pk="image#../../x"),
        _tampered(album_cursor, album_key="bob/trips"),
        album_cursor,  # an album's cursor for the whole listing
        encode_cursor({"pk": {"S": "image#" + "0" * 32}, "owner": {"S": "alice"}}),
    ]
    for tampered in bad:
        status, _, body = call(list_images(alice, limit="1", cursor=tampered))
        assert (status, body) == (400, {"message": "invalid cursor"}), tampered
    # Bob's own cursor is no good to Alice either
    _, _, bobs = call(list_images(bob, limit="1"))
    assert call(list_images(alice, limit="1", cursor=bobs["next"]))[0] == 400
    # and an album cursor only for that album
    status, _, _ = call(list_images(alice, album="home", limit="1", cursor=album_cursor))
    assert status == 400


@pytest.mark.parametrize("limit", ["0", "101", "-1", "two", "1.5", "", "1000000"])
def test_limit_out_of_range_is_400(alice: str, limit: str) -> None:
    status, _, body = call(list_images(alice, limit=limit))
    assert status == 400 and "limit" in body["message"]


def test_a_bad_album_name_is_400(alice: str) -> None:
    status, _, body = call(list_images(alice, album="../etc"))
    assert status == 400 and "album" in body["message"]


# -- routing and failures -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing"), ("DELETE", "/v1/images/" + "0" * 32), ("PUT", "/v1/uploads"),
     ("GET", "/")],
)  # fmt: skip
def test_unknown_routes_and_methods_are_404_json(alice: str, method: str, path: str) -> None:
    event = http_event("$default", method=method, raw_path=path, key=alice)
    status, _, body = call(event)
    assert status == 404 and body == {"message": "no such route"}


def test_aws_failures_are_503_without_details(
    alice: str, monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    def throttled(*_args: Any, **_kwargs: Any) -> Any:
        raise TransientError("query by-owner: ProvisionedThroughputExceededException secret-ish")

    monkeypatch.setattr(ImageRepository, "list_for_owner", throttled)
    status, headers, body = call(list_images(alice))
    assert status == 503 and "retry-after" in headers
    assert "Throughput" not in body["message"] and "by-owner" not in body["message"]
    assert any("ProvisionedThroughputExceededException" in line for line in log_lines)


def test_unexpected_errors_are_500_without_details(
    alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(ImageRepository, "get", broken)
    status, _, body = call(get_image(alice, "0" * 32))
    assert (status, body) == (500, {"message": "internal error"})


def test_a_missing_table_setting_is_500(
    env: Resources, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_env(monkeypatch, {"IMAGES_TABLE": ""})
    status, _, body = call(list_images(alice))
    assert (status, body) == (500, {"message": "internal error"})


def test_the_presigned_form_posts_the_original_with_its_image_id(
    env: Resources, alice: str
) -> None:
    """The form as a browser sends it (moto answers requests' POST in-process; it does
    not enforce the policy, which the test above checks instead)."""
    import requests

    created = create(alice)
    upload = created["upload"]
    answer = requests.post(
        upload["url"],
        data=upload["fields"],
        files={"file": ("beach.jpg", JPEG, "image/jpeg")},
        timeout=5,
    )
    assert answer.status_code in (200, 201, 204), answer.text
    head = boto3.client("s3", region_name=REGION).head_object(
        Bucket=env.bucket, Key="alice/trips/beach.jpg/original"
    )
    assert head["Metadata"] == {"image-id": created["imageId"]}
    assert head["ContentType"] == "image/jpeg"
