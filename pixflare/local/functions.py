"""The local stack's Lambda functions: each runs from its deployment artifacts in
execution environments of its own (CPython 3.12 processes under the Runtime Interface
Client, see pixflare.local.environments); a run past the function's Timeout is ended
the way Lambda ends it: the process is killed and the environment discarded.

An :class:`AccountConcurrency` shared by every function stands for the account's
concurrency limit (``LocalStack(account_concurrency=N)``): an invocation needs one of
its N slots; :meth:`LocalFunction.try_invoke` answers ``None`` (throttled, counted in
``throttles``) when no slot frees within its wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from lambdas.shared.config import RUNTIME_VARIABLES, settings_from_env
from pixflare.local.environments import (
    EnvironmentStats,
    FunctionEnvironments,
    FunctionImage,
    Invocation,
)
from pixflare.local.template import FunctionSpec

SLOT_POLL_SECONDS = 0.5  # how often a blocked invoke() looks whether its function closed


class AccountConcurrency:
    """The account's concurrency limit in a Region: N invocations at once, all functions
    together (Lambda's ConcurrentExecutions quota; 1,000 by default, often 10 on a new
    account)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the account concurrency limit must be at least 1")
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0

    def acquire(self, wait_seconds: float) -> bool:
        if not self._slots.acquire(timeout=max(0.0, wait_seconds)):
            return False
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        return True

    def release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._slots.release()


class LocalFunction:
    """One AWS::Lambda::Function of the template, run from its deployment artifacts.

    Every invocation goes to an execution environment of its own: a CPython 3.12
    process with the code asset and layers, loaded by the Runtime Interface Client
    (pixflare.local.environments), so what runs here is what Lambda runs.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        image: FunctionImage,
        environment: Mapping[str, str],
        region: str,
        log: Callable[[str], None] | None = None,
        concurrency: AccountConcurrency | None = None,
    ) -> None:
        self.spec = spec
        self.concurrency = concurrency
        self.throttles = 0  # invocation attempts refused for want of a slot (429)
        self._closed = threading.Event()
        self._throttle_lock = threading.Lock()
        self.environment = dict(environment)
        self.environments = FunctionEnvironments(
            name=spec.name,
            arn=spec.arn,
            handler=spec.handler,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            image=image,
            environment=self.environment,
            region=region,
            log=log,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stats(self) -> EnvironmentStats:
        return self.environments.stats

    def invoke(self, event: Any) -> Invocation:
        """Run the event; under an account limit, wait for a slot first (as an
        asynchronous invocation, such as a schedule's, is held and retried by Lambda)."""
        if self.concurrency is None:
            return self.environments.invoke(event)
        while not self.concurrency.acquire(SLOT_POLL_SECONDS):
            if self._closed.is_set():
                return self.environments.invoke(event)  # answers "closed" at once
        try:
            return self.environments.invoke(event)
        finally:
            self.concurrency.release()

    def try_invoke(self, event: Any, wait_seconds: float) -> Invocation | None:
        """Run the event if an account slot frees within ``wait_seconds``; else None: the
        invocation was throttled (Lambda's TooManyRequestsException), and counted."""
        if self.concurrency is None:
            return self.environments.invoke(event)
        if not self.concurrency.acquire(wait_seconds):
            with self._throttle_lock:
                self.throttles += 1
            return None
        try:
            return self.environments.invoke(event)
        finally:
            self.concurrency.release()

    def close(self) -> None:
        self._closed.set()
        self.environments.close()


def function_environment(
    spec: FunctionSpec, stack_env: Mapping[str, str], *, lambda_env: Mapping[str, str]
) -> dict[str, str]:
    """A function's variables: the template's, runtime settings from the stack's own
    environment winning (ENABLE_AI_CLASSIFICATION=true pixflare local up), never its
    resource names, then what the local stack adds (endpoint, credentials)."""
    environment = {
        **spec.environment,
        **{k: v for k, v in stack_env.items() if k in RUNTIME_VARIABLES},
        **lambda_env,
    }
    settings_from_env(environment)  # a bad value stops the stack here, named
    return environment


class Invokable(Protocol):
    """What a poller or the scheduler needs of a function."""

    @property
    def name(self) -> str: ...

    spec: FunctionSpec

    def invoke(self, event: Any) -> Invocation: ...
