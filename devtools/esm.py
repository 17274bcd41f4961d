"""Play Lambda's SQS event source mapping (with ReportBatchItemFailures) against a queue, e.g. on moto.

One poll: ReceiveMessage (up to 10, all system and message attributes) -> build the ``{"Records": [...]}``
event with the record fields Lambda sends -> invoke -> delete the records that succeeded. Which ones
succeeded follows Lambda's documented rules for partial batch responses:

    whole batch succeeded   null response, ``{}``, ``batchItemFailures`` null or ``[]``
    only the listed failed  ``{"batchItemFailures": [{"itemIdentifier": "<messageId>"}, ...]}``
    whole batch failed      invoke error (``errorType`` in the body, HTTP != 200, timeout), a response that is
                            not an object, or a failure entry whose itemIdentifier is missing, empty, or not a
                            messageId of this batch

Nothing is deleted for a failed batch; its messages become visible again after the visibility timeout and,
past the queue's maxReceiveCount, the queue (moto too) moves them to the DLQ on a later receive. An exception
raised by the invoke callable (the RIE is gone) propagates, also without deleting anything.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.moto_sqs import queue_depth
from devtools.rie import InvokeResult

# System attributes Lambda puts in a record's "attributes" (the last four only when SQS sets them).
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


class EsmError(RuntimeError):
    """The mapping could not do its own job (a delete was refused); function errors are not EsmErrors."""


class DrainTimeout(TimeoutError):
    """run_until_drained or poll_until_delivered ran out of time; ``report`` holds what was done until then."""

    def __init__(self, message: str, report: DrainReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class BatchOutcome:
    """One receive + invoke + delete.

    ``failure`` says why the whole batch was kept (None when the response was a valid partial answer).
    """

    message_ids: tuple[str, ...]
    deleted: tuple[str, ...]
    kept: tuple[str, ...]
    failure: str | None
    result: InvokeResult


@dataclass
class DrainReport:
    outcomes: list[BatchOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def deleted(self) -> set[str]:
        return {mid for o in self.outcomes for mid in o.deleted}

    @property
    def whole_batch_failures(self) -> int:
        return sum(o.failure is not None for o in self.outcomes)


def build_record(message: dict[str, Any], *, queue_arn: str) -> dict[str, Any]:
    """One SQS ReceiveMessage entry -> the record Lambda puts in ``event["Records"]``."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: v for k, v in message.get("Attributes", {}).items() if k in _RECORD_ATTRIBUTES},
        "messageAttributes": {
            name: _record_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],  # arn:aws:sqs:<region>:<account>:<name>
    }


def _record_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # SQS API {"StringValue", "BinaryValue": bytes, "DataType"} -> Lambda's camelCase, binary as base64 text.
    record: dict[str, Any] = {}
    if "StringValue" in value:
        record["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        record["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    record["stringListValues"] = list(value.get("StringListValues", []))
    record["binaryListValues"] = [base64.b64encode(b).decode("ascii") for b in value.get("BinaryListValues", [])]
    record["dataType"] = value["DataType"]
    return record


def judge_response(result: InvokeResult, message_ids: Sequence[str]) -> tuple[frozenset[str], str | None]:
    """Which messages of the batch to keep, and why the whole batch is kept (None for a valid answer).

    Args:
        result: the invoke's answer.
        message_ids: the batch's messageIds, in order.

    Returns:
        ``(kept, failure)``: kept is all ids when ``failure`` is set, else the listed batchItemFailures.
    """
    everything = frozenset(message_ids)
    if result.timed_out:
        return everything, f"invoke timed out: {result.body}"
    if result.error_type is not None:
        return everything, f"invoke failed (HTTP {result.status}): {result.error_type}: {result.error_message}"
    if result.status != 200:
        return everything, f"invoke failed with HTTP {result.status}: {result.raw[:200]!r}"
    body = result.body
    if body is None:
        return frozenset(), None
    if not isinstance(body, dict):
        return everything, (
            f"malformed response: expected an object with batchItemFailures, "
            f"got {type(body).__name__} {str(body)[:200]!r}"
        )
    failures = body.get("batchItemFailures")
    if failures is None:
        return frozenset(), None
    if not isinstance(failures, list):
        return everything, f"malformed response: batchItemFailures is {type(failures).__name__}, must be a list"
    kept = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything, (
                f"malformed response: batchItemFailures entry {item!r} has no itemIdentifier "
                f"that is a messageId of this batch"
            )
        kept.add(identifier)
    return frozenset(kept), None


class EventSourceMapping:
    """Poll one queue and feed batches to a function, like Lambda's SQS trigger with ReportBatchItemFailures.

    Args:
        sqs: a boto3 SQS client (``devtools.moto_sqs.sqs_client``).
        queue_url: the input queue.
        invoke: called with the event, returns an InvokeResult (``RieFunction.invoke`` fits).
        batch_size: MaxNumberOfMessages, 1..10.
        visibility_timeout_s: VisibilityTimeout for each receive; None uses the queue's. Failed messages come
            back after it, so tests keep it short (1 s); it must outlast one invoke.
        wait_time_s: WaitTimeSeconds (long polling). 0 by default: moto answers an empty long poll only when
            it expires, and run_until_drained sleeps ``idle_sleep_s`` between empty receives instead.
        idle_sleep_s: pause after an empty receive in run_until_drained.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        invoke: Callable[[dict[str, Any]], InvokeResult],
        *,
        batch_size: int = 10,
        visibility_timeout_s: int | None = None,
        wait_time_s: int = 0,
        idle_sleep_s: float = 0.1,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError(f"batch_size is {batch_size}, SQS receives 1..10 messages at a time")
        self.sqs = sqs
        self.queue_url = queue_url
        self.invoke = invoke
        self.batch_size = batch_size
        self.visibility_timeout_s = visibility_timeout_s
        self.wait_time_s = wait_time_s
        self.idle_sleep_s = idle_sleep_s
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def poll_once(self) -> BatchOutcome | None:
        """Receive one batch, invoke, delete what succeeded. None when no message was received."""
        receive: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": self.batch_size,
            "WaitTimeSeconds": self.wait_time_s,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.visibility_timeout_s is not None:
            receive["VisibilityTimeout"] = self.visibility_timeout_s
        messages = self.sqs.receive_message(**receive).get("Messages", [])
        if not messages:
            return None
        records = [build_record(m, queue_arn=self.queue_arn) for m in messages]
        message_ids = tuple(r["messageId"] for r in records)

        result = self.invoke({"Records": records})
        kept, failure = judge_response(result, message_ids)
        to_delete = [r for r in records if r["messageId"] not in kept]
        if to_delete:
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(to_delete)],
            )
            if answer.get("Failed"):
                raise EsmError(
                    f"SQS refused to delete {answer['Failed']!r} from {self.queue_url}; did the invoke "
                    f"outlast the visibility timeout ({self.visibility_timeout_s} s)?"
                )
        return BatchOutcome(
            message_ids=message_ids,
            deleted=tuple(r["messageId"] for r in to_delete),
            kept=tuple(mid for mid in message_ids if mid in kept),
            failure=failure,
            result=result,
        )

    def poll_until_delivered(
        self, message_ids: Iterable[str], *, times: int = 1, timeout_s: float = 10.0
    ) -> list[BatchOutcome]:
        """Poll until each of ``message_ids`` has been in ``times`` invoked batches; return every batch's outcome.

        One receive may return fewer messages than asked for (SQS and moto both do; moto makes the messages of
        one batch visible again at slightly different instants), so messages sent or failed together can
        arrive over several polls. Other messages that arrive meanwhile are handled like any poll handles them.

        Raises:
            DrainTimeout: some message was not delivered ``times`` times within ``timeout_s`` (deleted, in the DLQ,
                or still in flight); ``report`` holds the outcomes until then.
        """
        wanted = Counter({mid: times for mid in message_ids})
        delivered: Counter[str] = Counter()
        report = DrainReport()
        start = time.monotonic()
        while True:
            missing = wanted - delivered
            if not missing:
                report.elapsed_s = time.monotonic() - start
                return report.outcomes
            if time.monotonic() - start > timeout_s:
                break
            outcome = self.poll_once()
            if outcome is None:
                time.sleep(self.idle_sleep_s)
                continue
            report.outcomes.append(outcome)
            delivered.update(outcome.message_ids)
        report.elapsed_s = time.monotonic() - start
        raise DrainTimeout(
            f"{self.queue_url}: after {report.elapsed_s:.1f} s and {len(report.outcomes)} batches, "
            f"{sorted(missing)} still short of {times} deliveries (got {dict(delivered)})",
            report,
        )

    def run_until_drained(self, *, timeout_s: float = 60.0, max_polls: int = 10_000) -> DrainReport:
        """Poll until the queue holds no message (visible, in flight or delayed).

        Messages that keep failing leave through the DLQ, so this ends once each has been received
        maxReceiveCount times and one more receive has moved it.

        Raises:
            DrainTimeout: still not empty after ``timeout_s`` seconds or ``max_polls`` receives.
        """
        report = DrainReport()
        start = time.monotonic()
        for _ in range(max_polls):
            if time.monotonic() - start > timeout_s:
                break
            outcome = self.poll_once()
            if outcome is not None:
                report.outcomes.append(outcome)
                continue
            if queue_depth(self.sqs, self.queue_url) == 0:
                report.elapsed_s = time.monotonic() - start
                return report
            time.sleep(self.idle_sleep_s)  # the rest is in flight: wait for its visibility timeout
        report.elapsed_s = time.monotonic() - start
        left = queue_depth(self.sqs, self.queue_url)
        raise DrainTimeout(
            f"{self.queue_url} still holds {left} messages after {report.elapsed_s:.1f} s "
            f"and {len(report.outcomes)} batches (limits: {timeout_s} s, {max_polls} polls); "
            "is the visibility timeout or maxReceiveCount large?",
            report,
        )
