"""How much time is left: one small type for every question of the kind.

A :class:`Deadline` is a moment on the monotonic clock, or no moment at all (the
CLI and tests without a Lambda context: nothing cuts them off, so nothing is
refused for lack of time). Work that must end in time asks it ``fits(seconds)``
or ``require(seconds, what)``, with ``seconds`` derived from the worst case of
the client calls the work makes (see :func:`lambdas.shared.aws.seconds_needed`);
a per-call timeout is ``cap(timeout)``.

The invocation's deadline is bound once per invocation (:meth:`Deadline.bound`,
done by the queue-worker runtime and the cron handler) and read back anywhere
with :meth:`Deadline.current`: every AWS client call picks its timeouts from it.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from lambdas.shared.errors import OutOfTimeError


class LambdaContextLike(Protocol):
    """What we read from a Lambda context (the runtime's, or a test's stand-in)."""

    aws_request_id: str
    function_name: str

    def get_remaining_time_in_millis(self) -> int: ...


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "pixflare_deadline", default=None
)


@dataclass(frozen=True, slots=True)
class Deadline:
    """``at``: the monotonic time it falls due; None: no deadline."""

    at: float | None = None

    # -- making one ---------------------------------------------------------------------
    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    @classmethod
    def in_seconds(cls, seconds: float | None) -> Deadline:
        """``seconds`` from now (None: no deadline)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def from_context(cls, context: object | None) -> Deadline:
        """The invocation's end, from a Lambda context; no context: no deadline."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return cls.none()
        return cls.in_seconds(float(remaining()) / 1000)

    @classmethod
    def current(cls) -> Deadline:
        """The deadline bound for this invocation (and the threads it hands work to)."""
        return _current.get() or cls.none()

    # -- asking it ----------------------------------------------------------------------
    def seconds_left(self) -> float | None:
        """Seconds until it falls due (negative once past); None without a deadline."""
        return None if self.at is None else self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        left = self.seconds_left()
        return left is not None and left <= 0

    def fits(self, seconds: float) -> bool:
        """Would work taking up to ``seconds`` end by the deadline?"""
        left = self.seconds_left()
        return left is None or seconds <= left

    def require(self, seconds: float, what: str) -> None:
        """Refuse ``what`` (retried later, like any transient failure) unless it fits."""
        if not self.fits(seconds):
            left = max(self.seconds_left() or 0.0, 0.0)
            raise OutOfTimeError(
                f"{what}: not started, {left:.1f} s left in this invocation "
                f"(it needs up to {seconds:.0f} s)"
            )

    def cap(self, timeout: float, *, least: float, what: str) -> float:
        """``timeout``, shortened to the time left; OutOfTimeError when under ``least``."""
        left = self.seconds_left()
        capped = timeout if left is None else min(timeout, left)
        if capped < least:
            raise OutOfTimeError(f"{what}: out of time ({max(capped, 0.0):.2f} s left)")
        return capped

    # -- deriving one -------------------------------------------------------------------
    def within(self, seconds: float) -> Deadline:
        """The earlier of this deadline and ``seconds`` from now: a budget for one part."""
        other = time.monotonic() + seconds
        return Deadline(other if self.at is None else min(self.at, other))

    def less(self, seconds: float) -> Deadline:
        """``seconds`` earlier: what is left once ``seconds`` are kept back for later work."""
        return self if self.at is None else Deadline(self.at - seconds)

    # -- binding it ---------------------------------------------------------------------
    @contextlib.contextmanager
    def bound(self) -> Iterator[Deadline]:
        """Within the block, :meth:`current` is this deadline (every client call fits it)."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def __str__(self) -> str:
        left = self.seconds_left()
        return "no deadline" if left is None else f"{left:.1f} s left"
