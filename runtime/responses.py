"""Typed results -> what each trigger expects back: the answer envelope, HTTP responses, error bodies.

Errors are rendered here only: `http_error` for API Gateway and Function URLs; a direct invoke re-raises the typed
error and the Lambda runtime renders it as {"errorType", "errorMessage"}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict

from runtime.errors import RequestError
from runtime.prediction import Prediction


@dataclass(frozen=True)
class ServedBy:
    """What every answer says about the function that computed it (fixed at init)."""

    model: dict[str, Any]  # name, task, sha256, engine, implementation
    init_ms: dict[str, float]
    device: str
    dtype: str
    threads: int


class HttpResponse(TypedDict):
    statusCode: int
    headers: dict[str, str]
    body: str
    isBase64Encoded: bool


def envelope(
    served: ServedBy,
    prediction: Prediction,
    outputs: Any,
    *,
    request_id: str,
    cold: bool,
    batch_records: int | None = None,
) -> dict[str, Any]:
    """{"outputs", "model", "timing"}: the answer to one request (or one SQS record)."""
    timing = {
        "cold_start": cold,
        "init_ms": served.init_ms,
        "request_ms": prediction.request_ms,
        "device": served.device,
        "dtype": served.dtype,
        "threads": served.threads,
        "request_id": request_id,
        **prediction.timing_fields(),
    }
    if batch_records is not None:
        timing["batch_records"] = batch_records  # records that shared this forward pass
    return {"outputs": outputs, "model": served.model, "timing": timing}


def http_response(status: int, body: dict[str, Any], request_id: str) -> HttpResponse:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def http_error(error: RequestError, request_id: str) -> HttpResponse:
    body = {"error": {"type": error.error_type, "message": str(error), "request_id": request_id}}
    return http_response(error.status, body, request_id)
