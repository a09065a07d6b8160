"""cdk-nag (AwsSolutions) acknowledgments, each with its specific reason.

Wildcard findings (AwsSolutions-IAM5) are acknowledged one by one, next to the
``grant_*`` call that produced them, on the role of the function that got the
grant. Nothing is acknowledged stack-wide.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

PACK = "AwsSolutions"


def ack(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding (``rule`` like ``IAM5[Action::s3:List*]``)."""
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason)
    )


def _role(fn: lambda_.Function) -> iam.IRole:
    if fn.role is None:  # every Function here creates its own role
        raise ValueError(f"{fn.node.path} has no role")
    return fn.role


def _ref(resource: IConstruct) -> str:
    """How cdk-nag names a resource's ARN in a finding: ``<LogicalId.Arn>``."""
    stack = cdk.Stack.of(resource)
    default_child = resource.node.default_child
    if not isinstance(default_child, cdk.CfnElement):
        raise TypeError(f"{resource.node.path} has no CloudFormation resource")
    return f"<{stack.resolve(stack.get_logical_id(default_child))}.Arn>"


def function_baseline(fn: lambda_.Function) -> None:
    """Findings every function in the stack has."""
    ack(
        fn,
        "L1",
        "Python 3.12 is pinned on purpose: the deps and Pillow layers are built for "
        "cp312/aarch64 by layers/build.py and tested against it; moving runtimes means "
        "rebuilding and re-testing both layers.",
    )
    role = _role(fn)
    ack(
        role,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        "AWSLambdaBasicExecutionRole only allows writing the function's CloudWatch Logs; "
        "the log group itself is ours, with bounded retention.",
    )
    ack(
        role,
        "IAM5[Resource::*]",
        "Tracing ACTIVE adds xray:PutTraceSegments and xray:PutTelemetryRecords, which "
        "support no resource-level permissions.",
    )


def rekognition(fn: lambda_.Function) -> None:
    ack(
        _role(fn),
        "IAM5[Resource::*]",
        "rekognition:DetectLabels on image bytes has no resource to scope to "
        "(Rekognition supports no resource-level permission for it).",
    )


def bucket_read(fn: lambda_.Function, bucket: s3.IBucket) -> None:
    role = _role(fn)
    reason = (
        "bucket.grant_read on the images bucket: objects live under per-owner prefixes "
        "({owner}/{album}/{filename}/...) that are only known at run time."
    )
    for finding in ("Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*"):
        ack(role, f"IAM5[{finding}]", reason)
    ack(role, f"IAM5[Resource::{_ref(bucket)}/*]", reason)


def bucket_put(fn: lambda_.Function, bucket: s3.IBucket) -> None:
    role = _role(fn)
    reason = (
        "bucket.grant_put: variants are written next to their original under "
        "{owner}/{album}/{filename}/; s3:Abort* lets a failed multipart put clean up."
    )
    ack(role, "IAM5[Action::s3:Abort*]", reason)
    ack(role, f"IAM5[Resource::{_ref(bucket)}/*]", reason)


def bucket_delete(fn: lambda_.Function, bucket: s3.IBucket) -> None:
    role = _role(fn)
    reason = (
        "bucket.grant_delete: the cleanup job deletes every object under a purged "
        "image's prefix (original and variants)."
    )
    ack(role, "IAM5[Action::s3:DeleteObject*]", reason)
    ack(role, f"IAM5[Resource::{_ref(bucket)}/*]", reason)


def ingest_originals(fn: lambda_.Function, bucket: s3.IBucket) -> None:
    """bucket.grant_read / grant_delete scoped to ``*/original`` (the ingest function)."""
    role = _role(fn)
    reason = (
        "bucket.grant_read and grant_delete scoped to */original keys: the ingest step "
        "reads any original that lands ({owner}/{album}/{filename}/original, names known "
        "only at run time) and removes the ones it refuses; no variant is reachable."
    )
    for finding in (
        "Action::s3:GetObject*",
        "Action::s3:GetBucket*",
        "Action::s3:List*",
        "Action::s3:DeleteObject*",
    ):
        ack(role, f"IAM5[{finding}]", reason)
    ack(role, f"IAM5[Resource::{_ref(bucket)}/*/original]", reason)


def api_objects(fn: lambda_.Function, bucket: s3.IBucket, variants: Sequence[str]) -> None:
    """The API function: grant_put on ``*/original``, grant_read on each ``*/<variant>``."""
    role = _role(fn)
    put = (
        "bucket.grant_put scoped to */original keys: the presigned POST a browser uploads "
        "with is signed by this role, and its policy pins the one key of the caller's "
        "reservation ({owner}/{album}/{filename}/original); s3:Abort* comes with grant_put."
    )
    ack(role, "IAM5[Action::s3:Abort*]", put)
    ack(role, f"IAM5[Resource::{_ref(bucket)}/*/original]", put)
    read = (
        "bucket.grant_read scoped to the eight variant keys (*/w128 ... */og-image): the "
        "API returns presigned GETs of a caller's ready variants, whose prefixes are only "
        "known at run time; the original is not readable."
    )
    for finding in ("Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*"):
        ack(role, f"IAM5[{finding}]", read)
    for name in variants:
        ack(role, f"IAM5[Resource::{_ref(bucket)}/*/{name}]", read)


BUCKET_NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


def bucket_notifications_handler(stack: cdk.Stack) -> None:
    """The CDK's singleton provider behind bucket.add_event_notification (its own code).

    Its s3:PutBucketNotification statement is scoped to the images bucket by the CDK
    (a policy of the bucket's Notifications construct), so only its managed policy
    needs an acknowledgment.
    """
    handler = stack.node.try_find_child(BUCKET_NOTIFICATIONS_HANDLER)
    if handler is None:
        raise ValueError(f"{stack.node.path} has no {BUCKET_NOTIFICATIONS_HANDLER}")
    role = handler.node.find_child("Role")
    ack(
        role,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        "The CDK's BucketNotificationsHandler (custom resource provider applying the images "
        "bucket's notification configuration): the managed policy only lets it write its "
        "own CloudWatch Logs.",
    )


def http_api_routes(routes: Sequence[apigw.HttpRoute]) -> None:
    for route in routes:
        ack(
            route,
            "APIG4",
            "No API Gateway authorizer on purpose: the API function authenticates every "
            "request itself (Authorization: Bearer <per-owner API key>, hashes in the "
            "ApiKeys table) and answers 401 without a valid key.",
        )


def table_indexes(fn: lambda_.Function, table: dynamodb.ITable) -> None:
    ack(
        _role(fn),
        f"IAM5[Resource::{_ref(table)}/index/*]",
        "table.grant_* covers the table's GSIs (docs/internals.md lists the queries each "
        "index serves); the index names are fixed by the table definition.",
    )


def kms_encrypt_decrypt(fn: lambda_.Function) -> None:
    role = _role(fn)
    reason = (
        "key.grant_encrypt_decrypt on the backup key only: GenerateDataKey* for envelope "
        "encryption of backups, ReEncrypt* when credentials are re-wrapped."
    )
    ack(role, "IAM5[Action::kms:GenerateDataKey*]", reason)
    ack(role, "IAM5[Action::kms:ReEncrypt*]", reason)


def events_dlq(queue: IConstruct) -> None:
    ack(
        queue,
        "SQS3",
        "This queue is itself the dead-letter queue of the EventBridge rule targets; "
        "a DLQ of a DLQ would only move the problem (its depth is alarmed instead).",
    )


def failure_queue(queue: IConstruct) -> None:
    ack(
        queue,
        "SQS3",
        "This queue is the cron function's on-failure destination for asynchronous "
        "invocations, a dead-letter queue in all but name; a DLQ of it would only move "
        "the problem (its depth is alarmed instead).",
    )


def secret_rotation(secret: IConstruct) -> None:
    ack(
        secret,
        "SMG4",
        "A third-party Cloudflare API token: it is issued and rotated in the Cloudflare "
        "dashboard, so there is no rotation Lambda that could rotate it.",
    )
