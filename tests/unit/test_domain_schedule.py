"""The verification schedule: what follows one check."""

from __future__ import annotations

import pytest

from lambdas.domain.verification import Activate, Block, Fail, Recheck, Verdict, decide

NOT_YET = Verdict("not-yet", "no TXT record at _pixflare-verify.cdn.example.test yet")


def test_not_yet_is_rechecked_until_the_limit_then_fails() -> None:
    actions = [decide(NOT_YET, attempt=n, max_checks=3, interval_seconds=30) for n in (1, 2, 3)]
    assert actions == [
        Recheck(2, 30, NOT_YET.reason or ""),
        Recheck(3, 30, NOT_YET.reason or ""),
        Fail(f"not verified after 3 checks: {NOT_YET.reason}"),
    ]


@pytest.mark.parametrize("attempt", [1, 39, 40])
def test_valid_is_activated_on_any_attempt(attempt: int) -> None:
    verdict = Verdict("active", None, "cloudflare")
    assert decide(verdict, attempt=attempt, max_checks=40, interval_seconds=30) == Activate(
        "cloudflare"
    )


def test_refusal_is_blocked_without_a_recheck() -> None:
    verdict = Verdict("refused", "Cloudflare custom hostname status blocked")
    action = decide(verdict, attempt=1, max_checks=40, interval_seconds=30)
    assert action == Block("Cloudflare custom hostname status blocked")


def test_single_check_limit_fails_at_once() -> None:
    assert decide(NOT_YET, attempt=1, max_checks=1, interval_seconds=0) == Fail(
        f"not verified after 1 check: {NOT_YET.reason}"
    )
