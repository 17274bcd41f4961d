"""The documented answer of every file in ``events/``, shared by the tests and ``python -m devtools.demo``.

``events/`` holds only AWS-shaped payloads, so what each must produce lives here. ``EXPECTED`` maps an event
file to ``(how, want)``:

    ("direct", "ok")        the handler returns the envelope {"outputs", "model", "timing"}
    ("http", status)        an HTTP response {"statusCode": status, "headers", "body": JSON}; 200 carries the
                            envelope, any other status {"error": {"type", "message", "request_id"}}
    ("sqs", [messageId])    {"batchItemFailures": [...]} listing exactly these ids, in this order
    ("raises", errorType)   the invoke fails with this errorType (a direct invoke's typed error)

:func:`mismatch` judges one answer of the official RIE against that table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devtools.rie import InvokeResult

POISON_MESSAGE_ID = "9b2d4c6e-1a3f-4b5c-8d7e-6f5a4b3c2d1e"  # sqs_batch.json's record with a non-JSON body

# event file -> (how it is answered, what it must give): the documented contract of each trigger
EXPECTED: dict[str, tuple[str, Any]] = {
    "direct_single.json": ("direct", "ok"),
    "direct_list.json": ("direct", "ok"),
    "apigw_rest_v1.json": ("http", 200),
    "http_api_v2.json": ("http", 200),
    "function_url.json": ("http", 200),
    "sqs_batch.json": ("sqs", [POISON_MESSAGE_ID]),
    "bad_direct_missing_inputs.json": ("raises", "InvalidInputError"),
    "bad_http_invalid_json.json": ("http", 400),
    "bad_http_too_many_inputs.json": ("http", 413),
    "bad_http_bad_parameters.json": ("http", 422),
    "bad_http_wrong_method.json": ("http", 405),
}

_ENVELOPE_KEYS = {"outputs", "model", "timing"}


def mismatch(name: str, result: InvokeResult) -> str | None:
    """Why ``result`` is not the documented answer to event file ``name``; None when it is.

    Args:
        name: an event file name, a key of EXPECTED.
        result: what the RIE answered to that event.

    Raises:
        KeyError: ``name`` has no documented answer.
    """
    how, want = EXPECTED[name]
    if result.timed_out:
        return f"timed out: {result.body}"
    if how == "raises":
        if result.error_type == want:
            return None
        return f"expected errorType {want}, got {_what(result)}"
    if not result.ok:
        return f"expected an answer, got {_what(result)}"
    body = result.body
    if how == "direct":
        if isinstance(body, dict) and set(body) >= _ENVELOPE_KEYS:
            return None
        return f"expected an envelope with {sorted(_ENVELOPE_KEYS)}, got {_short(body)}"
    if how == "sqs":
        expected = {"batchItemFailures": [{"itemIdentifier": mid} for mid in want]}
        return None if body == expected else f"expected {expected}, got {_short(body)}"
    # http
    if not isinstance(body, dict) or body.get("statusCode") != want:
        got = body.get("statusCode") if isinstance(body, dict) else _short(body)
        return f"expected statusCode {want}, got {got}"
    if (body.get("headers") or {}).get("Content-Type") != "application/json":
        return f"expected Content-Type application/json, got headers {body.get('headers')!r}"
    raw = body.get("body")
    if not isinstance(raw, (str, bytes, bytearray)):  # json.loads takes only these (TypeError otherwise)
        return f"expected a JSON body, got {_short(raw)}"
    try:
        payload = json.loads(raw)
    except (TypeError, ValueError):
        return f"expected a JSON body, got {_short(raw)}"
    needed = _ENVELOPE_KEYS if want == 200 else {"error"}
    if not isinstance(payload, dict) or not needed <= set(payload):
        return f"expected a body with {sorted(needed)}, got {_short(payload)}"
    return None


def _what(result: InvokeResult) -> str:
    if result.error_type is not None:
        return f"HTTP {result.status} {result.error_type}: {result.error_message}"
    return f"HTTP {result.status} {_short(result.body)}"


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
