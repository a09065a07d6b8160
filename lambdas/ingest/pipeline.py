"""One S3 event notification: each original it names is checked, recorded and queued.

The work is lambdas.shared.originals.ingest_original, the same code ``pixflare upload``
runs; this module only reads S3's message and reports what happened.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from lambdas.shared.messages import S3Notification
from lambdas.shared.observability import logger, metrics
from lambdas.shared.originals import IngestOutcome, ingest_original
from lambdas.shared.worker import JobContext

CREATED_EVENT_PREFIX = "ObjectCreated:"


def process_notification(message: S3Notification, job: JobContext) -> list[IngestOutcome]:
    if message.is_test_event:
        # S3 sends one when the notification is configured (each deploy that changes it).
        logger.info("S3 test event acknowledged", extra={"outcome": "ignored"})
        return []
    own_bucket = job.settings.require("images_bucket")
    outcomes: list[IngestOutcome] = []
    for record in message.records:
        if not record.event_name.startswith(CREATED_EVENT_PREFIX):
            logger.info("not an object-created event", extra={"eventName": record.event_name})
            continue
        if record.bucket != own_bucket:
            # Only the images bucket is ours to read and clean up.
            logger.warning(
                "event for another bucket ignored",
                extra={"bucket": record.bucket, "outcome": "ignored"},
            )
            continue
        outcome = ingest_original(job.settings, bucket=record.bucket, key=record.key)
        if outcome.status in ("refused", "ingested"):
            name = "OriginalRefused" if outcome.status == "refused" else "OriginalIngested"
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        log = logger.warning if outcome.status == "refused" else logger.info
        log(
            "original " + outcome.status,
            extra={"key": record.key, "imageId": outcome.image_id, "reason": outcome.reason},
        )
        outcomes.append(outcome)
    return outcomes
