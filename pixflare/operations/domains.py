"""Adding a custom domain, reading its status, starting a new round of checks.

What ``pixflare domain add|status|recheck`` call; usable from any operator tool.

Every path that should leave a check on the queue can be repeated safely: the
record says whether the first check of its round was confirmed sent
(``followup_sent``), and re-sending attempt 1 of a round is harmless (the
handler's conditional writes let only one delivery of an attempt count).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lambdas.domain.hostnames import normalize_hostname, own_domains, validate_hostname
from lambdas.domain.records import RECHECKABLE, DomainRecord, DomainRepository
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.errors import ConditionFailedError, PermanentError
from lambdas.shared.keys import InvalidNameError, validate_segment
from lambdas.shared.producers import enqueue_domain_check
from lambdas.shared.worker import config_error_fix

# `pixflare dlq` names the queue a domain check waits in after a configuration error.
DOMAIN_QUEUE = "domain"

TOKEN_BYTES = 24  # 192 bits


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class RecheckRefusedError(PermanentError):
    """The domain is not in a state a new round can start from."""


@dataclass(frozen=True)
class DomainView:
    """A record plus what the caller did: what ``pixflare domain`` prints."""

    record: DomainRecord
    target: str
    max_checks: int
    created: bool = False
    check_enqueued: bool = False

    @property
    def config_error_fix(self) -> str | None:
        """What to do about the record's configuration error, if it has one."""
        return config_error_fix(DOMAIN_QUEUE) if self.record.config_error else None

    def to_dict(self) -> dict[str, Any]:
        status = self.record.to_status(self.target)
        if status["config_error"] is not None:
            status["config_error"] = {**status["config_error"], "fix": self.config_error_fix}
        return {
            **status,
            "max_checks": self.max_checks,
            "created": self.created,
            "check_enqueued": self.check_enqueued,
        }


def fallback_target(settings: Settings) -> str:
    return normalize_hostname(settings.require("custom_domain_fallback_cname"))


def _repository(settings: Settings) -> DomainRepository:
    return DomainRepository(settings.require("domains_table"))


def _enqueue_first_check(
    settings: Settings, repository: DomainRepository, record: DomainRecord
) -> bool:
    """Queue attempt 1 of the record's round; False when queues are disabled."""
    sent = enqueue_domain_check(
        settings, hostname=record.hostname, owner=record.owner, attempt=1, round=record.round
    )
    if sent is None:
        return False
    with contextlib.suppress(ConditionFailedError):  # lost: the check already ran
        repository.confirm_followup(
            record.hostname, round=record.round, attempt=0, now=iso(utcnow())
        )
    return True


def _first_check_unsent(record: DomainRecord) -> bool:
    return record.status == "pending" and record.checks == 0 and not record.followup_sent


def add_domain(
    settings: Settings,
    hostname: str,
    owner: str,
    *,
    token_factory: Callable[[], str] = new_token,
) -> DomainView:
    """Validate and claim ``hostname`` for ``owner``; queue its first check.

    Adding a hostname the same owner already added returns that record (and its
    token) unchanged; another owner's hostname is refused (HostnameClaimedError).
    """
    try:
        owner = validate_segment("owner", owner)
    except InvalidNameError as err:
        raise PermanentError(str(err)) from None
    target = fallback_target(settings)
    canonical = validate_hostname(hostname, reserved=own_domains(target, settings.own_domains))
    now = iso(utcnow())
    repository = _repository(settings)
    record, created = repository.add(
        DomainRecord(
            hostname=canonical,
            owner=owner,
            token=token_factory(),
            status="pending",
            followup_sent=False,
            created_at=now,
            updated_at=now,
        )
    )
    enqueued = _first_check_unsent(record) and _enqueue_first_check(settings, repository, record)
    return DomainView(record, target, settings.domain_max_checks, created, enqueued)


def domain_status(settings: Settings, hostname: str) -> DomainView:
    record = _repository(settings).require(normalize_hostname(hostname))
    return DomainView(record, fallback_target(settings), settings.domain_max_checks)


def recheck_domain(settings: Settings, hostname: str) -> DomainView:
    """Start a new round of checks for a failed or blocked domain (blocked by the provider,
    or for "provider not configured" once the API token is stored)."""
    repository = _repository(settings)
    record = repository.require(normalize_hostname(hostname))
    if _first_check_unsent(record):
        # A round already started whose first check never made it onto the queue.
        enqueued = _enqueue_first_check(settings, repository, record)
        return DomainView(
            record, fallback_target(settings), settings.domain_max_checks, check_enqueued=enqueued
        )
    if record.status not in RECHECKABLE:
        detail = (
            f"is already being checked (check {record.checks} of {settings.domain_max_checks} "
            "done; if its message is in the DLQ, run `pixflare dlq redrive domain`)"
            if record.status == "pending"
            else "is already active"
        )
        raise RecheckRefusedError(f"{record.hostname} {detail}")
    try:
        record = repository.start_round(record, now=iso(utcnow()))
    except ConditionFailedError:
        raise RecheckRefusedError(
            f"{record.hostname} changed while starting a new round; try again"
        ) from None
    enqueued = _enqueue_first_check(settings, repository, record)
    return DomainView(
        record, fallback_target(settings), settings.domain_max_checks, check_enqueued=enqueued
    )
