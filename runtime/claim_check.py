"""Results too large for their destination go to S3; the message (or log line) carries where (RESULTS_BUCKET).

This is the claim-check pattern as the Amazon SQS Extended Client writes it, so a consumer that reads the results
queue with that client (Java `amazon-sqs-java-extended-client-lib`, Python `amazon-sqs-extended-client`) gets the
full result back without code of its own:

    body        ["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": ..., "s3Key": ...}]
    attribute   ExtendedPayloadSize (Number): the result's size in bytes

The key is derived from the source messageId, so a redelivered record overwrites its own object instead of adding a
second one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
KEY_PREFIX = "hf-lambda-results/"


@dataclass(frozen=True)
class Claim:
    """Where one result was stored: the pointer body and attributes of its message, and the log's view of it."""

    bucket: str
    key: str
    size: int

    @property
    def pointer_body(self) -> str:
        return json.dumps([POINTER_CLASS, {"s3BucketName": self.bucket, "s3Key": self.key}])

    @property
    def attributes(self) -> dict[str, dict[str, str]]:
        return {SIZE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(self.size)}}

    def describe(self) -> dict[str, Any]:
        return {"s3BucketName": self.bucket, "s3Key": self.key, "bytes": self.size}


class ClaimCheck:
    """Puts a result's bytes in the results bucket. Made at init, which checks the bucket can be reached."""

    def __init__(self, bucket: str, s3: Any) -> None:
        self.bucket = bucket
        self._s3 = s3

    def store(self, message_id: str, body: bytes) -> Claim:
        """Raises whatever boto3 raises; the caller fails that record alone."""
        key = f"{KEY_PREFIX}{message_id}.json"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return Claim(self.bucket, key, len(body))
