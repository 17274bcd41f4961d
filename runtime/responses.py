"""Typed results -> what each trigger expects back: the answer envelope, HTTP responses, error bodies.

Errors become responses here: `http_error` for API Gateway and Function URLs (the body in the error shape of the
route that was called, runtime/routes/); a direct invoke re-raises the typed error and the Lambda runtime renders it
as {"errorType", "errorMessage"}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypedDict

from runtime.errors import MethodNotAllowedError, RequestError
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


def timing(
    served: ServedBy, prediction: Prediction, *, request_id: str, cold: bool, batch_records: int | None = None
) -> dict[str, Any]:
    """The "timing" of an answer: init, stage times, device, and the task's own counters."""
    out = {
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
        out["batch_records"] = batch_records  # records that shared this forward pass
    return out


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
    when = timing(served, prediction, request_id=request_id, cold=cold, batch_records=batch_records)
    return {"outputs": outputs, "model": served.model, "timing": when}


def timing_headers(when: dict[str, Any]) -> dict[str, str]:
    """The timing as response headers, for routes whose body shape has no place for it. The x-*-time names and
    meanings are Text Embeddings Inference's (milliseconds); X-Timing carries the whole "timing" object, and
    X-Truncated-Inputs the indices of the inputs cut to the model's window ("1,3"; absent when none was)."""
    ms = when["request_ms"]
    compute = sum(ms.get(stage, 0.0) for stage in ("preprocess", "inference", "postprocess"))
    headers = {
        "x-total-time": str(ms.get("total", 0.0)),
        "x-tokenization-time": str(ms.get("preprocess", 0.0)),
        "x-inference-time": str(ms.get("inference", 0.0)),
        "x-compute-time": str(round(compute, 3)),
        "X-Cold-Start": "true" if when["cold_start"] else "false",
        "X-Timing": json.dumps(when, separators=(",", ":")),
    }
    if when.get("truncated_inputs"):  # the inputs cut at the model's max length, for bodies with no place to say it
        headers["X-Truncated-Inputs"] = ",".join(map(str, when["truncated_inputs"]))
    return headers


def http_response(status: int, body: Any, request_id: str, headers: dict[str, str] | None = None) -> HttpResponse:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "X-Request-Id": request_id, **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def error_body(error: RequestError, request_id: str) -> dict[str, Any]:
    """The Inference API shape of an error: {"error": {"type", "message", "request_id"}}."""
    return {"error": {"type": error.error_type, "message": str(error), "request_id": request_id}}


def http_error(error: RequestError, request_id: str, body: Any) -> HttpResponse:
    """An error as an HTTP response, `body` in the error shape of the route that was called."""
    headers = {"Allow": "POST"} if isinstance(error, MethodNotAllowedError) else None
    return http_response(error.status, body, request_id, headers)
