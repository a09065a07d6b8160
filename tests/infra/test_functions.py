"""Functions: runtime, architecture, logging, tracing, layers, code, environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.support import (
    CUSTOM,
    Template,
    function_by_handler,
    function_env,
    pixflare_functions,
    props,
    resources,
)

pytestmark = pytest.mark.slow

HANDLERS = {
    "variant": "lambdas.variant.handler.handler",
    "backup": "lambdas.backup.handler.handler",
    "domain": "lambdas.domain.handler.handler",
    "cron": "lambdas.cron.handler.handler",
    "ingest": "lambdas.ingest.handler.handler",
    "api": "lambdas.api.handler.handler",
}
TIMEOUTS = {"variant": 30, "backup": 60, "domain": 30, "cron": 300, "ingest": 30, "api": 10}
QUEUE_FUNCTIONS = [name for name in HANDLERS if name != "api"]
ROOT = Path(__file__).resolve().parents[2]


def _layer(template: Template, name: str) -> str:
    matches = [
        lid
        for lid, res in resources(template, "AWS::Lambda::LayerVersion").items()
        if res["Properties"]["Description"].startswith(f"Pixflare {name} layer")
    ]
    assert len(matches) == 1
    return matches[0]


def test_six_functions_and_the_notifications_provider(template: Template) -> None:
    assert len(pixflare_functions(template)) == 6
    # + the CDK's BucketNotificationsHandler (Custom::S3BucketNotifications' provider)
    assert len(resources(template, "AWS::Lambda::Function")) == 7


def test_queues_off_has_neither_api_nor_ingest(queues_off: Template) -> None:
    assert len(resources(queues_off, "AWS::Lambda::Function")) == 1  # cron only


@pytest.mark.parametrize("name", list(HANDLERS))
def test_function_target(template: Template, name: str) -> None:
    fn = props(template, function_by_handler(template, HANDLERS[name]))
    assert fn["Architectures"] == ["arm64"]
    runtime = fn["Runtime"]
    assert runtime.startswith("python3.")
    assert int(runtime.split(".")[1]) >= 12
    assert fn["Timeout"] == TIMEOUTS[name]
    assert fn["TracingConfig"] == {"Mode": "Active"}
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = fn["LoggingConfig"]["LogGroup"]["Ref"]
    assert 1 <= props(template, log_group)["RetentionInDays"] <= 90


def test_timeouts_in_order(template: Template) -> None:
    got = [props(template, function_by_handler(template, HANDLERS[n]))["Timeout"] for n in HANDLERS]
    assert got == [30, 60, 30, 300, 30, 10]


def test_pillow_layer_on_variant_only_deps_everywhere(template: Template) -> None:
    deps, pillow = _layer(template, "deps"), _layer(template, "pillow")
    for name, handler in HANDLERS.items():
        layers = props(template, function_by_handler(template, handler))["Layers"]
        assert {"Ref": deps} in layers, name
        if name == "variant":
            assert layers == [{"Ref": deps}, {"Ref": pillow}]
        else:
            assert layers == [{"Ref": deps}], name
    for layer in (deps, pillow):
        assert props(template, layer)["CompatibleArchitectures"] == ["arm64"]
        assert props(template, layer)["CompatibleRuntimes"] == ["python3.12"]


def test_code_asset_is_only_the_lambdas_package(template: Template) -> None:
    paths = {res["Metadata"]["aws:asset:path"] for res in pixflare_functions(template).values()}
    assert len(paths) == 1  # one bundle shared by the six functions
    bundle = Path(paths.pop())
    assert bundle.is_dir()
    assert ROOT / "layers" / "build" in bundle.parents
    assert sorted(p.name for p in bundle.iterdir()) == ["lambdas"]
    assert (bundle / "lambdas" / "__init__.py").is_file()


@pytest.mark.parametrize("name", list(HANDLERS))
def test_powertools_environment(template: Template, name: str) -> None:
    env = function_env(template, function_by_handler(template, HANDLERS[name]))
    assert env["POWERTOOLS_SERVICE_NAME"] == name
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Pixflare"
    assert env["LOG_LEVEL"] == "INFO"
    assert env["ENABLE_QUEUES"] == "true"
    queue_fed = name in QUEUE_FUNCTIONS
    assert ("QUEUE_URL" in env) is queue_fed
    assert ("DLQ_URL" in env) is queue_fed


def _ref_prefix(value: object) -> str:
    assert isinstance(value, dict)
    ref = value["Ref"]
    assert isinstance(ref, str)
    return ref


def test_resource_environment(template: Template) -> None:
    variant = function_env(template, function_by_handler(template, HANDLERS["variant"]))
    backup = function_env(template, function_by_handler(template, HANDLERS["backup"]))
    domain = function_env(template, function_by_handler(template, HANDLERS["domain"]))
    cron = function_env(template, function_by_handler(template, HANDLERS["cron"]))

    assert _ref_prefix(variant["IMAGES_BUCKET"]).startswith("StorageImagesBucket")
    assert _ref_prefix(variant["DLQ_URL"]).startswith("VariantDlq")
    assert variant["VARIANT_QUEUE_URL"] == variant["QUEUE_URL"]
    assert {"DESTINATIONS_TABLE", "BACKUP_KMS_KEY_ID", "DOMAINS_TABLE"}.isdisjoint(variant)
    assert variant["ENABLE_AI_CLASSIFICATION"] == "false"
    assert variant["AI_MAX_LABELS"] == "10"
    assert variant["AI_MIN_CLASSIFICATION_SCORE"] == "0.1"

    assert _ref_prefix(backup["DESTINATIONS_TABLE"]).startswith("StorageDestinationsTable")
    assert _ref_prefix(backup["BACKUP_KMS_KEY_ID"]).startswith("StorageBackupKey")
    assert _ref_prefix(backup["DLQ_URL"]).startswith("BackupDlq")

    assert _ref_prefix(domain["DOMAINS_TABLE"]).startswith("StorageDomainsTable")
    assert domain["DOMAIN_QUEUE_URL"] == domain["QUEUE_URL"]
    assert domain["DOMAIN_CHECK_INTERVAL_SECONDS"] == "30"
    assert domain["DOMAIN_MAX_CHECKS"] == "40"
    assert domain["CUSTOM_DOMAIN_PROVIDER"] == "dns-only"
    assert "IMAGES_BUCKET" not in domain
    assert "CLOUDFLARE_API_TOKEN_SECRET_ARN" not in domain

    assert _ref_prefix(cron["CRON_QUEUE_URL"]).startswith("SchedulesCronQueue")
    assert _ref_prefix(cron["BACKUP_QUEUE_URL"]).startswith("BackupQueue")
    assert _ref_prefix(cron["STATS_TABLE"]).startswith("StorageStatsTable")
    assert cron["SOFT_DELETE_RETENTION_DAYS"] == "30"


def test_ingest_and_api_environment(template: Template) -> None:
    ingest = function_env(template, function_by_handler(template, HANDLERS["ingest"]))
    api = function_env(template, function_by_handler(template, HANDLERS["api"]))
    assert _ref_prefix(ingest["IMAGES_BUCKET"]).startswith("StorageImagesBucket")
    assert _ref_prefix(ingest["IMAGES_TABLE"]).startswith("StorageImagesTable")
    assert _ref_prefix(ingest["DESTINATIONS_TABLE"]).startswith("StorageDestinationsTable")
    assert _ref_prefix(ingest["IDEMPOTENCY_TABLE"]).startswith("StorageIdempotencyTable")
    assert _ref_prefix(ingest["VARIANT_QUEUE_URL"]).startswith("VariantQueue")
    assert _ref_prefix(ingest["BACKUP_QUEUE_URL"]).startswith("BackupQueue")
    assert _ref_prefix(ingest["QUEUE_URL"]).startswith("IngestQueue")
    assert ingest["INGEST_QUEUE_URL"] == ingest["QUEUE_URL"]
    assert {"API_KEYS_TABLE", "DOMAINS_TABLE", "BACKUP_KMS_KEY_ID"}.isdisjoint(ingest)

    assert _ref_prefix(api["IMAGES_BUCKET"]).startswith("StorageImagesBucket")
    assert _ref_prefix(api["IMAGES_TABLE"]).startswith("StorageImagesTable")
    assert _ref_prefix(api["API_KEYS_TABLE"]).startswith("StorageApiKeysTable")
    assert not {name for name in api if name.endswith("_QUEUE_URL")}
    assert {"DESTINATIONS_TABLE", "IDEMPOTENCY_TABLE", "BACKUP_KMS_KEY_ID"}.isdisjoint(api)
    assert "FRONTEND_ORIGINS" not in api  # empty by default: not rendered


def test_api_and_ingest_sizes(template: Template) -> None:
    api = props(template, function_by_handler(template, HANDLERS["api"]))
    ingest = props(template, function_by_handler(template, HANDLERS["ingest"]))
    assert (api["Timeout"], api["MemorySize"]) == (10, 512)
    assert (ingest["Timeout"], ingest["MemorySize"]) == (30, 256)
    # No reserved concurrency: on a 10-concurrency account it would starve the mappings.
    assert "ReservedConcurrentExecutions" not in api


def test_context_reaches_environment(custom: Template) -> None:
    variant = function_env(custom, function_by_handler(custom, HANDLERS["variant"]))
    domain = function_env(custom, function_by_handler(custom, HANDLERS["domain"]))
    assert variant["ENABLE_AI_CLASSIFICATION"] == "true"
    assert domain["CUSTOM_DOMAIN_PROVIDER"] == CUSTOM["customDomainProvider"]
    assert domain["DOMAIN_MAX_CHECKS"] == CUSTOM["domainMaxChecks"]
    api = function_env(custom, function_by_handler(custom, HANDLERS["api"]))
    assert api["FRONTEND_ORIGINS"] == CUSTOM["frontendOrigins"]
    secret = _ref_prefix(domain["CLOUDFLARE_API_TOKEN_SECRET_ARN"])
    assert custom["Resources"][secret]["Type"] == "AWS::SecretsManager::Secret"


def test_queues_off_cron_environment(queues_off: Template) -> None:
    cron = function_env(queues_off, function_by_handler(queues_off, HANDLERS["cron"]))
    assert cron["ENABLE_QUEUES"] == "false"
    assert "BACKUP_QUEUE_URL" not in cron
    assert "CRON_QUEUE_URL" in cron


def test_variant_memory_fits_the_pixel_limit(template: Template) -> None:
    # bench/variant_memory.py: a 100 MP RGBA PNG (the default MAX_IMAGE_PIXELS) peaks ~1.2 GB.
    fn = props(template, function_by_handler(template, HANDLERS["variant"]))
    assert fn["MemorySize"] == 2048
