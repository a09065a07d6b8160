"""The RuntimeSettings output: every setting deploy time can set, as the functions were
given it, so `pixflare` (pixflare.resolve) agrees with the deployed functions."""

from __future__ import annotations

import json

from infra.config import DEPLOYED_SETTINGS
from lambdas.shared.config import RESOURCE_VARIABLES, SETTINGS
from tests.infra.support import Template


def runtime_settings(template: Template) -> dict[str, str]:
    return dict(json.loads(template["Outputs"]["RuntimeSettings"]["Value"]))


def test_it_carries_every_deployed_setting_and_nothing_else(template: Template) -> None:
    deployed = runtime_settings(template)
    assert set(deployed) == {spec.env for spec in DEPLOYED_SETTINGS}
    secrets = {spec.env for spec in SETTINGS.values() if spec.secret}
    assert not set(deployed) & (secrets | RESOURCE_VARIABLES)


def test_it_carries_what_the_domain_commands_need(template: Template, custom: Template) -> None:
    # `domain add` prints the CNAME target, `domain status` counts out of the limit
    assert runtime_settings(template)["CUSTOM_DOMAIN_FALLBACK_CNAME"] == "images.example.com"
    assert runtime_settings(template)["DOMAIN_MAX_CHECKS"] == "40"
    assert runtime_settings(custom)["DOMAIN_MAX_CHECKS"] == "12"


def test_a_stack_without_custom_domains_says_so(domains_off: Template) -> None:
    # No CNAME target: no domain worker, and nothing for the CLI to mistake for one
    assert runtime_settings(domains_off)["CUSTOM_DOMAIN_FALLBACK_CNAME"] == ""
