"""The Powertools logger and metrics every function (and the CLI) shares.

The tracer is in lambdas.shared.tracing: only handlers need it, and creating it
imports the X-Ray SDK (about 0.15 s), which the `pixflare` command should not pay.

Service name and namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE, which the stack sets per function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

logger = Logger()
metrics = Metrics(namespace="Pixflare")


def publish_metrics[Handler: Callable[..., Any]](handler: Handler) -> Handler:
    """``metrics.log_metrics``, and with POWERTOOLS_METRICS_DISABLED the metrics are dropped.

    Powertools keeps disabled metrics until it holds 100 values and then prints them
    anyway; the embedded stack runs with metrics disabled for hours.
    """
    flushed = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return flushed(*args, **kwargs)
        finally:
            if is_metrics_disabled():
                metrics.clear_metrics()

    return run  # type: ignore[return-value]
