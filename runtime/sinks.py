"""Where SQS results go: a results queue (RESULTS_QUEUE_URL) or, with none set, the function's log."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol


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

    def __init__(self, queue_url: str, logger: logging.Logger) -> None:
        import boto3  # imported on first SQS use, not at init

        self.queue_url = queue_url
        self._logger = logger
        self._sqs = boto3.client("sqs")

    def send(self, results: list[tuple[str, dict[str, Any]]]) -> set[str]:
        failed: set[str] = set()
        for start in range(0, len(results), 10):
            chunk = results[start : start + 10]
            entries = [
                {"Id": str(i), "MessageBody": json.dumps({"messageId": mid, **res})}
                for i, (mid, res) in enumerate(chunk)
            ]
            try:
                answer = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception:
                self._logger.exception("sending results failed")
                failed.update(mid for mid, _ in chunk)
                continue
            failed.update(chunk[int(f["Id"])][0] for f in answer.get("Failed", []))
        return failed
