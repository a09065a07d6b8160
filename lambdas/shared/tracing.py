"""The Powertools tracer the handlers share (X-Ray; off where POWERTOOLS_TRACE_DISABLED).

Apart from lambdas.shared.observability because creating it imports the X-Ray SDK,
which only a function's handler needs.
"""

from __future__ import annotations

from aws_lambda_powertools import Tracer

tracer = Tracer()
