"""The images bucket, the DynamoDB tables and the backup KMS key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import config


def _attribute(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Storage(Construct):
    """Everything with state: keep it on stack deletion (RETAIN)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.ACCESS_LOG_RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(
                        config.ABORT_INCOMPLETE_MULTIPART_DAYS
                    ),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.bucket = s3.Bucket(
            self,
            "ImagesBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="images/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(
                        config.ABORT_INCOMPLETE_MULTIPART_DAYS
                    ),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.backup_key = kms.Key(
            self,
            "BackupKey",
            description="Pixflare: wraps backup destination credentials and backup data keys",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.tables: dict[str, dynamodb.Table] = {}
        for spec in config.TABLES:
            table = dynamodb.Table(
                self,
                f"{spec.key}Table",
                partition_key=_attribute(spec.partition_key),
                sort_key=_attribute(spec.sort_key) if spec.sort_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                encryption=dynamodb.TableEncryption.AWS_MANAGED,
                time_to_live_attribute=spec.ttl_attribute,
                removal_policy=RemovalPolicy.RETAIN,
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.partition_key),
                    sort_key=_attribute(index.sort_key) if index.sort_key else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            self.tables[spec.key] = table

    @property
    def images_table(self) -> dynamodb.Table:
        return self.tables["Images"]

    @property
    def domains_table(self) -> dynamodb.Table:
        return self.tables["Domains"]

    @property
    def stats_table(self) -> dynamodb.Table:
        return self.tables["Stats"]

    @property
    def destinations_table(self) -> dynamodb.Table:
        return self.tables["Destinations"]

    @property
    def api_keys_table(self) -> dynamodb.Table:
        return self.tables["ApiKeys"]

    @property
    def idempotency_table(self) -> dynamodb.Table:
        return self.tables["Idempotency"]
