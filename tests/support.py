"""Shared test helpers: the real events in events/, what each must produce, and loading the handler fresh."""

from __future__ import annotations

import base64
import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
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


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def event_inputs(event: dict[str, Any]) -> Any:
    """The "inputs" a good event carries, whatever the trigger."""
    if "body" not in event:
        return event["inputs"]
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)["inputs"]


class FakeContext:
    """What awslambdaric passes: only the fields the handler reads."""

    function_name = "test-function"

    def __init__(self, request_id: str = "req-test-1") -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def fresh_handler(monkeypatch: Any, bundle: Path, **env: str) -> Any:
    """Import handler.py anew (a new container's init) with MODEL_BUNDLE=bundle and extra env."""
    monkeypatch.setenv("MODEL_BUNDLE", str(bundle))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sys.modules.pop("handler", None)
    return importlib.import_module("handler")
