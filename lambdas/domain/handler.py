"""Lambda entry point for the domain queue: one verification check per message."""

from __future__ import annotations

from typing import Any

from lambdas.domain.dns_check import DnsChecker
from lambdas.domain.hostnames import normalize_hostname
from lambdas.domain.providers import provider_from_settings
from lambdas.domain.records import DomainRepository
from lambdas.domain.verification import (
    CheckParts,
    record_config_error,
    record_refusal,
    run_check,
)
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.deadline import LambdaContextLike
from lambdas.shared.errors import ConfigError, PermanentError
from lambdas.shared.messages import DomainCheck
from lambdas.shared.observability import logger, publish_metrics
from lambdas.shared.producers import enqueue_domain_check
from lambdas.shared.tracing import tracer
from lambdas.shared.worker import JobContext, QueueWorker


def check_parts(settings: Settings) -> CheckParts:
    def enqueue(next_check: DomainCheck, delay_seconds: int) -> object:
        return enqueue_domain_check(
            settings,
            hostname=next_check.hostname,
            owner=next_check.owner,
            attempt=next_check.attempt,
            round=next_check.round,
            delay_seconds=delay_seconds,
        )

    return CheckParts(
        repository=DomainRepository(settings.require("domains_table")),
        checker=DnsChecker.from_settings(settings),
        provider=provider_from_settings(settings),
        enqueue=enqueue,
        target=normalize_hostname(settings.require("custom_domain_fallback_cname")),
        max_checks=settings.domain_max_checks,
        interval_seconds=settings.domain_check_interval_seconds,
    )


def process(job: DomainCheck, ctx: JobContext) -> None:
    run_check(job, check_parts(ctx.settings), deadline=ctx.deadline)


def on_permanent_failure(job: DomainCheck, err: PermanentError, ctx: JobContext) -> None:
    repository = DomainRepository(ctx.settings.require("domains_table"))
    record_refusal(job, err, repository, iso(utcnow()))


def on_config_error(job: DomainCheck, err: ConfigError, ctx: JobContext) -> None:
    repository = DomainRepository(ctx.settings.require("domains_table"))
    record_config_error(job, err, repository, iso(utcnow()))


worker = QueueWorker(
    name="domain",
    model=DomainCheck,
    process=process,
    on_permanent_failure=on_permanent_failure,
    on_config_error=on_config_error,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@publish_metrics
def handler(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return worker.handle(event, context)
