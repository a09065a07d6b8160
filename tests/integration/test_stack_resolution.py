"""Finding a local stack's outputs: a damaged outputs document is a one-line error."""

from __future__ import annotations

import boto3
import pytest

from pixflare.resolve import OUTPUTS_BUCKET, ResolveError, _local_outputs, outputs_key
from tests.support.aws_resources import REGION, Resources


@pytest.mark.parametrize("document", [b"not json {", b"[1, 2]"])
def test_a_damaged_outputs_document_is_a_resolve_error(aws: Resources, document: bytes) -> None:
    # Given an endpoint whose outputs document is not the JSON object the local stack writes
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=OUTPUTS_BUCKET)
    s3.put_object(Bucket=OUTPUTS_BUCKET, Key=outputs_key("PixflareJobs"), Body=document)
    # When the CLI reads it, Then it says so in words (never a traceback)
    with pytest.raises(ResolveError, match="outputs document"):
        _local_outputs({"region_name": REGION}, "PixflareJobs")
