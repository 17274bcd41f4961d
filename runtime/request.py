"""The request body (the Hugging Face Inference API shape) -> a checked Request.

{"inputs": "text" | ["text", ...] | [{"role": ..., "content": ...}, ...], "parameters": {...}}

Text classification also takes pairs, {"text": ..., "text_pair": ...}, and a rerank request, {"query": ...,
"texts": [...]}, alone or in a list; which keys a mapping must have is the task's to say.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InvalidInputError, InvalidParametersError, PayloadTooLargeError

ALLOWED_KEYS = ("inputs", "parameters")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_items: int
    max_chars: int


@dataclass(frozen=True)
class Request:
    inputs: list[Any]  # str; a chat (list of {"role", "content"}); or a mapping of texts (pairs, rerank)
    single: bool  # the caller sent one input, not a list: answer with one output
    parameters: dict[str, Any]
    response_options: dict[str, Any] = field(default_factory=dict)  # how an HTTP route shapes its answer


EXAMPLE = '{"inputs": "text"}'


def parse_body(body: bytes | str, limits: Limits) -> Request:
    """JSON bytes of an HTTP or SQS body -> Request. Raises InvalidInputError / PayloadTooLargeError."""
    return parse_payload(decode_json(body, limits), limits)


def decode_json(body: bytes | str, limits: Limits, example: str = EXAMPLE) -> Any:
    """JSON bytes (strict UTF-8, within MAX_BODY_BYTES) -> the decoded value; errors show `example` as the fix."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > limits.max_body_bytes:
        raise PayloadTooLargeError(
            f"the body has {len(raw)} bytes; the limit is {limits.max_body_bytes} (MAX_BODY_BYTES)"
        )
    if not raw.strip():
        raise InvalidInputError(f"the body is empty; send JSON like {example}")
    # strict UTF-8: json.loads(bytes) would also take UTF-16/32 and UTF-8-encoded lone surrogates ("surrogatepass")
    data = raw.removeprefix(b"\xef\xbb\xbf")  # a leading byte order mark is tolerated
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = len(raw) - len(data) + e.start
        raise InvalidInputError(
            f"the body is not valid UTF-8 (byte {data[e.start]:#04x} at offset {at}); send JSON encoded as UTF-8"
        ) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        reason = str(e) if isinstance(e, ValueError) else "nested too deeply"
        raise InvalidInputError(f"the body is not valid JSON ({reason}); send JSON like {example}") from None


def json_object(payload: Any, keys: tuple[str, ...], example: str) -> dict[str, Any]:
    """`payload` as a JSON object with only `keys`; raises InvalidInputError naming the first other key."""
    if not isinstance(payload, dict):
        raise InvalidInputError(f"the request must be a JSON object like {example}, got {type(payload).__name__}")
    unknown = sorted(str(k) for k in payload if k not in keys)
    if unknown:
        raise InvalidInputError(f"unknown key {unknown[0]!r} in the request; it accepts {list(keys)}")
    return payload


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _check_chat(chat: list[dict[str, Any]], limits: Limits) -> None:
    for i, m in enumerate(chat):
        if set(m) != {"role", "content"} or not isinstance(m["role"], str) or not isinstance(m["content"], str):
            raise InvalidInputError(
                f'chat message {i} must be {{"role": str, "content": str}}, got keys {sorted(map(str, m))}'
            )
        try:
            m["content"].encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(f"chat message {i} content is not valid UTF-8 text (lone surrogate)") from None
    chars = sum(len(m["role"]) + len(m["content"]) for m in chat)  # a template renders roles too
    if chars > limits.max_chars:
        raise PayloadTooLargeError(
            f"the chat has {chars} characters (roles and contents); the limit is {limits.max_chars} (MAX_INPUT_CHARS)"
        )


def parse_payload(payload: Any, limits: Limits) -> Request:
    """A decoded JSON value (direct invoke event or parsed body) -> Request."""
    payload = json_object(payload, ALLOWED_KEYS, EXAMPLE)
    if "inputs" not in payload:
        raise InvalidInputError('the request has no "inputs": send {"inputs": "text"} or {"inputs": ["text", ...]}')
    inputs = payload["inputs"]
    params = payload.get("parameters")
    if params is None:  # absent or null; a falsy non-object (0, "", [], false) is an error, not "no parameters"
        params = {}
    if not isinstance(params, dict):
        raise InvalidParametersError(f'"parameters" must be a JSON object, got {type(params).__name__}')
    if isinstance(inputs, str) or (isinstance(inputs, dict) and inputs):
        items, single = [inputs], True
    elif _is_chat(inputs) and all("role" in m for m in inputs):
        _check_chat(inputs, limits)
        items, single = [inputs], True
    elif isinstance(inputs, list) and inputs:
        items, single = inputs, False
    else:
        raise InvalidInputError(f'"inputs" must be a string or a non-empty list of strings, got {_describe(inputs)}')
    if len(items) > limits.max_items:
        raise PayloadTooLargeError(
            f'"inputs" has {len(items)} items; the limit is {limits.max_items} (MAX_BATCH_ITEMS)'
        )
    for i, item in enumerate(items):
        if isinstance(item, list) and _is_chat(item):
            _check_chat(item, limits)
            continue
        if isinstance(item, dict):
            _check_texts(i, item, limits)
            continue
        if not isinstance(item, str):
            raise InvalidInputError(f'"inputs"[{i}] must be a string, got {_describe(item)}')
        if not item.strip():
            raise InvalidInputError(f'"inputs"[{i}] is empty; send some text')
        if len(item) > limits.max_chars:
            raise PayloadTooLargeError(
                f'"inputs"[{i}] has {len(item)} characters; the limit is {limits.max_chars} (MAX_INPUT_CHARS)'
            )
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(f'"inputs"[{i}] is not valid UTF-8 text (lone surrogate)') from None
    return Request(inputs=items, single=single, parameters=params)


def _check_texts(i: int, item: dict[str, Any], limits: Limits) -> None:
    """A mapping input holds strings or lists of strings, each within the character limit."""
    for key, value in item.items():
        texts = value if isinstance(value, list) else [value]
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise InvalidInputError(f'"inputs"[{i}].{key} must be non-empty text or a non-empty list of texts')
        if len(texts) > limits.max_items:
            raise PayloadTooLargeError(
                f'"inputs"[{i}].{key} has {len(texts)} texts; the limit is {limits.max_items} (MAX_BATCH_ITEMS)'
            )
        for t in texts:
            if len(t) > limits.max_chars:
                raise PayloadTooLargeError(
                    f'"inputs"[{i}].{key} has a text of {len(t)} characters; the limit is {limits.max_chars} '
                    "(MAX_INPUT_CHARS)"
                )
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInputError(f'"inputs"[{i}].{key} is not valid UTF-8 text (lone surrogate)') from None


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return "null" if value is None else type(value).__name__
