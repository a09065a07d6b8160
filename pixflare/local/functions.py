"""The local stack's Lambda functions: each runs from its deployment artifacts in
execution environments of its own (CPython 3.12 processes under the Runtime Interface
Client, see pixflare.local.environments); a run past the function's Timeout is ended
the way Lambda ends it: the process is killed and the environment discarded.
"""

from __future__ import annotations

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
    ) -> None:
        self.spec = spec
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
        return self.environments.invoke(event)

    def close(self) -> None:
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
