"""HTTP requests are read as AWS sends them and refused early: a non-JSON Content-Type is a 415, a method the routes
do not take a 405 with Allow, isBase64Encoded is a boolean, and the body limit holds before anything is decoded."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from support import FakeContext, load_event, new_function

KINDS = ["apigw_rest_v1.json", "http_api_v2.json", "function_url.json"]


@pytest.fixture(scope="module")
def fn(tiny_bundle) -> Any:
    return new_function(tiny_bundle("bert"), MAX_BODY_BYTES="2000")


def with_headers(name: str, **headers: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    kept = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() not in {h.lower() for h in headers}}
    event["headers"] = {**kept, **{k: v for k, v in headers.items() if v is not None}}
    event.pop("multiValueHeaders", None)
    return event


def answer(fn: Any, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = fn.handle(event, FakeContext())
    return response["statusCode"], json.loads(response["body"]), response["headers"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          "multipart/form-data; boundary=x"])
def test_a_non_json_content_type_is_a_415(fn, kind: str, content_type: str) -> None:
    status, body, _ = answer(fn, with_headers(kind, **{"Content-Type": content_type}))
    assert status == 415 and body["error"]["type"] == "UnsupportedMediaTypeError"
    assert repr(content_type) in body["error"]["message"] and "application/json" in body["error"]["message"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8",
                                          "application/vnd.api+json", None])
def test_json_content_types_and_none_are_served(fn, kind: str, content_type: str | None) -> None:
    headers = {"content-type": None, "Content-Type": content_type}
    status, body, _ = answer(fn, with_headers(kind, **headers))
    assert status == 200 and "outputs" in body


def test_the_415_comes_in_the_routes_own_error_shape(tiny_bundle) -> None:
    embedder = new_function(tiny_bundle("bert", task="feature-extraction"))
    event = with_headers("routes/function_url_embed.json", **{"content-type": "text/plain"})
    status, body, _ = answer(embedder, event)
    assert status == 415 and body["error_type"] == "Validation" and "text/plain" in body["error"]  # TEI's shape


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_a_405_with_allow(fn, method: str) -> None:
    event = copy.deepcopy(load_event("http_api_v2.json"))
    event["requestContext"]["http"]["method"] = method
    status, body, headers = answer(fn, event)
    assert status == 405 and headers["Allow"] == "POST" and body["error"]["type"] == "MethodNotAllowedError"


@pytest.mark.parametrize("flag", [False, "false", "False", None])
def test_a_body_not_marked_base64_is_read_as_text(fn, flag: Any) -> None:
    event = copy.deepcopy(load_event("function_url.json"))
    event["isBase64Encoded"] = flag
    assert answer(fn, event)[0] == 200


@pytest.mark.parametrize("flag", [True, "true"])
def test_a_body_marked_base64_is_decoded(fn, flag: Any) -> None:
    event = copy.deepcopy(load_event("function_url.json"))
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = flag
    assert answer(fn, event)[0] == 200


def test_the_body_limit_holds_before_base64_is_decoded(fn, monkeypatch) -> None:
    import runtime.events

    def no_decoding(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("a body over the limit was decoded")

    event = copy.deepcopy(load_event("function_url.json"))
    event["body"] = base64.b64encode(b"x" * 5000).decode()
    event["isBase64Encoded"] = True
    monkeypatch.setattr(runtime.events.base64, "b64decode", no_decoding)
    status, body, _ = answer(fn, event)
    assert status == 413 and "MAX_BODY_BYTES" in body["error"]["message"]


def test_a_large_body_that_is_not_json_is_a_413_not_a_400(fn) -> None:
    event = copy.deepcopy(load_event("function_url.json"))
    event["body"] = "<" * 2001
    assert answer(fn, event)[0] == 413
    event["body"] = "<" * 1999
    assert answer(fn, event)[0] == 400
