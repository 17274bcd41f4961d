"""/embed and /rerank: Text Embeddings Inference's request and response shapes, so its clients call unchanged.

    POST /embed   {"inputs": str | [str], "normalize", "truncate", "truncation_direction", "prompt_name",
                   "dimensions"}                                  -> [[float, ...], ...] (one vector per input)
    POST /rerank  {"query": str, "texts": [str], "raw_scores", "return_text", "truncate", "truncation_direction",
                   "top_n"}                                        -> [{"index", "score"(, "text")}, ...] by score
    errors        {"error": message, "error_type": "Validation" | "Backend"}

The body has no place for timing: it is in the response headers (runtime/responses.timing_headers).
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InternalError, InvalidInputError, RequestError
from runtime.request import Limits, Request, json_object, parse_payload
from runtime.routes.route import Reply


def _tei_error(error: RequestError) -> dict[str, Any]:
    return {"error": str(error), "error_type": "Backend" if isinstance(error, InternalError) else "Validation"}


class TeiEmbed:
    paths: tuple[str, ...] = ("/embed",)
    tasks: tuple[str, ...] = ("feature-extraction",)
    example = '{"inputs": "text"}'
    parameters = ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions")

    def parse(self, payload: Any, limits: Limits) -> Request:
        body = json_object(payload, ("inputs", *self.parameters), self.example)
        request = {k: v for k, v in body.items() if k == "inputs"}
        request["parameters"] = {k: v for k, v in body.items() if k != "inputs"}
        return parse_payload(request, limits)

    def body(self, reply: Reply) -> Any:
        return reply.prediction.outputs  # a list of vectors, also for a single string

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return _tei_error(error)


class TeiRerank:
    paths: tuple[str, ...] = ("/rerank",)
    tasks: tuple[str, ...] = ("text-classification",)
    example = '{"query": "text", "texts": ["text", ...]}'
    parameters = ("raw_scores", "return_text", "truncate", "truncation_direction", "top_n")

    def parse(self, payload: Any, limits: Limits) -> Request:
        body = json_object(payload, ("query", "texts", *self.parameters), self.example)
        if "query" not in body or "texts" not in body:
            raise InvalidInputError(f'a rerank request needs "query" and "texts": send {self.example}')
        inputs = {"query": body["query"], "texts": body["texts"]}
        return parse_payload(
            {"inputs": inputs, "parameters": {k: body[k] for k in self.parameters if k in body}}, limits
        )

    def body(self, reply: Reply) -> Any:
        return reply.prediction.outputs[0]

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return _tei_error(error)
