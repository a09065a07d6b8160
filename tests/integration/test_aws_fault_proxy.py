"""The fault proxy between boto3 and a real moto server: what passes, what is refused,
and that the SDK's own retries and error parsing see the faults as AWS errors."""

from __future__ import annotations

import http.client
import io
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from pixflare.local.aws_proxy import AwsFaultProxy, identify
from tests.support.faults import INTERNAL, SLOW_DOWN, FaultPlan, ProvisionedThroughputExceeded

pytestmark = pytest.mark.slow

REGION = "us-east-1"
ATTEMPTS = 3  # the clients' total_max_attempts
MB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[AwsFaultProxy]:
    with AwsFaultProxy(moto_endpoint) as running:
        yield running


def client(endpoint: str, service: str, **config: Any) -> Any:
    settings: dict[str, Any] = {
        "connect_timeout": 2,
        "read_timeout": 10,
        "retries": {"mode": "standard", "total_max_attempts": ATTEMPTS},
        **config,
    }
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**settings),
    )


def new_bucket(proxy: AwsFaultProxy) -> tuple[Any, str]:
    s3 = client(proxy.endpoint, "s3")
    bucket = f"proxy-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def new_table(proxy: AwsFaultProxy) -> tuple[Any, str]:
    ddb = client(proxy.endpoint, "dynamodb")
    table = f"proxy-{uuid.uuid4().hex[:12]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return ddb, table


# -- passing through -------------------------------------------------------------------


def test_s3_put_and_get_pass_through_unchanged(proxy: AwsFaultProxy) -> None:
    # Given a bucket made through the proxy
    s3, bucket = new_bucket(proxy)
    body = bytes(range(256)) * 64
    # When an object is written, listed, read, checked and deleted through it
    s3.put_object(Bucket=bucket, Key="a/b c.bin", Body=body, ContentType="image/x-test")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    got = s3.get_object(Bucket=bucket, Key="a/b c.bin")
    head = s3.head_object(Bucket=bucket, Key="a/b c.bin")
    s3.delete_object(Bucket=bucket, Key="a/b c.bin")
    # Then every call did what it does without the proxy, and each was named
    assert [o["Key"] for o in listed["Contents"]] == ["a/b c.bin"]
    assert got["Body"].read() == body and got["ContentType"] == "image/x-test"
    assert head["ContentLength"] == len(body)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    for name in (
        "s3.CreateBucket",
        "s3.PutObject",
        "s3.ListObjectsV2",
        "s3.GetObject",
        "s3.HeadObject",
        "s3.DeleteObject",
    ):
        assert proxy.calls[name] >= 1, (name, dict(proxy.calls))
    assert "s3.Unknown" not in proxy.calls
    assert sum(proxy.failed_attempts().values()) == 0


def test_dynamodb_put_and_get_pass_through(proxy: AwsFaultProxy) -> None:
    ddb, table = new_table(proxy)
    ddb.put_item(TableName=table, Item={"id": {"S": "one"}, "n": {"N": "7"}})
    item = ddb.get_item(TableName=table, Key={"id": {"S": "one"}}, ConsistentRead=True)["Item"]
    assert item == {"id": {"S": "one"}, "n": {"N": "7"}}
    assert proxy.calls["dynamodb.PutItem"] == proxy.calls["dynamodb.GetItem"] == 1


def test_sqs_send_and_receive_pass_through(proxy: AwsFaultProxy) -> None:
    sqs = client(proxy.endpoint, "sqs")
    url = sqs.create_queue(QueueName=f"proxy-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"hello": "world"}')
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in messages] == ['{"hello": "world"}']
    assert proxy.calls["sqs.SendMessage"] == proxy.calls["sqs.ReceiveMessage"] == 1


def test_multipart_upload_of_10_mb_in_5_mb_parts_passes_through(proxy: AwsFaultProxy) -> None:
    s3, bucket = new_bucket(proxy)
    data = bytes(range(256)) * (10 * MB // 256)
    transfer = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=transfer)
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data
    assert proxy.calls["s3.CreateMultipartUpload"] == 1
    assert proxy.calls["s3.UploadPart"] == 2
    assert proxy.calls["s3.CompleteMultipartUpload"] == 1


def test_a_chunked_request_body_is_forwarded_de_framed(proxy: AwsFaultProxy) -> None:
    # Given a bucket, and a PUT whose body comes in HTTP/1.1 chunks
    s3, bucket = new_bucket(proxy)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request(
            "PUT", f"/{bucket}/chunked.txt", body=iter([b"hello, ", b"chunked ", b"world"])
        )  # an iterable body without a length: http.client sends it chunked
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    # Then the object holds the chunks' content
    assert response.status == 200
    assert s3.get_object(Bucket=bucket, Key="chunked.txt")["Body"].read() == b"hello, chunked world"


# -- faults ----------------------------------------------------------------------------


def test_an_s3_get_fault_raises_the_injected_code_after_the_sdks_own_retries(
    proxy: AwsFaultProxy,
) -> None:
    # Given an object, and every GetObject refused with SlowDown
    s3, bucket = new_bucket(proxy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # When it is read
    with (
        proxy.faults(FaultPlan(("s3.GetObject",), kind=SLOW_DOWN)) as plan,
        pytest.raises(ClientError) as raised,
    ):
        s3.get_object(Bucket=bucket, Key="k")
    # Then boto3 raises the injected error, after as many attempts as it is allowed
    error = raised.value.response
    assert error["Error"]["Code"] == "SlowDown"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error["ResponseMetadata"]["RetryAttempts"] == ATTEMPTS - 1
    assert plan.injected["s3.GetObject"] == ATTEMPTS == proxy.calls["s3.GetObject"]
    assert proxy.failed_attempts() == {"s3.GetObject injected": ATTEMPTS}
    # ... and with the plan gone, the same read succeeds
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_a_dynamodb_throughput_fault_parses_to_its_code(proxy: AwsFaultProxy) -> None:
    ddb, table = new_table(proxy)
    plan = FaultPlan(("dynamodb.*",), kind=ProvisionedThroughputExceeded)
    with proxy.faults(plan), pytest.raises(ClientError) as raised:
        ddb.get_item(TableName=table, Key={"id": {"S": "one"}})
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # A throttling error: the SDK retried it
    assert plan.injected == {"dynamodb.GetItem": ATTEMPTS}


def test_an_sqs_fault_parses_to_its_query_error_code(proxy: AwsFaultProxy) -> None:
    sqs = client(proxy.endpoint, "sqs")
    url = sqs.create_queue(QueueName=f"proxy-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    gone = ("AWS.SimpleQueueService.NonExistentQueue", 400, "The queue does not exist")
    with proxy.faults(FaultPlan(("sqs.SendMessage",), kind=gone)), pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert proxy.calls["sqs.SendMessage"] == 1  # not a retryable error


def test_only_if_on_the_key_limits_faults_to_one_object(proxy: AwsFaultProxy) -> None:
    # Given two objects, and reads of one of them failing
    s3, bucket = new_bucket(proxy)
    for key in ("photos/broken/original", "photos/fine/original"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    plan = FaultPlan(
        ("s3.GetObject",),
        kind=INTERNAL,
        only_if=lambda params: params.get("url_path", "").endswith("broken/original"),
    )
    with proxy.faults(plan):
        # When both are read
        fine = s3.get_object(Bucket=bucket, Key="photos/fine/original")["Body"].read()
        with pytest.raises(ClientError) as raised:
            s3.get_object(Bucket=bucket, Key="photos/broken/original")
    # Then only the one failed, on every attempt
    assert fine == b"photos/fine/original"
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert plan.injected["s3.GetObject"] == ATTEMPTS
    assert plan.calls["s3.GetObject"] == ATTEMPTS + 1


def test_max_faults_bounds_the_faults(proxy: AwsFaultProxy) -> None:
    # Given at most two faults, fewer than the client's attempts
    s3, bucket = new_bucket(proxy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with proxy.faults(FaultPlan(("s3.*",), kind=INTERNAL, max_faults=2)) as plan:
        # When the object is read, and read again
        first = s3.get_object(Bucket=bucket, Key="k")
        second = s3.get_object(Bucket=bucket, Key="k")
    # Then the SDK's third attempt got through, and nothing was refused after
    assert first["ResponseMetadata"]["RetryAttempts"] == 2
    assert first["Body"].read() == second["Body"].read() == b"x"
    assert second["ResponseMetadata"]["RetryAttempts"] == 0
    assert sum(plan.injected.values()) == 2


def test_several_plans_at_once_each_keep_their_own_counts(proxy: AwsFaultProxy) -> None:
    s3, bucket = new_bucket(proxy)
    ddb, table = new_table(proxy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with (
        proxy.faults(FaultPlan(("s3.GetObject",), kind=SLOW_DOWN, max_faults=1)) as s3_plan,
        proxy.faults(FaultPlan(("dynamodb.GetItem",), kind=INTERNAL, max_faults=1)) as ddb_plan,
    ):
        s3.get_object(Bucket=bucket, Key="k")
        ddb.get_item(TableName=table, Key={"id": {"S": "one"}})
    assert s3_plan.injected == {"s3.GetObject": 1}
    assert ddb_plan.injected == {"dynamodb.GetItem": 1}
    assert proxy.injected == {"s3.GetObject": 1, "dynamodb.GetItem": 1}


def test_a_timeout_fault_makes_the_sdk_time_out_on_every_attempt(proxy: AwsFaultProxy) -> None:
    s3 = client(proxy.endpoint, "s3", read_timeout=0.5)
    s3.create_bucket(Bucket="held")
    started = time.monotonic()
    with (
        proxy.faults(FaultPlan(("s3.HeadBucket",), kind="timeout")) as plan,
        pytest.raises(ReadTimeoutError),
    ):
        s3.head_bucket(Bucket="held")
    assert plan.injected["s3.HeadBucket"] == ATTEMPTS
    assert time.monotonic() - started < 10  # the caller's timeout, not the proxy's hold


def test_a_connect_fault_closes_the_connection_without_an_answer(proxy: AwsFaultProxy) -> None:
    ddb, table = new_table(proxy)
    with (
        proxy.faults(FaultPlan(("dynamodb.PutItem",), kind="connect")) as plan,
        pytest.raises(ConnectionClosedError),
    ):
        ddb.put_item(TableName=table, Item={"id": {"S": "one"}})
    assert plan.injected["dynamodb.PutItem"] == ATTEMPTS
    # The item was never written: the request did not reach the table
    assert "Item" not in ddb.get_item(TableName=table, Key={"id": {"S": "one"}})


def test_requests_wait_for_an_upstream_set_after_the_proxy_started(moto_endpoint: str) -> None:
    # Given a proxy started before its upstream exists (as in front of the local stack)
    with AwsFaultProxy() as proxy:
        s3 = client(proxy.endpoint, "s3")
        # When the upstream is set a moment after a call was made
        setter = threading.Timer(0.3, setattr, (proxy, "upstream", moto_endpoint))
        setter.start()
        try:
            buckets = s3.list_buckets()["Buckets"]
        finally:
            setter.join()
    # Then the call waited and went through
    assert isinstance(buckets, list)
    assert proxy.calls["s3.ListBuckets"] == 1


def test_a_closed_proxy_ends_held_responses_at_once(moto_endpoint: str) -> None:
    proxy = AwsFaultProxy(moto_endpoint)
    with proxy.faults(FaultPlan(("s3.ListBuckets",), kind="timeout")):
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        connection.request("GET", "/")
        time.sleep(0.2)
        started = time.monotonic()
        proxy.close()
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.getresponse()
        connection.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("method", "target", "headers", "name"),
    [
        ("POST", "/", {"X-Amz-Target": "DynamoDB_20120810.GetItem"}, "dynamodb.GetItem"),
        ("POST", "/", {"X-Amz-Target": "AmazonSQS.ReceiveMessage"}, "sqs.ReceiveMessage"),
        ("POST", "/", {"X-Amz-Target": "TrentService.Decrypt"}, "kms.Decrypt"),
        (
            "POST",
            "/",
            {"X-Amz-Target": "secretsmanager.GetSecretValue"},
            "secretsmanager.GetSecretValue",
        ),
        (
            "POST",
            "/",
            {"X-Amz-Target": "RekognitionService.DetectLabels"},
            "rekognition.DetectLabels",
        ),
        ("GET", "/b/k/original", {}, "s3.GetObject"),
        ("HEAD", "/b/k", {}, "s3.HeadObject"),
        ("PUT", "/b/k", {}, "s3.PutObject"),
        ("PUT", "/b/k", {"x-amz-copy-source": "b/j"}, "s3.CopyObject"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "s3.UploadPart"),
        ("DELETE", "/b/k", {}, "s3.DeleteObject"),
        ("POST", "/b?delete", {}, "s3.DeleteObjects"),
        ("POST", "/b/k?uploads", {}, "s3.CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", {}, "s3.CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "s3.AbortMultipartUpload"),
        ("GET", "/b?list-type=2&prefix=a", {}, "s3.ListObjectsV2"),
        ("PUT", "/b/k?acl", {}, "s3.Unknown"),
    ],
)
def test_calls_are_named_like_botocores_operations(
    method: str, target: str, headers: dict[str, str], name: str
) -> None:
    service = name.split(".")[0]
    signed = {
        "Authorization": "AWS4-HMAC-SHA256 "
        f"Credential=AK/20260101/{REGION}/{service}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0",
        **headers,
    }
    assert identify(method, target, signed).name == name
