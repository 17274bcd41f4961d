"""/v1/chat/completions and /v1/completions: OpenAI's shapes for text-generation models (not streamed).

    POST /v1/chat/completions {"messages": [{"role", "content"}], "model", "max_tokens" | "max_completion_tokens",
                               "temperature", "top_p", "seed", "stop", "n", "user", "stream": false}
    -> {"id", "object": "chat.completion", "created", "model", "choices": [{"index", "message": {"role": "assistant",
        "content"}, "finish_reason", "logprobs": null}], "usage": {"prompt_tokens", "completion_tokens",
        "total_tokens"}}
    POST /v1/completions      {"prompt": str | [str], ...the same knobs}
    -> {"id", "object": "text_completion", "created", "model", "choices": [{"index", "text", "finish_reason",
        "logprobs": null}], "usage"}
    errors: {"error": {"message", "type", "param", "code"}}, as /v1/embeddings

Chats are rendered with the bundle's chat template, as `"inputs": [messages]` is. Decoding is greedy unless the request
samples: `temperature` > 0 (or `top_p` < 1 with the default temperature 1) samples, `temperature` 0 or none is greedy,
so a request without knobs has one reproducible answer. `n` answers come from `n` copies of each prompt in one pass;
choices are numbered prompt by prompt. finish_reason is "stop" (an end-of-sequence token or a stop string) or
"length" (`max_tokens`, or decoding cut short by the invocation's deadline). `stream: true` is refused: this
function answers with one buffered response.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.errors import InvalidInputError, InvalidParametersError, PayloadTooLargeError, RequestError
from runtime.request import Limits, Request, json_object, parse_payload
from runtime.routes.openai_embeddings import openai_error
from runtime.routes.route import Reply

KNOBS = ("model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n", "user", "stream")
FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length", "time_limit": "length"}


def generation_parameters(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling knobs -> this function's generation parameters (ranges are checked by the task)."""
    if body.get("stream"):
        raise InvalidParametersError(
            "'stream': true is not served: this function answers with one buffered response; send \"stream\": false"
        )
    params: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature < 0:
        raise InvalidParametersError(f"'temperature' must be a number >= 0, got {temperature!r}")
    hot = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0
    narrowed = temperature is None and isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and top_p < 1
    sampling = hot or narrowed
    if sampling:
        params["do_sample"] = True
        if temperature is not None:
            params["temperature"] = temperature
        if top_p is not None:
            params["top_p"] = top_p
    for name in ("seed", "stop"):
        if body.get(name) is not None:
            params[name] = body[name]
    return params


def _copies(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParametersError(f"'n' must be an integer >= 1, got {n!r}")
    return n


def _choices_request(prompts: list[Any], body: dict[str, Any], limits: Limits, single: bool) -> Request:
    n = _copies(body)
    params = generation_parameters(body)
    inputs = [prompt for prompt in prompts for _ in range(n)]
    if len(inputs) > limits.max_items:
        raise PayloadTooLargeError(
            f"{len(prompts)} prompt(s) x n={n} is {len(inputs)} answers; the limit is {limits.max_items} "
            "(MAX_BATCH_ITEMS)"
        )
    for prompt in prompts:  # each prompt checked as "inputs" would be (text limits, chat shape)
        parse_payload({"inputs": prompt}, limits)
    return Request(inputs, single, params, {"copies": n})


def _usage(reply: Reply) -> dict[str, int]:
    facts = reply.prediction.facts
    n = reply.request.response_options.get("copies", 1)
    prompt = sum(f.get("input_tokens", 0) for f in facts[::n])  # a prompt is read once, whatever n
    completion = sum(f.get("generated_tokens", 0) for f in facts)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(reply: Reply, id_prefix: str, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The body both routes answer with: their choices, named and counted."""
    return {
        "id": f"{id_prefix}-{reply.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": reply.served.model["name"],
        "choices": choices,
        "usage": _usage(reply),
    }


def _finish(reply: Reply, i: int) -> str:
    facts = reply.prediction.facts
    return FINISH.get(facts[i].get("finish_reason", "length"), "length") if i < len(facts) else "length"


class OpenAIChatCompletions:
    paths: tuple[str, ...] = ("/v1/chat/completions",)
    tasks: tuple[str, ...] = ("text-generation",)
    example = '{"model": "name", "messages": [{"role": "user", "content": "Hello"}]}'
    keys = ("messages", *KNOBS)

    def parse(self, payload: Any, limits: Limits) -> Request:
        body = json_object(payload, self.keys, self.example)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidInputError(f'"messages" must be a non-empty list of messages: send {self.example}')
        return _choices_request([messages], body, limits, single=True)

    def body(self, reply: Reply) -> Any:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": out["generated_text"]},
                "finish_reason": _finish(reply, i),
                "logprobs": None,
            }
            for i, out in enumerate(reply.prediction.outputs)
        ]
        return _completion(reply, "chatcmpl", "chat.completion", choices)

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return openai_error(error)


class OpenAICompletions:
    paths: tuple[str, ...] = ("/v1/completions",)
    tasks: tuple[str, ...] = ("text-generation",)
    example = '{"model": "name", "prompt": "Once upon a time"}'
    keys = ("prompt", *KNOBS)

    def parse(self, payload: Any, limits: Limits) -> Request:
        body = json_object(payload, self.keys, self.example)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise InvalidInputError(f'"prompt" must be a text or a non-empty list of texts: send {self.example}')
        return _choices_request(prompts, body, limits, single=isinstance(prompt, str))

    def body(self, reply: Reply) -> Any:
        choices = [
            {"index": i, "text": out["generated_text"], "finish_reason": _finish(reply, i), "logprobs": None}
            for i, out in enumerate(reply.prediction.outputs)
        ]
        return _completion(reply, "cmpl", "text_completion", choices)

    def error_body(self, error: RequestError, request_id: str) -> Any:
        return openai_error(error)
