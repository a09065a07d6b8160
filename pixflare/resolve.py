"""Settings for a target stack: resource names from its CloudFormation outputs.

A deployed stack is found with ``describe_stacks``. The embedded local stack
publishes the outputs of its template as a JSON document in a well-known bucket
on its endpoint (cheaper than moto's CloudFormation); an endpoint without that
document is asked with ``describe_stacks`` too. Runtime settings
(DOMAIN_MAX_CHECKS, CUSTOM_DOMAIN_FALLBACK_CNAME, ...) come from the stack's
``RuntimeSettings`` output: what its functions run with (the local stack publishes
its effective ones, its own shell's overrides included); a runtime setting in the
caller's environment wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from lambdas.shared.config import RUNTIME_VARIABLES, Settings, settings_from_env
from lambdas.shared.errors import ConfigError

DEFAULT_STACK_NAME = "PixflareJobs"
OUTPUTS_BUCKET = "pixflare-local-stack"
RUNTIME_SETTINGS_OUTPUT = "RuntimeSettings"
LOCAL_REGION = "us-east-1"

# Stack output -> the environment variable a function would be given (docs/internals.md).
OUTPUT_VARIABLES: dict[str, str] = {
    "ImagesBucketName": "IMAGES_BUCKET",
    "ImagesTableName": "IMAGES_TABLE",
    "DomainsTableName": "DOMAINS_TABLE",
    "StatsTableName": "STATS_TABLE",
    "DestinationsTableName": "DESTINATIONS_TABLE",
    "IdempotencyTableName": "IDEMPOTENCY_TABLE",
    "ApiKeysTableName": "API_KEYS_TABLE",
    "BackupKeyId": "BACKUP_KMS_KEY_ID",
    "VariantQueueUrl": "VARIANT_QUEUE_URL",
    "BackupQueueUrl": "BACKUP_QUEUE_URL",
    "DomainQueueUrl": "DOMAIN_QUEUE_URL",
    "CronQueueUrl": "CRON_QUEUE_URL",
    "IngestQueueUrl": "INGEST_QUEUE_URL",
}


class ResolveError(ConfigError):
    """The target stack cannot be found or read (the message says what to do)."""


def outputs_key(stack: str) -> str:
    return f"stacks/{stack}/outputs.json"


def _local_outputs(client_kwargs: dict[str, Any], stack: str) -> dict[str, str] | None:
    """The local stack's outputs document, or None when the endpoint has none."""
    try:
        body = (
            boto3.client("s3", **client_kwargs)
            .get_object(Bucket=OUTPUTS_BUCKET, Key=outputs_key(stack))["Body"]
            .read()
        )
    except ClientError:
        return None
    try:
        outputs = json.loads(body).get("Outputs", {})
        return {str(k): str(v) for k, v in outputs.items()}
    except (ValueError, AttributeError):
        raise ResolveError(
            f"the local stack's outputs document s3://{OUTPUTS_BUCKET}/{outputs_key(stack)} "
            "is damaged; restart `pixflare local up`"
        ) from None


def describe_target(endpoint: str | None, stack: str) -> str:
    return f"the local stack at {endpoint}" if endpoint else f"stack {stack}"


def stack_outputs(
    stack: str, *, endpoint: str | None = None, region: str | None = None
) -> dict[str, str]:
    """OutputKey -> OutputValue of the stack (deployed, or local at ``endpoint``)."""
    kwargs: dict[str, Any] = {
        "config": Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2})
    }
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if region:
        kwargs["region_name"] = region
    where = describe_target(endpoint, stack)
    try:
        if endpoint:
            local = _local_outputs(kwargs, stack)
            if local is not None:
                return local
        cloudformation = boto3.client("cloudformation", **kwargs)
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except NoCredentialsError:
        raise ResolveError(
            "no AWS credentials: configure a profile (AWS_PROFILE) or keys, "
            "or pass --endpoint URL to use a local stack"
        ) from None
    except NoRegionError:
        raise ResolveError("no AWS region: pass --region or set AWS_REGION") from None
    except EndpointConnectionError:
        raise ResolveError(
            f"cannot reach {endpoint or 'AWS'}"
            + (": is `pixflare local up` running there?" if endpoint else "")
        ) from None
    except ClientError as err:
        error = err.response.get("Error", {})
        if "does not exist" in str(error.get("Message", "")):
            hint = (
                "start it with `pixflare local up`"
                if endpoint
                else "deploy it (cdk deploy), or pass --stack NAME / --region R"
            )
            raise ResolveError(f"{where} was not found; {hint}") from None
        raise ResolveError(
            f"cannot read {where}: {error.get('Code', '')} {error.get('Message', '')}".strip()
        ) from None
    except BotoCoreError as err:
        raise ResolveError(f"cannot read {where}: {err}") from None
    if not stacks:
        raise ResolveError(f"{where} was not found")
    return {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in stacks[0].get("Outputs", [])
        if "OutputKey" in o and "OutputValue" in o
    }


def _deployed_runtime_settings(outputs: Mapping[str, str]) -> dict[str, str]:
    """The runtime settings the stack's functions were given (its RuntimeSettings output)."""
    raw = outputs.get(RUNTIME_SETTINGS_OUTPUT)
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise ResolveError(f"the stack's {RUNTIME_SETTINGS_OUTPUT} output is not JSON") from None
    if not isinstance(document, dict):
        raise ResolveError(f"the stack's {RUNTIME_SETTINGS_OUTPUT} output is not an object")
    return {str(k): str(v) for k, v in document.items() if k in RUNTIME_VARIABLES}


def settings_from_outputs(
    outputs: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> Settings:
    environ = os.environ if environ is None else environ
    values = _deployed_runtime_settings(outputs)
    # The caller's environment wins, as it does for the embedded stack's workers.
    values.update({name: value for name, value in environ.items() if name in RUNTIME_VARIABLES})
    for output, variable in OUTPUT_VARIABLES.items():
        if outputs.get(output):
            values[variable] = outputs[output]
    if "VariantQueueUrl" not in outputs:
        # A stack synthesized with enableQueues=false has no queues to send to.
        values["ENABLE_QUEUES"] = "false"
    return settings_from_env(values)


def resolve_settings(
    *, stack: str, endpoint: str | None = None, region: str | None = None
) -> Settings:
    return settings_from_outputs(stack_outputs(stack, endpoint=endpoint, region=region))
