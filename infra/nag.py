"""cdk-nag (AwsSolutions) acknowledgments, each with its specific reason.

Wildcard findings (AwsSolutions-IAM5) are acknowledged one by one, next to the
``grant_*`` call that produced them, on the role of the function that got the
grant. Nothing is acknowledged stack-wide.
"""

from __future__ import annotations

import aws_cdk as cdk
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
