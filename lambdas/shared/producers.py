"""Producers: put jobs on the queues, honouring ENABLE_QUEUES."""

from __future__ import annotations

from lambdas.shared import aws
from lambdas.shared.clock import iso, utcnow
from lambdas.shared.config import Settings
from lambdas.shared.errors import aws_errors
from lambdas.shared.messages import BackupJob, DomainCheck, JobMessage, VariantJob

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


def send(queue_url: str, message: JobMessage, *, delay_seconds: int = 0) -> str:
    with aws_errors(f"send {message.kind} message"):
        response = aws.sqs().send_message(
            QueueUrl=queue_url,
            MessageBody=message.to_body(),
            DelaySeconds=max(0, min(delay_seconds, MAX_DELAY_SECONDS)),
        )
    return str(response["MessageId"])


def enqueue_variant_job(settings: Settings, *, image_id: str, owner: str) -> str | None:
    """Queue variant generation; None when queues are off (the image keeps only its original)."""
    if not settings.enable_queues:
        return None
    job = VariantJob(imageId=image_id, owner=owner)
    return send(settings.require("variant_queue_url"), job)


def enqueue_backup_job(
    settings: Settings,
    *,
    image_id: str,
    owner: str,
    action: str,
    album: str | None = None,
    filename: str | None = None,
    requested_at: str | None = None,
) -> str | None:
    if not settings.enable_queues:
        return None
    job = BackupJob.model_validate(
        {
            "imageId": image_id,
            "owner": owner,
            "action": action,
            "album": album,
            "filename": filename,
            "requestedAt": requested_at or iso(utcnow()),
        }
    )
    return send(settings.require("backup_queue_url"), job)


def enqueue_domain_check(
    settings: Settings,
    *,
    hostname: str,
    owner: str,
    attempt: int,
    round: int = 1,
    delay_seconds: int = 0,
) -> str | None:
    if not settings.enable_queues:
        return None
    job = DomainCheck(hostname=hostname, owner=owner, attempt=attempt, round=round)
    return send(settings.require("domain_queue_url"), job, delay_seconds=delay_seconds)
