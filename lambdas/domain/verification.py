"""One verification check of a custom hostname, and the pure rule deciding what follows.

:func:`decide` is the schedule: given what this check found, the attempt number
and the limit, activate / re-check later with attempt + 1 / fail with the last
reason. :func:`run_check` does one check with the parts it is handed (the domains
table, the DNS checker, the activation provider, a way to enqueue) and applies
the decision through conditional writes keyed on (round, checks): a duplicate or
stale delivery finds the record already moved on and does nothing.

A re-check is recorded first (checks = attempt, last_error, ``followup_sent``
false), then sent, then confirmed. If the send fails the message is retried; the
retry finds its own attempt recorded but unconfirmed and only sends the follow-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.domain.dns_check import CHECK_WORST_CASE_SECONDS, QUERY_TIMEOUT_SECONDS, DnsChecker
from lambdas.domain.providers import ActivationProvider, ProviderNotConfiguredError
from lambdas.domain.records import DomainRecord, DomainRepository
from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.deadline import Deadline
from lambdas.shared.errors import ConditionFailedError, NotFoundError, PermanentError
from lambdas.shared.messages import DomainCheck
from lambdas.shared.observability import logger, metrics

# Kept back from the function's remaining time for the write that records the check
# (the AWS client's shortest timeouts, 3 s, and the report margin: 4 s); the
# follow-up send and its confirmation after it are resumed by a retry if cut short.
RESERVED_SECONDS = aws.MIN_CALL_SECONDS
# The DNS check's budget: its queries' worst case (3 x 2 s = 6 s), and the least it is
# started with: one query's full timeout (2 s). The provider's budget is its own worst
# case (Cloudflare: 2 requests x 5 s = 10 s; dns-only: none).
DNS_BUDGET_SECONDS = CHECK_WORST_CASE_SECONDS
MIN_DNS_BUDGET_SECONDS = QUERY_TIMEOUT_SECONDS

VerdictState = Literal["active", "not-yet", "refused"]
# Emitted (Count 1, default ``service`` dimension) each time a domain is blocked because
# the activation provider has no usable token; the stack's alarm watches this name.
PROVIDER_NOT_CONFIGURED_METRIC = "ProviderNotConfigured"


class ActivationRefusedError(PermanentError):
    """The activation provider refused the hostname (blocked, moved, ...): recorded as blocked."""


@dataclass(frozen=True)
class Verdict:
    """What one check found, before the schedule is applied."""

    state: VerdictState
    reason: str | None = None
    provider: str | None = None


@dataclass(frozen=True)
class Activate:
    provider: str | None


@dataclass(frozen=True)
class Recheck:
    next_attempt: int
    delay_seconds: int
    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class Block:
    reason: str


Action = Activate | Recheck | Fail | Block


def decide(verdict: Verdict, *, attempt: int, max_checks: int, interval_seconds: int) -> Action:
    """The schedule: at most ``max_checks`` checks of a round, ``interval_seconds`` apart."""
    if verdict.state == "active":
        return Activate(verdict.provider)
    reason = verdict.reason or "not verified"
    if verdict.state == "refused":
        return Block(reason)
    if attempt < max_checks:
        return Recheck(attempt + 1, interval_seconds, reason)
    checks = "check" if attempt == 1 else "checks"
    return Fail(f"not verified after {attempt} {checks}: {reason}")


Enqueue = Callable[[DomainCheck, int], object]  # (next check, delay seconds)


@dataclass
class CheckParts:
    repository: DomainRepository
    checker: DnsChecker
    provider: ActivationProvider
    enqueue: Enqueue
    target: str
    max_checks: int
    interval_seconds: int
    clock: Callable[[], str] = lambda: iso(utcnow())


def _is_current(record: DomainRecord, job: DomainCheck) -> bool:
    return record.owner == job.owner and record.round == job.round and record.status == "pending"


def _send_followup(parts: CheckParts, job: DomainCheck, delay_seconds: int) -> None:
    parts.enqueue(
        DomainCheck(
            hostname=job.hostname, owner=job.owner, attempt=job.attempt + 1, round=job.round
        ),
        delay_seconds,
    )
    # A lost condition means the follow-up already ran and moved the record on.
    with contextlib.suppress(ConditionFailedError):
        parts.repository.confirm_followup(
            job.hostname, round=job.round, attempt=job.attempt, now=parts.clock()
        )


def run_check(job: DomainCheck, parts: CheckParts, *, deadline: Deadline) -> Action | None:
    """Check once and apply the decision; None when this delivery is a duplicate or stale."""
    record = parts.repository.get(job.hostname)
    if record is None:
        raise NotFoundError(f"no custom domain {job.hostname}")
    if not _is_current(record, job):
        logger.info("stale domain check ignored", extra={"status": record.status})
        return None
    if record.checks == job.attempt and not record.followup_sent:
        # This check was recorded but its follow-up send failed: send only that.
        _send_followup(parts, job, parts.interval_seconds)
        return Recheck(job.attempt + 1, parts.interval_seconds, record.last_error or "")
    if record.checks != job.attempt - 1:
        logger.info("duplicate domain check ignored", extra={"checks": record.checks})
        return None

    work = deadline.less(RESERVED_SECONDS)  # what is left once the record write is kept
    work.require(MIN_DNS_BUDGET_SECONDS, "a DNS check")
    result = parts.checker.check(
        job.hostname,
        token=record.token,
        target=parts.target,
        deadline=work.within(DNS_BUDGET_SECONDS),
    )
    if result.ok:
        activation = parts.provider.activate(
            job.hostname, deadline=work.within(parts.provider.worst_case_seconds)
        )
        verdict = Verdict(
            "not-yet" if activation.state == "pending" else activation.state,
            activation.detail,
            activation.provider,
        )
    else:
        verdict = Verdict("not-yet", result.reason)

    action = decide(
        verdict,
        attempt=job.attempt,
        max_checks=parts.max_checks,
        interval_seconds=parts.interval_seconds,
    )
    if isinstance(action, Block):
        raise ActivationRefusedError(action.reason)
    now = parts.clock()
    try:
        if isinstance(action, Activate):
            parts.repository.record_check(
                job.hostname,
                round=job.round,
                attempt=job.attempt,
                status="active",
                last_error=None,
                now=now,
                provider=action.provider,
            )
            metrics.add_metric(name="DomainActivated", unit=MetricUnit.Count, value=1)
        elif isinstance(action, Fail):
            parts.repository.record_check(
                job.hostname,
                round=job.round,
                attempt=job.attempt,
                status="failed",
                last_error=action.reason,
                now=now,
            )
            metrics.add_metric(name="DomainFailed", unit=MetricUnit.Count, value=1)
        else:
            parts.repository.record_check(
                job.hostname,
                round=job.round,
                attempt=job.attempt,
                status="pending",
                last_error=action.reason,
                now=now,
                followup_sent=False,
            )
    except ConditionFailedError:
        logger.info("domain check lost to a concurrent delivery; nothing recorded")
        return None
    if isinstance(action, Recheck):
        _send_followup(parts, job, action.delay_seconds)
    logger.info(
        "domain check done",
        extra={"action": type(action).__name__, "reason": getattr(action, "reason", None)},
    )
    return action


def record_config_error(
    job: DomainCheck, err: Exception, repository: DomainRepository, now: str
) -> None:
    """The config-error hook's work: the domain record says which setting stopped its
    check (``domain status`` shows it); the worker sends the message to the DLQ."""
    try:
        repository.record_config_error(
            job.hostname,
            owner=job.owner,
            round=job.round,
            attempt=job.attempt,
            error=str(err),
            now=now,
        )
    except ConditionFailedError:
        logger.info("configuration error not recorded: the record moved on or is gone")


def record_refusal(
    job: DomainCheck, err: PermanentError, repository: DomainRepository, now: str
) -> None:
    """The permanent-failure hook's work: recorded as ``blocked``, once.

    A provider refusal of the hostname, or a provider without a usable API token
    (ProviderNotConfiguredError: the ``ProviderNotConfigured`` metric, which an alarm
    watches, and ``last_error`` saying where to store the token). The message is
    acknowledged either way: no retry, no DLQ, no follow-up check.
    """
    if isinstance(err, ProviderNotConfiguredError):
        metrics.add_metric(name=PROVIDER_NOT_CONFIGURED_METRIC, unit=MetricUnit.Count, value=1)
        logger.error(
            "activation provider not configured; domain blocked",
            extra={"reason": str(err), "tokenSource": err.source},
        )
    elif not isinstance(err, ActivationRefusedError):
        return  # the record is gone (NotFoundError): nothing to write to
    try:
        repository.record_check(
            job.hostname,
            round=job.round,
            attempt=job.attempt,
            status="blocked",
            last_error=str(err),
            now=now,
        )
    except ConditionFailedError:
        logger.info("refusal not recorded: the record moved on")
