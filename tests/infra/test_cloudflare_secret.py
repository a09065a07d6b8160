"""The Cloudflare token secret the stack creates starts with a placeholder, not a token."""

from __future__ import annotations

from lambdas.domain.providers import TOKEN_PLACEHOLDER, is_placeholder
from tests.infra.support import Template, props, single


def test_created_secret_holds_the_recognisable_placeholder_not_a_random_string(
    custom: Template,
) -> None:
    secret = props(custom, single(custom, "AWS::SecretsManager::Secret", "CloudflareToken"))
    # No generated random value (which Cloudflare would refuse, retry after retry) ...
    assert "GenerateSecretString" not in secret
    # ... but the placeholder the domain function recognises as "not configured".
    assert secret["SecretString"] == TOKEN_PLACEHOLDER
    assert is_placeholder(secret["SecretString"])


def test_a_real_looking_token_is_not_taken_for_the_placeholder() -> None:
    assert not is_placeholder("Zp3kq9v0QeXJt6wR2bY1uS8cN4mA7dLhGfTiKoPx")
    assert is_placeholder("")
    assert is_placeholder("  not-set  ")


def test_the_secret_is_an_output_only_in_cloudflare_mode(
    custom: Template, template: Template
) -> None:
    secret_id = single(custom, "AWS::SecretsManager::Secret", "CloudflareToken")
    # The README's one command reads this output to store the token
    assert custom["Outputs"]["CloudflareTokenSecretArn"]["Value"] == {"Ref": secret_id}
    assert "CloudflareTokenSecretArn" not in template["Outputs"]
