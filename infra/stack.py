"""The Pixflare jobs stack: a thin composition of the constructs.

Permissions are granted here, function by function, with ``grant_*`` only, so
each role's reach can be read in one place (docs/internals.md, "Functions").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_cdk import Annotations, CfnOutput, SecretValue, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra import config, nag
from infra.constructs.http_api import HttpApi
from infra.constructs.layers import Layers, function_code
from infra.constructs.monitoring import Monitoring
from infra.constructs.queue_worker import QueueWorker, create_function
from infra.constructs.schedules import Schedules
from infra.constructs.storage import Storage
from lambdas.domain.providers import TOKEN_PLACEHOLDER
from lambdas.shared.keys import VARIANT_NAMES

DOMAINS_LEFT_OUT = (
    "custom domains are left out (no domain queue, DLQ or function): "
    "synthesize with -c customDomainFallbackCname=HOST to deploy them"
)


class PixflareJobsStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: config.AppSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        runtime_env = settings.runtime_env()

        storage = Storage(self, "Storage")
        self.storage = storage
        layers = Layers(self, "Layers")
        code = function_code()
        bucket = storage.bucket
        tables = {spec.key: storage.tables[spec.key] for spec in config.TABLES}
        table_env = {spec.env: tables[spec.key].table_name for spec in config.TABLES}

        def env(*names: str, **extra: str) -> dict[str, str]:
            known = {
                config.ENV_IMAGES_BUCKET: bucket.bucket_name,
                config.ENV_BACKUP_KMS_KEY_ID: storage.backup_key.key_id,
                **table_env,
            }
            return {**{name: known[name] for name in names}, **extra}

        self.workers: dict[str, QueueWorker] = {}
        self.cloudflare_secret_arn: str | None = None
        self.api: HttpApi | None = None
        self.api_function: lambda_.Function | None = None
        if settings.runtime.enable_queues:
            variant = QueueWorker(
                self,
                "Variant",
                spec=config.VARIANT,
                code=code,
                layers=[layers.deps, layers.pillow],
                environment=env(
                    "IMAGES_BUCKET",
                    "IMAGES_TABLE",
                    "IDEMPOTENCY_TABLE",
                    **runtime_env[config.VARIANT.key],
                ),
            )
            backup = QueueWorker(
                self,
                "Backup",
                spec=config.BACKUP,
                code=code,
                layers=[layers.deps],
                environment=env(
                    "IMAGES_BUCKET",
                    "IMAGES_TABLE",
                    "DESTINATIONS_TABLE",
                    "IDEMPOTENCY_TABLE",
                    "BACKUP_KMS_KEY_ID",
                    **runtime_env[config.BACKUP.key],
                ),
            )
            self.workers = {w.spec.key: w for w in (variant, backup)}

            # variant: read originals, write variants; its image record; AI labels.
            bucket.grant_read(variant.function)
            nag.bucket_read(variant.function, bucket)
            bucket.grant_put(variant.function)
            nag.bucket_put(variant.function, bucket)
            storage.images_table.grant_read_write_data(variant.function)
            nag.table_indexes(variant.function, storage.images_table)
            storage.idempotency_table.grant_read_write_data(variant.function)
            if settings.runtime.enable_ai_classification:
                # DetectLabels on image bytes has no resource to scope to.
                iam.Grant.add_to_principal(
                    grantee=variant.function,
                    actions=["rekognition:DetectLabels"],
                    resource_arns=["*"],
                )
                nag.rekognition(variant.function)

            # backup: read-only on the bucket; destinations and their wrapped credentials.
            bucket.grant_read(backup.function)
            nag.bucket_read(backup.function, bucket)
            storage.images_table.grant_read_write_data(backup.function)
            nag.table_indexes(backup.function, storage.images_table)
            storage.destinations_table.grant_read_data(backup.function)
            nag.table_indexes(backup.function, storage.destinations_table)
            storage.idempotency_table.grant_read_write_data(backup.function)
            # Decrypt credentials; GenerateDataKey for client-side encrypted backups.
            storage.backup_key.grant_encrypt_decrypt(backup.function)
            nag.kms_encrypt_decrypt(backup.function)

            self._ingest_and_api(storage, code, layers, env, variant, backup)

        if settings.domains_enabled:
            domain = QueueWorker(
                self,
                "Domain",
                spec=config.DOMAIN,
                code=code,
                layers=[layers.deps],
                environment=env(
                    "DOMAINS_TABLE", "IDEMPOTENCY_TABLE", **runtime_env[config.DOMAIN.key]
                ),
            )
            self.workers[domain.spec.key] = domain
            # domain: no S3; its table; re-checks go back on its own queue.
            storage.domains_table.grant_read_write_data(domain.function)
            nag.table_indexes(domain.function, storage.domains_table)
            storage.idempotency_table.grant_read_write_data(domain.function)
            domain.queue.grant_send_messages(domain.function)
            if settings.uses_cloudflare:
                secret = self._cloudflare_secret()
                self.cloudflare_secret_arn = secret.secret_arn
                secret.grant_read(domain.function)
                domain.function.add_environment(config.ENV_CLOUDFLARE_SECRET_ARN, secret.secret_arn)
        elif settings.runtime.enable_queues:
            # Without a CNAME target every check would fail and end in the DLQ.
            Annotations.of(self).add_info(DOMAINS_LEFT_OUT)

        cron_env = env(
            "IMAGES_BUCKET",
            "IMAGES_TABLE",
            "STATS_TABLE",
            "DESTINATIONS_TABLE",
            "BACKUP_KMS_KEY_ID",
            # Continuation messages run under the same job idempotency as the queue workers.
            "IDEMPOTENCY_TABLE",
            **runtime_env[config.CRON.key],
        )
        if settings.runtime.enable_queues:
            cron_env[config.BACKUP.queue_url_env] = self.workers["backup"].queue.queue_url
        schedules = Schedules(
            self,
            "Schedules",
            settings=settings,
            code=code,
            layers=[layers.deps],
            environment=cron_env,
        )
        self.schedules = schedules
        cron = schedules.function
        bucket.grant_read(cron)
        nag.bucket_read(cron, bucket)
        bucket.grant_delete(cron)
        nag.bucket_delete(cron, bucket)
        storage.images_table.grant_read_write_data(cron)
        nag.table_indexes(cron, storage.images_table)
        storage.stats_table.grant_read_write_data(cron)
        storage.idempotency_table.grant_read_write_data(cron)
        storage.destinations_table.grant_read_data(cron)
        nag.table_indexes(cron, storage.destinations_table)
        storage.backup_key.grant_decrypt(cron)
        if settings.runtime.enable_queues:
            self.workers["backup"].queue.grant_send_messages(cron)

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            workers=[*self.workers.values(), schedules.worker],
            functions=[(config.API.key, self.api_function)] if self.api_function else [],
            http_api=self.api.api if self.api else None,
            extra_dlqs=[("EventsDlq", schedules.events_dlq)],
            cron_failures=schedules.failure_queue,
            cron_jobs=list(schedules.rules),
            backup_refusal_alarm=settings.runtime.enable_queues,
            # The domain function emits ProviderNotConfigured while the token is missing.
            provider_alarm_service=(
                config.DOMAIN.service
                if settings.uses_cloudflare and config.DOMAIN.key in self.workers
                else None
            ),
            alarm_email=settings.alarm_email,
        )
        nag.events_dlq(schedules.events_dlq)
        nag.failure_queue(schedules.failure_queue)
        for fn in self.functions.values():
            nag.function_baseline(fn)
        self._outputs(storage, schedules)

    def _ingest_and_api(
        self,
        storage: Storage,
        code: lambda_.Code,
        layers: Layers,
        env: Callable[..., dict[str, str]],
        variant: QueueWorker,
        backup: QueueWorker,
    ) -> None:
        """Uploads from browsers (the HTTP API) and any original that lands (ingest)."""
        bucket = storage.bucket
        runtime_env = self.settings.runtime_env()
        origins = self.settings.frontend_origins

        # ingest: S3 -> its queue for every object created under an `original` key.
        ingest = QueueWorker(
            self,
            "Ingest",
            spec=config.INGEST,
            code=code,
            layers=[layers.deps],
            environment=env(
                "IMAGES_BUCKET",
                "IMAGES_TABLE",
                "DESTINATIONS_TABLE",
                "IDEMPOTENCY_TABLE",
                **{
                    config.VARIANT.queue_url_env: variant.queue.queue_url,
                    config.BACKUP.queue_url_env: backup.queue.queue_url,
                },
                **runtime_env[config.INGEST.key],
            ),
        )
        self.workers[ingest.spec.key] = ingest
        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(ingest.queue),
            s3.NotificationKeyFilter(suffix=config.ORIGINAL_SUFFIX),
        )
        nag.bucket_notifications_handler(self)
        # Reads an original's first bytes and metadata; removes a refused one.
        originals = f"*{config.ORIGINAL_SUFFIX}"
        bucket.grant_read(ingest.function, originals)
        bucket.grant_delete(ingest.function, originals)
        nag.ingest_originals(ingest.function, bucket)
        storage.images_table.grant_read_write_data(ingest.function)
        nag.table_indexes(ingest.function, storage.images_table)
        storage.destinations_table.grant_read_data(ingest.function)
        nag.table_indexes(ingest.function, storage.destinations_table)
        storage.idempotency_table.grant_read_write_data(ingest.function)
        variant.queue.grant_send_messages(ingest.function)
        backup.queue.grant_send_messages(ingest.function)

        # api: reservations in the images table, API keys, presigned POST / GET.
        api_fn = create_function(
            self,
            "ApiFunction",
            spec=config.API,
            code=code,
            layers=[layers.deps],
            environment=env(
                "IMAGES_BUCKET", "IMAGES_TABLE", "API_KEYS_TABLE", **runtime_env[config.API.key]
            ),
        )
        self.api_function = api_fn
        storage.images_table.grant_read_write_data(api_fn)
        nag.table_indexes(api_fn, storage.images_table)
        storage.api_keys_table.grant_read_data(api_fn)
        nag.table_indexes(api_fn, storage.api_keys_table)
        # A presigned POST is signed with the function's role: it may put originals only.
        bucket.grant_put(api_fn, originals)
        # Presigned GETs of the variants, never of the original.
        for name in VARIANT_NAMES:
            bucket.grant_read(api_fn, f"*/{name}")
        nag.api_objects(api_fn, bucket, VARIANT_NAMES)

        self.api = HttpApi(self, "Http", function=api_fn, origins=origins)
        nag.http_api_routes(self.api.routes)
        if origins:
            # The browser POSTs the file straight to the bucket (presigned POST).
            bucket.add_cors_rule(
                allowed_methods=[s3.HttpMethods.POST],
                allowed_origins=list(origins),
                allowed_headers=["*"],
                max_age=config.BUCKET_CORS_MAX_AGE_SECONDS,
            )

    def _cloudflare_secret(self) -> secretsmanager.ISecret:
        existing = self.settings.runtime.cloudflare_api_token_secret_arn
        if existing:
            return secretsmanager.Secret.from_secret_complete_arn(self, "CloudflareToken", existing)
        # Created holding a recognisable placeholder, not a generated random string: until
        # an operator stores the real token (docs/operations.md), the domain function
        # marks domains blocked with "provider not configured" instead of retrying. The
        # placeholder is not a secret, so it may stand in the template.
        secret = secretsmanager.Secret(
            self,
            "CloudflareToken",
            description="Pixflare: Cloudflare API token (Custom Hostnames edit on the zone); "
            "put the token here after the first deploy",
            secret_string_value=SecretValue.unsafe_plain_text(TOKEN_PLACEHOLDER),
        )
        nag.secret_rotation(secret)
        return secret

    def _outputs(self, storage: Storage, schedules: Schedules) -> None:
        outputs: dict[str, str] = {
            config.OUTPUT_BUCKET: storage.bucket.bucket_name,
            config.OUTPUT_BACKUP_KEY: storage.backup_key.key_id,
            config.OUTPUT_CRON_QUEUE: schedules.worker.queue.queue_url,
            config.OUTPUT_CRON_FUNCTION: schedules.function.function_name,
            config.OUTPUT_ALARM_TOPIC: self.monitoring.topic_arn,
        }
        for spec in config.TABLES:
            outputs[spec.output] = storage.tables[spec.key].table_name
        for worker in self.workers.values():
            prefix = worker.spec.output_prefix
            outputs[f"{prefix}QueueUrl"] = worker.queue.queue_url
            outputs[f"{prefix}DlqUrl"] = worker.dlq.queue_url
        if self.api is not None:
            outputs[config.OUTPUT_API_URL] = self.api.url
        if self.cloudflare_secret_arn is not None:
            # Where the operator stores the token (docs/operations.md).
            outputs[config.OUTPUT_CLOUDFLARE_SECRET] = self.cloudflare_secret_arn
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
        # The runtime settings the functions were deployed with (no secrets among them), so
        # `pixflare domain add` prints the deployed CNAME target, not whatever the shell has.
        runtime: dict[str, str] = {}
        for env in self.settings.runtime_env().values():
            runtime.update(env)
        CfnOutput(
            self,
            config.OUTPUT_RUNTIME_SETTINGS,
            value=json.dumps(dict(sorted(runtime.items())), separators=(",", ":")),
        )

    @property
    def functions(self) -> dict[str, lambda_.Function]:
        found = {key: worker.function for key, worker in self.workers.items()}
        found[config.CRON.key] = self.schedules.function
        if self.api_function is not None:
            found[config.API.key] = self.api_function
        return found
