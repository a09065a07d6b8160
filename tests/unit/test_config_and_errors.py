"""Settings from the environment, and the botocore error adapter."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from lambdas.shared.config import Settings, settings_from_env
from lambdas.shared.errors import (
    AccessDeniedError,
    ConditionFailedError,
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    aws_errors,
    translate_client_error,
)


def test_defaults_match_the_design_brief() -> None:
    settings = settings_from_env({})
    assert settings.enable_queues is True
    assert settings.enable_ai_classification is False
    assert settings.ai_max_labels == 10
    assert settings.ai_min_classification_score == 0.1
    assert settings.soft_delete_retention_days == 30
    assert settings.domain_check_interval_seconds == 30
    assert settings.domain_max_checks == 40
    assert settings.custom_domain_provider == "dns-only"
    assert settings.dns_nameservers == ()
    assert settings.own_domains == ()
    assert settings.ai_image_width == 384
    assert settings.max_image_pixels == 100_000_000
    assert settings.backup_sync_limit == 100
    assert settings.backup_verify_sample == 20
    assert settings.backoff_base_seconds is None  # the worker's 30 s


def test_environment_values_are_parsed_into_types() -> None:
    settings = settings_from_env(
        {
            "ENABLE_QUEUES": "false",
            "ENABLE_AI_CLASSIFICATION": "TRUE",
            "AI_MAX_LABELS": "5",
            "PIXFLARE_DNS_NAMESERVERS": "127.0.0.1:5353, 10.0.0.2 ,",
            "CUSTOM_DOMAIN_PROVIDER": "cloudflare",
            "CLOUDFLARE_API_TOKEN": "very-secret",
        }
    )
    assert settings.enable_queues is False
    assert settings.enable_ai_classification is True
    assert settings.ai_max_labels == 5
    assert settings.dns_nameservers == ("127.0.0.1:5353", "10.0.0.2")
    assert settings.custom_domain_provider == "cloudflare"
    assert "very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ENABLE_QUEUES": "maybe"}, "ENABLE_QUEUES"),
        ({"AI_MAX_LABELS": "ten"}, "AI_MAX_LABELS"),
        ({"CUSTOM_DOMAIN_PROVIDER": "route53"}, "CUSTOM_DOMAIN_PROVIDER"),
        ({"AI_MIN_CLASSIFICATION_SCORE": "7"}, "AI_MIN_CLASSIFICATION_SCORE"),
        ({"PIXFLARE_BACKOFF_BASE_SECONDS": "-1"}, "PIXFLARE_BACKOFF_BASE_SECONDS"),
    ],
)
def test_bad_settings_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^invalid settings: {named}: "):
        settings_from_env(env)


def test_settings_by_field_name_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_MAX_LABELS", "3")
    monkeypatch.setenv("ENABLE_QUEUES", "off")
    settings = Settings(ai_max_labels=7)
    assert settings.ai_max_labels == 7
    assert settings.enable_queues is False


def test_missing_resource_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="IMAGES_BUCKET is not set"):
        Settings().require("images_bucket")


def client_error(code: str, status: int = 400, message: str = "boom") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Op",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 400, TransientError),
        ("ProvisionedThroughputExceededException", 400, TransientError),
        ("SlowDown", 503, TransientError),
        ("InternalError", 500, TransientError),
        ("ServiceUnavailable", 503, TransientError),
        ("NoSuchKey", 404, NotFoundError),
        ("ResourceNotFoundException", 400, NotFoundError),
        ("AccessDenied", 403, AccessDeniedError),
        ("ConditionalCheckFailedException", 400, ConditionFailedError),
        ("ValidationException", 400, PermanentError),
        ("SomethingNew", 400, TransientError),
    ],
)
def test_client_errors_map_to_our_types(code: str, status: int, kind: type[Exception]) -> None:
    err = translate_client_error(client_error(code, status), context="get thing")
    assert type(err) is kind
    assert str(err).startswith("get thing: ")


def test_access_denied_is_retried_so_a_fixed_policy_and_a_redrive_finish_the_job() -> None:
    assert issubclass(AccessDeniedError, TransientError)


def test_aws_errors_wraps_network_failures_as_transient() -> None:
    with pytest.raises(TransientError, match="put object"), aws_errors("put object"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    with pytest.raises(TransientError), aws_errors("get"):
        raise ReadTimeoutError(endpoint_url="http://x")
    with pytest.raises(NotFoundError) as info, aws_errors("get"):
        raise client_error("NoSuchKey", 404)
    assert isinstance(info.value.__cause__, ClientError)


def test_a_hung_aws_call_fails_well_inside_the_shortest_function_timeout() -> None:
    from lambdas.shared import aws

    config = aws.client_config()
    assert config.connect_timeout == aws.CONNECT_TIMEOUT_SECONDS
    assert config.read_timeout == aws.READ_TIMEOUT_SECONDS
    # total_max_attempts: botocore's max_attempts would count retries, not attempts
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.MAX_ATTEMPTS}
    # Started at the top of the shortest queue function (30 s), a call that hangs
    # still leaves the 10 s the variant stage needs (tests/unit/test_deadline.py:
    # later calls get shorter timeouts, or none at all).
    assert aws.worst_case_call_seconds() <= 30 - 10
