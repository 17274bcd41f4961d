"""SQS records -> batchItemFailures, with results delivered to a queue (or the log).

Every record ends one of two ways: its result was delivered, or its messageId is in batchItemFailures so SQS
makes it visible again and, past maxReceiveCount, moves it to the dead-letter queue. Valid records that share
parameters go through the model in one padded forward pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypedDict

from runtime.errors import RequestError
from runtime.events import SqsRecord
from runtime.request import Limits, Request, parse_body


class BatchItemFailure(TypedDict):
    itemIdentifier: str


class SqsBatchResponse(TypedDict):
    batchItemFailures: list[BatchItemFailure]


class ResultSink(Protocol):
    def send(self, results: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """Deliver (messageId, result) pairs; return the messageIds that could not be delivered."""
        ...


class LogSink:
    """Results to the function's log (RESULTS_QUEUE_URL unset)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def send(self, results: list[tuple[str, dict[str, Any]]]) -> set[str]:
        for message_id, result in results:
            self._logger.info("result", extra={"fields": {"messageId": message_id, "result": result}})
        return set()


class QueueSink:
    """Results to an SQS queue, 10 per SendMessageBatch call; each body carries the source messageId."""

    def __init__(self, queue_url: str) -> None:
        import boto3  # imported on first SQS use, not at init

        self.queue_url = queue_url
        self._sqs = boto3.client("sqs")

    def send(self, results: list[tuple[str, dict[str, Any]]]) -> set[str]:
        failed: set[str] = set()
        for start in range(0, len(results), 10):
            chunk = results[start : start + 10]
            entries = [
                {"Id": str(i), "MessageBody": json.dumps({"messageId": mid, **res})} for i, (mid, res) in enumerate(chunk)
            ]
            try:
                answer = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception:  # noqa: BLE001 - any delivery failure means: let SQS redeliver these records
                logging.getLogger("hf_lambda").exception("sending results failed")
                failed.update(mid for mid, _ in chunk)
                continue
            failed.update(chunk[int(f["Id"])][0] for f in answer.get("Failed", []))
        return failed


Predict = Callable[[list[Any], dict[str, Any]], tuple[list[Any], dict[str, Any]]]


def process_records(
    records: Iterable[dict[str, Any]],
    predict: Predict,
    sink: ResultSink,
    limits: Limits,
    envelope: Callable[[list[Any], dict[str, Any]], dict[str, Any]],
    logger: logging.Logger,
) -> SqsBatchResponse:
    """Answer one SQS event.

    Args:
        records: the event's "Records".
        predict: (inputs, parameters) -> (outputs, timing extras); raises RequestError for bad requests.
        sink: where results go.
        limits: request limits applied to each body.
        envelope: (outputs, timing extras) -> the result body for one record.
        logger: where rejected records are explained.
    """
    records = list(records)
    failures: list[str] = []
    parsed: list[tuple[str, Request]] = []
    for raw in records:
        record = SqsRecord(raw)
        try:
            parsed.append((record.message_id, parse_body(record.body, limits)))
        except RequestError as e:
            logger.warning("rejected record", extra={"fields": {"messageId": record.message_id, "errorType": type(e).__name__, "errorMessage": str(e)}})
            failures.append(record.message_id)

    groups: dict[str, list[tuple[str, Request]]] = {}
    for message_id, req in parsed:
        groups.setdefault(json.dumps(req.parameters, sort_keys=True), []).append((message_id, req))

    results: list[tuple[str, dict[str, Any]]] = []
    for members in groups.values():
        try:
            results.extend(_predict_group(members, predict, envelope))
        except Exception:  # noqa: BLE001 - isolate the record that breaks the shared forward pass
            for member in members:
                try:
                    results.extend(_predict_group([member], predict, envelope))
                except Exception as e:  # noqa: BLE001
                    logger.warning("failed record", extra={"fields": {"messageId": member[0], "errorType": type(e).__name__, "errorMessage": str(e)}})
                    failures.append(member[0])
    failed = set(failures) | (sink.send(results) if results else set())
    in_order = [SqsRecord(r).message_id for r in records]  # answer in the order SQS delivered them
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in dict.fromkeys(in_order) if mid in failed]}


def _predict_group(members: list[tuple[str, Request]], predict: Predict, envelope: Callable[..., dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    inputs = [x for _, req in members for x in req.inputs]
    outputs, extra = predict(inputs, members[0][1].parameters)
    out, at = [], 0
    for message_id, req in members:
        mine = outputs[at : at + len(req.inputs)]
        at += len(req.inputs)
        out.append((message_id, envelope(mine[0] if req.single else mine, {**extra, "batch_records": len(members)})))
    return out
