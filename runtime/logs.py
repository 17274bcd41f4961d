"""Structured JSON logs: one line per invocation, carrying CloudWatch embedded-metric-format (EMF) metrics.

CloudWatch turns the `_aws` block of a log line into metrics with no API call: ColdStart, InitMs, InferenceMs.
Hand-written rather than aws-lambda-powertools to keep init imports small (see README, "Logs and metrics").
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

NAMESPACE = os.environ.get("METRICS_NAMESPACE", "HfLambda")


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
        except Exception:  # noqa: BLE001 - logging must never break a request
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


def emf(metrics: dict[str, tuple[float, str]], dimensions: dict[str, str]) -> dict[str, Any]:
    """The `_aws` block plus metric values and dimensions, to merge into one log line.

    Args:
        metrics: name -> (value, unit), e.g. {"InferenceMs": (3.2, "Milliseconds")}.
        dimensions: name -> value, e.g. {"function_name": "hf-model"}.
    """
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [sorted(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in sorted(metrics.items())],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (value, _) in metrics.items()},
    }


def log_invocation(logger: logging.Logger, *, kind: str, request_id: str, status: str, timing: dict[str, Any], error: str | None = None) -> None:
    """The one line per invocation: request id, event kind, outcome, timings, and the EMF metrics."""
    cold = bool(timing.get("cold_start"))
    metrics = {
        "ColdStart": (1.0 if cold else 0.0, "Count"),
        "InferenceMs": (float(timing.get("request_ms", {}).get("inference", 0.0)), "Milliseconds"),
    }
    if cold:
        metrics["InitMs"] = (float(timing.get("init_ms", {}).get("total", 0.0)), "Milliseconds")
    fields = {
        "request_id": request_id,
        "event_kind": kind,
        "status": status,
        "timing": timing,
        **emf(metrics, {"function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")}),
    }
    if error:
        fields["error"] = error
    logger.info("invocation", extra={"fields": fields})
