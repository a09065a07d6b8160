"""Public AWS list prices, us-east-1, used by bench/cost.py. One file, one date.

These were NOT fetched from the web when written (the machine had no access): they
are the published us-east-1 list prices as the author knew them in 2025, first
pricing tier, no free tier, no Savings Plans. Check each page before quoting a
figure; change the number here and the date with it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2025 (known list prices, not re-checked online on 2026-12-02)"
REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: float  # per `per` units
    per: int
    unit: str
    source: str  # the AWS pricing page

    @property
    def each(self) -> float:
        return self.usd / self.per


LAMBDA_PAGE = "https://aws.amazon.com/lambda/pricing/"
SQS_PAGE = "https://aws.amazon.com/sqs/pricing/"
S3_PAGE = "https://aws.amazon.com/s3/pricing/"
DYNAMODB_PAGE = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
KMS_PAGE = "https://aws.amazon.com/kms/pricing/"
SECRETS_PAGE = "https://aws.amazon.com/secrets-manager/pricing/"
REKOGNITION_PAGE = "https://aws.amazon.com/rekognition/pricing/"
EVENTBRIDGE_PAGE = "https://aws.amazon.com/eventbridge/pricing/"

PRICES: dict[str, Price] = {
    # Arm price, first tier (up to 7.5 billion GB-s a month). Since 1 Aug 2025 the
    # INIT phase of on-demand functions is billed like the handler's duration.
    "lambda_gb_s": Price(0.0000133334, 1, "GB-second (arm64)", LAMBDA_PAGE),
    "lambda_requests": Price(0.20, 1_000_000, "requests", LAMBDA_PAGE),
    # Standard queue; each API call is a request per 64 KB chunk of payload.
    "sqs_requests": Price(0.40, 1_000_000, "requests (standard, 64 KB chunks)", SQS_PAGE),
    "s3_put": Price(0.005, 1_000, "PUT, COPY, POST, LIST requests (S3 Standard)", S3_PAGE),
    "s3_get": Price(0.0004, 1_000, "GET, HEAD and all other requests (S3 Standard)", S3_PAGE),
    "s3_storage": Price(0.023, 1, "GB-month (S3 Standard, first 50 TB)", S3_PAGE),
    # On-demand prices after AWS's 50% cut of 1 Nov 2024 ($1.25 / $0.25 before).
    "ddb_write": Price(0.625, 1_000_000, "write request units (on-demand)", DYNAMODB_PAGE),
    "ddb_read": Price(0.125, 1_000_000, "read request units (on-demand)", DYNAMODB_PAGE),
    "kms_requests": Price(0.03, 10_000, "requests (symmetric key)", KMS_PAGE),
    "secrets_requests": Price(0.05, 10_000, "API calls", SECRETS_PAGE),
    "rekognition_images": Price(
        1.00, 1_000, "images (DetectLabels, first 1M a month)", REKOGNITION_PAGE
    ),
}

# Fixed monthly charges, not per image: shown apart from the per-image table.
MONTHLY: dict[str, Price] = {
    "kms_key": Price(1.00, 1, "customer managed key-month", KMS_PAGE),
    "secret": Price(0.40, 1, "secret-month", SECRETS_PAGE),
}

NOT_COUNTED = (
    "EventBridge scheduled rules (free, " + EVENTBRIDGE_PAGE + "); CloudWatch Logs "
    "ingestion and storage of the functions' logs, metrics and alarms (not counted); "
    "data transfer (none inside the Region; out to the internet not counted); "
    "free tiers (ignored)"
)

# The seed (pixflare-queues.txt): Cloudflare Queues "cost $5/month on Cloudflare
# (includes 1 million operations)". A message written, read and deleted is three
# operations on Cloudflare's count.
CLOUDFLARE_MONTHLY_USD = 5.00
CLOUDFLARE_INCLUDED_OPERATIONS = 1_000_000
CLOUDFLARE_OPERATIONS_PER_MESSAGE = 3
