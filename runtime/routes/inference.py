"""/ and /predict: the Hugging Face Inference API shape, as direct invokes and SQS records also speak it.

{"inputs": ..., "parameters": {...}} -> {"outputs", "model", "timing"}
errors: {"error": {"type", "message", "request_id"}}
"""

from __future__ import annotations

from typing import Any

from runtime.errors import RequestError
from runtime.request import EXAMPLE, Limits, Request, parse_payload
from runtime.responses import envelope, error_body
from runtime.routes.route import Reply


class InferenceRoute:
    paths: tuple[str, ...] = ("/", "/predict")
    tasks: tuple[str, ...] = ()
    example = EXAMPLE

    def parse(self, payload: Any, limits: Limits) -> Request:
        return parse_payload(payload, limits)

    def body(self, reply: Reply) -> Any:
        outputs = reply.prediction.outputs
        return envelope(
            reply.served,
            reply.prediction,
            outputs[0] if reply.request.single else outputs,
            request_id=reply.request_id,
            cold=reply.cold,
        )

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return error_body(error, request_id)
