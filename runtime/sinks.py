"""Where SQS results go: a results queue (RESULTS_QUEUE_URL) or, with none set, the function's log.

A sink returns the messageIds it could not deliver intact; the caller reports those as batchItemFailures, so a
result is acknowledged only once it is stored whole. A result larger than its destination takes goes to S3 when
RESULTS_BUCKET is set (runtime/claim_check.py) and otherwise fails its record alone, with a reason naming the size,
the limit and the setting.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.claim_check import Claim, ClaimCheck

# CloudWatch Logs cuts an event at 256 KiB (26 bytes of which are its own overhead); the log line around a result
# (level, logger, timestamp, messageId) is under 1 KiB.
LOG_RESULT_LIMIT_BYTES = 262_144 - 26 - 1024
# Every SQS queue accepts a SendMessageBatch of this many bytes in all; since 2025 a queue whose MaximumMessageSize
# is up to 1 MiB takes batches up to that size.
_BATCH_BYTES_FLOOR = 262_144
_BATCH_ENTRIES = 10


@dataclass(frozen=True)
class Result:
    """One record's result on its way out."""

    message_id: str
    body: dict[str, Any]  # the envelope, or {"error": ...}; the sink adds "messageId"
    group_id: str | None = None  # the source record's MessageGroupId (FIFO sources)

    def serialized(self) -> bytes:
        return json.dumps({"messageId": self.message_id, **self.body}).encode()


class ResultSink(Protocol):
    def send(self, results: list[Result]) -> set[str]:
        """Deliver results in order; return the messageIds that could not be delivered intact."""
        ...


class LogSink:
    """Results to the function's log, one line each (RESULTS_QUEUE_URL unset)."""

    def __init__(self, logger: logging.Logger, claim_check: ClaimCheck | None = None) -> None:
        self._logger = logger
        self._claims = claim_check

    def send(self, results: list[Result]) -> set[str]:
        failed: set[str] = set()
        for result in results:
            data = result.serialized()
            if len(data) <= LOG_RESULT_LIMIT_BYTES:
                self._logger.info("result", extra={"fields": {"messageId": result.message_id, "result": result.body}})
                continue
            claim = _claim(self._claims, result, data, LOG_RESULT_LIMIT_BYTES, "a log line", self._logger)
            if claim is None:
                failed.add(result.message_id)
            else:
                self._logger.info(
                    "result", extra={"fields": {"messageId": result.message_id, "result_s3": claim.describe()}}
                )
        return failed


@dataclass(frozen=True)
class QueueLimits:
    """What the results queue accepts, read from its attributes once at init."""

    max_message_bytes: int  # MaximumMessageSize
    fifo: bool  # FifoQueue

    @property
    def max_batch_bytes(self) -> int:
        return max(self.max_message_bytes, _BATCH_BYTES_FLOOR)


@dataclass(frozen=True)
class _Entry:
    message_id: str
    group: str | None
    request: dict[str, Any]  # one SendMessageBatch entry without its Id
    size: int


class QueueSink:
    """Results to an SQS queue: SendMessageBatch calls of at most 10 entries and the queue's byte limits.

    On a FIFO results queue each message carries its source record's MessageGroupId (or the source messageId when
    the source is a standard queue) and a deduplication id derived from the source messageId, so a redelivered
    record does not add a second result within SQS's five-minute deduplication window. Once a message of a group
    fails, later results of that group in the same call are not sent (they would arrive out of order).
    """

    def __init__(
        self, queue_url: str, sqs: Any, limits: QueueLimits, logger: logging.Logger, claim_check: ClaimCheck | None
    ) -> None:
        self.queue_url = queue_url
        self.limits = limits
        self._sqs = sqs
        self._logger = logger
        self._claims = claim_check

    def send(self, results: list[Result]) -> set[str]:
        failed: set[str] = set()
        failed_groups: set[str] = set()
        entries = []
        for result in results:
            entry = self._entry(result)
            if entry is None:
                failed.add(result.message_id)
                if self.limits.fifo:
                    failed_groups.add(_group(result))
            else:
                entries.append(entry)
        for batch in self._batches(entries):
            # FIFO: a group with a failed result sends nothing more (failed_groups stays empty on a standard queue)
            held = {e.message_id for e in batch if e.group in failed_groups}
            sendable = [e for e in batch if e.message_id not in held]
            lost = self._send_batch(sendable) if sendable else set()
            failed |= held | lost
            failed_groups.update(e.group for e in sendable if e.message_id in lost and e.group is not None)
        return failed

    def _entry(self, result: Result) -> _Entry | None:
        data = result.serialized()
        request: dict[str, Any] = {"MessageBody": data.decode()}
        size = len(data)
        if size > self.limits.max_message_bytes:
            claim = _claim(self._claims, result, data, self.limits.max_message_bytes, "the results queue", self._logger)
            if claim is None:
                return None
            request = {"MessageBody": claim.pointer_body, "MessageAttributes": claim.attributes}
            size = _message_bytes(claim)
        group = None
        if self.limits.fifo:
            group = _group(result)
            request["MessageGroupId"] = group
            request["MessageDeduplicationId"] = hashlib.sha256(result.message_id.encode()).hexdigest()
        return _Entry(result.message_id, group, request, size)

    def _batches(self, entries: list[_Entry]) -> Iterator[list[_Entry]]:
        batch: list[_Entry] = []
        total = 0
        for entry in entries:
            if batch and (len(batch) == _BATCH_ENTRIES or total + entry.size > self.limits.max_batch_bytes):
                yield batch
                batch, total = [], 0
            batch.append(entry)
            total += entry.size
        if batch:
            yield batch

    def _send_batch(self, batch: list[_Entry]) -> set[str]:
        try:
            answer = self._sqs.send_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": str(i), **e.request} for i, e in enumerate(batch)]
            )
        except Exception:
            self._logger.exception(
                "sending results failed", extra={"fields": {"messageIds": [e.message_id for e in batch]}}
            )
            return {e.message_id for e in batch}
        lost = set()
        for failure in answer.get("Failed", []):
            entry = batch[int(failure["Id"])]
            lost.add(entry.message_id)
            self._logger.warning(
                "result not accepted by the results queue",
                extra={
                    "fields": {
                        "messageId": entry.message_id,
                        "code": failure.get("Code"),
                        "reason": failure.get("Message"),
                    }
                },
            )
        return lost


def _group(result: Result) -> str:
    return result.group_id or result.message_id


def _message_bytes(claim: Claim) -> int:
    """Body plus attributes (name, type, value), as SQS counts a message's size."""
    attributes = sum(len(name) + len(v["DataType"]) + len(v["StringValue"]) for name, v in claim.attributes.items())
    return len(claim.pointer_body.encode()) + attributes


def _claim(
    claims: ClaimCheck | None, result: Result, data: bytes, limit: int, where: str, logger: logging.Logger
) -> Claim | None:
    """The result in S3, or None (logged with the reason) when there is no bucket or the upload failed."""
    fields = {"messageId": result.message_id, "bytes": len(data), "limit": limit}
    if claims is None:
        logger.warning(
            f"result of {len(data)} bytes is larger than {where} takes ({limit} bytes); set RESULTS_BUCKET to an S3 "
            "bucket the function may write so large results go there, or ask for less per message",
            extra={"fields": fields},
        )
        return None
    try:
        return claims.store(result.message_id, data)
    except Exception:
        logger.exception(f"storing a large result in s3://{claims.bucket} failed", extra={"fields": fields})
        return None


def open_sink(queue_url: str | None, bucket: str | None, logger: logging.Logger) -> ResultSink:
    """The sink the settings ask for, its queue and bucket checked once (at init). Raises SettingsError.

    Args:
        queue_url: RESULTS_QUEUE_URL; None -> the log.
        bucket: RESULTS_BUCKET; None -> a result too large for its destination fails its record.
        logger: where undeliverable results are explained.
    """
    if queue_url is None and bucket is None:
        return LogSink(logger)  # no boto3 at init
    import boto3  # only for functions that deliver results to AWS

    from runtime.settings import SettingsError

    claims = None
    if bucket is not None:
        s3 = boto3.client("s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as e:
            raise SettingsError(
                f"RESULTS_BUCKET={bucket!r} cannot be used: {e}. Create the bucket or fix the name, and give the "
                "function s3:ListBucket (for this check) and s3:PutObject on it"
            ) from None
        claims = ClaimCheck(bucket, s3)
    if queue_url is None:
        return LogSink(logger, claims)
    sqs = boto3.client("sqs")
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize", "FifoQueue"])[
            "Attributes"
        ]
    except Exception as e:
        raise SettingsError(
            f"RESULTS_QUEUE_URL={queue_url!r} cannot be used: {e}. Create the queue or fix the URL, and give the "
            "function sqs:GetQueueAttributes and sqs:SendMessage on it"
        ) from None
    limits = QueueLimits(int(attributes["MaximumMessageSize"]), attributes.get("FifoQueue") == "true")
    return QueueSink(queue_url, sqs, limits, logger, claims)
