"""The RuntimeSettings the local stack publishes: what its functions run with (the
template's, its own shell's runtime settings winning), never a secret or a resource."""

from __future__ import annotations

import json

import pytest

from pixflare.local.stack import LocalStackError, effective_outputs
from pixflare.resolve import settings_from_outputs

TEMPLATE_OUTPUTS = {
    "DomainsTableName": "PixflareJobs-domains",
    "VariantQueueUrl": "http://127.0.0.1:4566/000000000000/PixflareJobs-variant",
    "RuntimeSettings": json.dumps(
        {
            "CUSTOM_DOMAIN_FALLBACK_CNAME": "edge.pixflare.localhost",
            "DOMAIN_MAX_CHECKS": "40",
            "ENABLE_QUEUES": "true",
        }
    ),
}


def published(stack_env: dict[str, str]) -> dict[str, str]:
    return dict(json.loads(effective_outputs(TEMPLATE_OUTPUTS, stack_env)["RuntimeSettings"]))


def test_the_stack_shell_s_runtime_settings_win_over_the_template_s() -> None:
    runtime = published({"DOMAIN_MAX_CHECKS": "3", "PIXFLARE_BACKOFF_BASE_SECONDS": "0"})
    assert runtime == {
        "CUSTOM_DOMAIN_FALLBACK_CNAME": "edge.pixflare.localhost",
        "DOMAIN_MAX_CHECKS": "3",
        "ENABLE_QUEUES": "true",
        "PIXFLARE_BACKOFF_BASE_SECONDS": "0",
    }


def test_never_a_secret_a_resource_or_anything_else_of_the_shell() -> None:
    runtime = published(
        {
            "CLOUDFLARE_API_TOKEN": "s3cr3t",
            "DOMAINS_TABLE": "elsewhere",
            "DLQ_URL": "http://elsewhere",
            "PATH": "/usr/bin",
            "AWS_SECRET_ACCESS_KEY": "key",
        }
    )
    assert runtime == json.loads(TEMPLATE_OUTPUTS["RuntimeSettings"])
    # and the other outputs are the template's
    outputs = effective_outputs(TEMPLATE_OUTPUTS, {"DOMAINS_TABLE": "elsewhere"})
    assert outputs["DomainsTableName"] == "PixflareJobs-domains"


def test_an_emptied_setting_is_published_empty() -> None:
    assert published({"CUSTOM_DOMAIN_FALLBACK_CNAME": ""})["CUSTOM_DOMAIN_FALLBACK_CNAME"] == ""


def test_the_cli_reads_the_effective_settings_and_its_own_shell_wins() -> None:
    outputs = effective_outputs(TEMPLATE_OUTPUTS, {"DOMAIN_MAX_CHECKS": "3"})
    assert settings_from_outputs(outputs, environ={}).domain_max_checks == 3
    caller = settings_from_outputs(outputs, environ={"DOMAIN_MAX_CHECKS": "5"})
    assert caller.domain_max_checks == 5


def test_a_template_without_runtime_settings() -> None:
    bare = {"DomainsTableName": "t"}
    assert effective_outputs(bare, {"PATH": "/usr/bin"}) == bare
    with_override = effective_outputs(bare, {"DOMAIN_MAX_CHECKS": "3"})
    assert json.loads(with_override["RuntimeSettings"]) == {"DOMAIN_MAX_CHECKS": "3"}


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]"])
def test_a_damaged_runtime_settings_output_stops_the_stack(raw: str) -> None:
    with pytest.raises(LocalStackError, match="RuntimeSettings is not a JSON object"):
        effective_outputs({"RuntimeSettings": raw}, {})
