"""/v1/embeddings: the OpenAI embeddings shape, so the openai client (and what is built on it) calls unchanged.

    POST /v1/embeddings {"input": str | [str], "model": str, "dimensions": int, "encoding_format": "float" | "base64",
                         "user": str}
    -> {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage":
        {"prompt_tokens", "total_tokens"}}
    errors: {"error": {"message", "type", "param", "code"}}

"model" is taken and not checked: the function serves one model, and the answer names it. A base64 embedding is the
little-endian float32 bytes, as the openai client decodes it (it asks for base64 unless told otherwise). The usage
counts the tokens the model read, special tokens and any prompt included. Timing is in the response headers.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from runtime.errors import InternalError, InvalidInputError, InvalidParametersError, RequestError
from runtime.request import Limits, Request, json_object, parse_payload
from runtime.routes.route import Reply

ENCODINGS = ("float", "base64")


class OpenAIEmbeddings:
    paths: tuple[str, ...] = ("/v1/embeddings",)
    tasks: tuple[str, ...] = ("feature-extraction",)
    example = '{"input": "text", "model": "name"}'
    keys = ("input", "model", "dimensions", "encoding_format", "user")

    def parse(self, payload: Any, limits: Limits) -> Request:
        body = json_object(payload, self.keys, self.example)
        if "input" not in body:
            raise InvalidInputError(f'the request has no "input": send {self.example}')
        text = body["input"]
        if _token_ids(text):
            raise InvalidInputError('"input" holds token ids; this function takes text: send strings')
        encoding = body.get("encoding_format") or "float"
        if encoding not in ENCODINGS:
            raise InvalidParametersError(f"'encoding_format' must be one of {list(ENCODINGS)}, got {encoding!r}")
        params = {"dimensions": body["dimensions"]} if body.get("dimensions") is not None else {}
        request = parse_payload({"inputs": text, "parameters": params}, limits)
        return Request(request.inputs, request.single, request.parameters, {"encoding_format": encoding})

    def body(self, reply: Reply) -> Any:
        as_base64 = reply.request.response_options.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _base64(vector) if as_base64 else vector}
            for i, vector in enumerate(reply.prediction.outputs)
        ]
        tokens = reply.prediction.input_tokens or 0
        return {
            "object": "list",
            "data": data,
            "model": reply.served.model["name"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return openai_error(error)


def openai_error(error: RequestError) -> dict[str, Any]:
    """An error in the shape the openai client reads (it raises it with this message)."""
    kind = "server_error" if isinstance(error, InternalError) else "invalid_request_error"
    return {"error": {"message": str(error), "type": kind, "param": None, "code": error.error_type}}


def _token_ids(value: Any) -> bool:
    """OpenAI also takes token ids: [int, ...] or [[int, ...], ...]."""

    def ints(xs: Any) -> bool:
        return isinstance(xs, list) and bool(xs) and all(isinstance(x, int) and not isinstance(x, bool) for x in xs)

    return ints(value) or (isinstance(value, list) and bool(value) and all(ints(x) for x in value))


def _base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
