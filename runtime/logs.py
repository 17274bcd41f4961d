"""Structured JSON logs: one line per invocation, carrying CloudWatch embedded-metric-format (EMF) metrics.

CloudWatch turns the `_aws` block of a log line into metrics with no API call:
    ColdStart    1 on the first invocation of a container, else 0
    InitMs       the container's init (cold invocations only)
    InferenceMs  time in the model's forward passes (only when the model ran; summed over an SQS batch's passes)
    RequestMs    the whole invocation
    Errors       requests answered with an error, or SQS records reported as failures
    Records      SQS records in the batch (SQS only)
Hand-written rather than aws-lambda-powertools to keep init imports small (see README, "Logs and metrics").
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "timestamp": round(record.created * 1000),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _StdoutHandler(logging.Handler):
    """Writes to whatever sys.stdout is at emit time (the Lambda runtime and test capture both swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def get_logger(level: str = "INFO") -> logging.Logger:
    logger = logging.getLogger("hf_lambda")
    if not logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO")
    return logger


@dataclass(frozen=True)
class InvocationLog:
    """What the one log line of an invocation says."""

    kind: str  # EventKind value
    request_id: str
    status: str  # "ok", an HTTP status, an errorType, or "N failed of M" for SQS
    cold_start: bool
    init_total_ms: float
    timing: dict[str, Any]  # the answer's timing, or {"cold_start", "init_ms", "request_ms"} when there is none
    request_ms: float  # the whole invocation
    inference_ms: float | None  # None: the model did not run
    errors: int  # 1 for an error answer, failed records for SQS
    records: int | None = None  # SQS
    error: str | None = None  # "ErrorType: message"


def emf(metrics: dict[str, tuple[float, str]], dimensions: dict[str, str], namespace: str) -> dict[str, Any]:
    """The `_aws` block plus metric values and dimensions, to merge into one log line.

    Args:
        metrics: name -> (value, unit), e.g. {"InferenceMs": (3.2, "Milliseconds")}.
        dimensions: name -> value, e.g. {"function_name": "hf-model"}.
        namespace: the CloudWatch namespace (METRICS_NAMESPACE).
    """
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in sorted(metrics.items())],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
    }


def log_invocation(logger: logging.Logger, entry: InvocationLog, *, namespace: str, function_name: str) -> None:
    """The one line per invocation: request id, event kind, outcome, timings, and the EMF metrics."""
    metrics = {
        "ColdStart": (1.0 if entry.cold_start else 0.0, "Count"),
        "RequestMs": (entry.request_ms, "Milliseconds"),
        "Errors": (float(entry.errors), "Count"),
    }
    if entry.cold_start:
        metrics["InitMs"] = (entry.init_total_ms, "Milliseconds")
    if entry.inference_ms is not None:
        metrics["InferenceMs"] = (entry.inference_ms, "Milliseconds")
    if entry.records is not None:
        metrics["Records"] = (float(entry.records), "Count")
    fields = {
        "request_id": entry.request_id,
        "event_kind": entry.kind,
        "status": entry.status,
        "timing": entry.timing,
        **emf(metrics, {"function_name": function_name}, namespace),
    }
    if entry.error:
        fields["error"] = entry.error
    logger.info("invocation", extra={"fields": fields})
