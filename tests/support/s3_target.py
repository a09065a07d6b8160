"""An S3-compatible backup target for tests and benchmarks: a moto server on loopback.

It stands in for MinIO / Backblaze B2: reached over HTTP, path-style, with its
own bucket and its own credentials. It runs in a child process (not a thread)
so that its state and its credential checks are its own: moto's backends and its
auth switch are process-wide, and the tests' in-process "AWS" must stay open.
With ``auth=True`` the server checks signatures against an IAM user it creates,
so a wrong key or secret is refused with InvalidAccessKeyId / SignatureDoesNotMatch.

The child exits when its standard input closes, so it never outlives the test run.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from pixflare.local.s3_server import MotoServerProcess

REGION = "us-east-1"
STARTUP_TIMEOUT_SECONDS = 30
_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
)


@dataclass
class S3Target:
    bucket: str = "owner-backups"
    auth: bool = True
    port: int = 0
    access_key_id: str = "target-access-key"
    secret_access_key: str = field(default="target-secret-not-for-aws", repr=False)
    server: MotoServerProcess | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Target:
        """Start the server (on ``port``, or a free one the first time) with a fresh bucket."""
        self.server = MotoServerProcess(self.port)
        self.server.start()
        self.port = self.server.port
        if self.auth:
            self._create_user()
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def _create_user(self) -> None:
        # While moto's auth is off: an IAM user allowed s3:*, and its key pair...
        iam = boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="backup")
        iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=_POLICY)
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]
        # ...then every later request must be signed by a known key.
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        """Take the server down, state and all; ``start`` brings it back on the same port."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self, access_key_id: str | None = None, secret_access_key: str | None = None) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            aws_session_token=None,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=3,
                read_timeout=20,
                retries={"mode": "standard", "max_attempts": 2},
            ),
        )

    def objects(self) -> dict[str, int]:
        """Every key in the bucket and its size."""
        response = self.client().list_objects_v2(Bucket=self.bucket)
        return {o["Key"]: o["Size"] for o in response.get("Contents", [])}

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        response = self.client().get_object(Bucket=self.bucket, Key=key)
        return response["Body"].read(), response["Metadata"]

    def write(self, key: str, data: bytes, metadata: dict[str, str]) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata)

    def __enter__(self) -> S3Target:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
