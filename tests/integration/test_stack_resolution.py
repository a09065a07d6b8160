"""Finding a stack's outputs: by name (--stack), a damaged local outputs document, a
stack without custom domains: one-line errors."""

from __future__ import annotations

import io
import json

import boto3
import pytest

from pixflare.cli import build_parser, main
from pixflare.commands.domain import NOT_DEPLOYED
from pixflare.resolve import (
    DEFAULT_STACK_NAME,
    OUTPUTS_BUCKET,
    ResolveError,
    _local_outputs,
    outputs_key,
    resolve_settings,
)
from tests.support.aws_resources import REGION, Resources


@pytest.mark.parametrize("document", [b"not json {", b"[1, 2]"])
def test_a_damaged_outputs_document_is_a_resolve_error(aws: Resources, document: bytes) -> None:
    # Given an endpoint whose outputs document is not the JSON object the local stack writes
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=OUTPUTS_BUCKET)
    s3.put_object(Bucket=OUTPUTS_BUCKET, Key=outputs_key("PixflareJobs"), Body=document)
    # When the CLI reads it, Then it says so in words (never a traceback)
    with pytest.raises(ResolveError, match="outputs document"):
        _local_outputs({"region_name": REGION}, "PixflareJobs")


STAGING = "PixflareStaging"


def _deploy_outputs(stack: str, outputs: dict[str, str]) -> None:
    """A CloudFormation stack (in moto) whose outputs are ``outputs``."""
    template = {
        "Resources": {
            "Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{stack}-x"}}
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=stack, TemplateBody=json.dumps(template)
    )


def _outputs(aws: Resources, *, domains: bool) -> dict[str, str]:
    outputs = {
        "ImagesBucketName": aws.bucket,
        "ImagesTableName": aws.tables["images"],
        "DomainsTableName": aws.tables["domains"],
        "VariantQueueUrl": aws.queue_urls["variant"],
        "BackupQueueUrl": aws.queue_urls["backup"],
        "CronQueueUrl": aws.queue_urls["cron"],
    }
    if domains:
        outputs["DomainQueueUrl"] = aws.queue_urls["domain"]
    return outputs


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_stack_option_finds_a_named_stack(aws: Resources) -> None:
    # Given a second stack, deployed with -c stackName=PixflareStaging
    _deploy_outputs(STAGING, _outputs(aws, domains=True))
    # When it is resolved by name, Then its outputs are the settings
    settings = resolve_settings(stack=STAGING, region=REGION)
    assert settings.images_bucket == aws.bucket
    assert settings.domain_queue_url == aws.queue_urls["domain"]
    # And the default name is another stack, which is not there
    with pytest.raises(ResolveError, match=f"stack {DEFAULT_STACK_NAME} was not found.*--stack"):
        resolve_settings(stack=DEFAULT_STACK_NAME, region=REGION)


def test_the_cli_default_stack_is_the_apps(aws: Resources) -> None:
    from infra.config import STACK_NAME

    args = build_parser().parse_args(["dlq", "list"])
    assert args.stack_name == STACK_NAME == DEFAULT_STACK_NAME
    assert build_parser().parse_args(["--stack", STAGING, "dlq", "list"]).stack_name == STAGING
    assert build_parser().parse_args(["dlq", "list", "--stack", STAGING]).stack_name == STAGING


@pytest.mark.parametrize(
    "command",
    [
        ["add", "cdn.example.test", "--owner", "alice"],
        ["status", "cdn.example.test"],
        ["recheck", "cdn.example.test"],
    ],
)
def test_domain_commands_on_a_stack_without_custom_domains(
    aws: Resources, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # Given a stack synthesized without customDomainFallbackCname (no DomainQueueUrl output)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):  # the CLI sets them from --region
        monkeypatch.setenv(name, REGION)
    _deploy_outputs(STAGING, _outputs(aws, domains=False))
    # When a domain command targets it
    code, out, err = _run("--stack", STAGING, "--region", REGION, "domain", *command)
    # Then it fails with one line saying how to deploy them
    assert code == 1
    assert out == ""
    assert err == f"pixflare: {NOT_DEPLOYED}\n"
    assert "custom domains are not deployed: synthesize with -c customDomainFallbackCname=" in err
