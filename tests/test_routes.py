"""HTTP routes chosen by path: /embed and /rerank as Text Embeddings Inference answers, /v1/embeddings as OpenAI does,
/ and /predict as before; any other path a 404 listing the routes.

Peers: sentence-transformers' SentenceTransformer.encode (all-MiniLM-L6-v2) and CrossEncoder.rank (the tiny
cross-encoder of conftest.py), the model's own tokenizer for OpenAI's usage counts. Events are the real ones in
events/ with the path and body changed, so every trigger's path rules are exercised.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import numpy as np
import pytest

from support import FakeContext, load_event, new_function
from test_cross_encoder import DOCS, QUERY

TEXTS = ["The hotel staff went out of their way to help us.", "My order arrived broken.", "ok"]
TEMPLATES = {"function-url": "function_url.json", "http-api": "http_api_v2.json", "rest": "apigw_rest_v1.json"}


def http_event(path: str, body: Any, *, kind: str = "function-url", method: str = "POST", stage: str = "") -> dict:
    """A real event of `kind` from events/, sent to `path` with `body` as JSON."""
    event = copy.deepcopy(load_event(TEMPLATES[kind]))
    event["body"], event["isBase64Encoded"] = json.dumps(body), False
    if kind == "rest":
        event["path"], event["httpMethod"] = path, method
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
        return event
    ctx = event["requestContext"]
    ctx["stage"] = stage or "$default"
    event["rawPath"] = ctx["http"]["path"] = f"/{stage}{path}" if stage else path
    ctx["http"]["method"] = method
    return event


def call(fn: Any, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
    response = fn.handle(http_event(path, body, **kw), FakeContext())
    return response["statusCode"], response["headers"], json.loads(response["body"])


def cosines(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def minilm(minilm_dir) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def embed_fn(minilm_bundle) -> Any:
    return new_function(minilm_bundle, NUM_THREADS="1")


@pytest.fixture(scope="module")
def rerank_fn(cross_encoder) -> Any:
    return new_function(cross_encoder[1], NUM_THREADS="1")


# --- /embed --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_embed_answers_tei_vectors_equal_to_encode(embed_fn, minilm, kind: str) -> None:
    status, headers, body = call(embed_fn, "/embed", {"inputs": TEXTS}, kind=kind)
    assert status == 200, body
    assert isinstance(body, list) and len(body) == len(TEXTS)
    assert cosines(body, minilm.encode(TEXTS)).min() > 0.9999
    timing = json.loads(headers["X-Timing"])  # the body has no place for timing: the headers carry it
    assert float(headers["x-inference-time"]) == timing["request_ms"]["inference"] > 0
    assert headers["X-Cold-Start"] in ("true", "false")


def test_embed_of_one_string_is_still_a_list_of_vectors(embed_fn, minilm) -> None:
    status, _, body = call(embed_fn, "/embed", {"inputs": TEXTS[0]})
    assert status == 200 and len(body) == 1
    assert cosines(body, minilm.encode([TEXTS[0]]))[0] > 0.9999


def test_embed_takes_tei_parameters_at_the_top_level(embed_fn, minilm) -> None:
    status, _, body = call(embed_fn, "/embed", {"inputs": TEXTS, "dimensions": 64, "normalize": True})
    want = minilm.encode(TEXTS, truncate_dim=64, normalize_embeddings=True)
    assert status == 200 and np.asarray(body).shape == (3, 64)
    assert cosines(body, want).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(body, axis=1), 1.0, atol=1e-5)


def test_embed_errors_are_in_tei_shape(embed_fn) -> None:
    status, _, body = call(embed_fn, "/embed", {"inputs": " ".join(["word"] * 600), "truncate": False})
    assert status == 413 and body["error_type"] == "Validation"
    assert "tokens; the limit is 256" in body["error"]
    status, _, body = call(embed_fn, "/embed", {"inputs": "a", "temperature": 1})
    assert status == 400 and body == {
        "error": "unknown key 'temperature' in the request; it accepts ['inputs', 'normalize', 'truncate', "
        "'truncation_direction', 'prompt_name', 'dimensions']",
        "error_type": "Validation",
    }


# --- /v1/embeddings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_openai_embeddings_equal_encode_and_count_tokens(embed_fn, minilm, minilm_dir, encoding: str) -> None:
    from transformers import AutoTokenizer

    request = {"input": TEXTS, "model": "anything", "encoding_format": encoding}
    status, _, body = call(embed_fn, "/v1/embeddings", request)
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"embedding"}
    vectors = [d["embedding"] for d in body["data"]]
    if encoding == "base64":
        vectors = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in vectors]
    assert cosines(vectors, minilm.encode(TEXTS)).min() > 0.9999
    tokens = sum(sum(mask) for mask in AutoTokenizer.from_pretrained(str(minilm_dir))(TEXTS)["attention_mask"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_openai_dimensions_keep_the_first_ones_renormalised(embed_fn, minilm) -> None:
    status, _, body = call(embed_fn, "/v1/embeddings", {"input": "hello there", "model": "m", "dimensions": 32})
    vector = body["data"][0]["embedding"]
    assert status == 200 and len(vector) == 32
    assert cosines([vector], minilm.encode(["hello there"], truncate_dim=32))[0] > 0.9999
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"model": "m"}, 400, 'the request has no "input"'),
        ({"input": [101, 2023], "model": "m"}, 400, '"input" holds token ids'),
        ({"input": "a", "model": "m", "encoding_format": "int8"}, 422, "'encoding_format' must be one of"),
        ({"input": "a", "model": "m", "dimensions": 9999}, 422, "'dimensions' must be an integer between 1 and 384"),
        ({"input": "a", "stream": True}, 400, "unknown key 'stream'"),
    ],
)
def test_openai_errors_are_in_openai_shape(embed_fn, request_body: dict, status: int, message: str) -> None:
    got, _, body = call(embed_fn, "/v1/embeddings", request_body)
    assert got == status
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and message in body["error"]["message"]


# --- /rerank -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"raw_scores": True}, {"return_text": True}])
def test_rerank_answers_as_cross_encoder_rank(cross_encoder, rerank_fn, extra: dict) -> None:
    model = cross_encoder[0]
    status, _, body = call(rerank_fn, "/rerank", {"query": QUERY, "texts": DOCS, **extra})
    assert status == 200, body
    want = model.rank(
        QUERY,
        DOCS,
        return_documents=bool(extra.get("return_text")),
        activation_fn=None if not extra.get("raw_scores") else __import__("torch").nn.Identity(),
    )
    assert [r["index"] for r in body] == [int(r["corpus_id"]) for r in want]
    np.testing.assert_allclose([r["score"] for r in body], [float(r["score"]) for r in want], atol=1e-4)
    if extra.get("return_text"):
        assert [r["text"] for r in body] == [r["text"] for r in want]
    else:
        assert all(set(r) == {"index", "score"} for r in body)


def test_rerank_needs_query_and_texts(rerank_fn) -> None:
    status, _, body = call(rerank_fn, "/rerank", {"query": QUERY})
    assert status == 400 and body["error_type"] == "Validation"
    assert body["error"] == 'a rerank request needs "query" and "texts": send {"query": "text", "texts": ["text", ...]}'


# --- paths, methods, unknown routes ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/predict", "/predict/"])
def test_the_inference_api_shape_stays_on_root_and_predict(embed_fn, path: str) -> None:
    status, _, body = call(embed_fn, path, {"inputs": TEXTS[0]})
    assert status == 200 and set(body) == {"outputs", "model", "timing"} and len(body["outputs"]) == 384


def test_a_named_http_api_stage_is_not_part_of_the_route(embed_fn) -> None:
    status, _, body = call(embed_fn, "/embed", {"inputs": "hello"}, kind="http-api", stage="prod")
    assert status == 200 and len(body) == 1 and len(body[0]) == 384


def test_an_unknown_path_is_a_404_listing_the_routes(embed_fn) -> None:
    status, _, body = call(embed_fn, "/v2/embed", {"inputs": "hello"})
    assert status == 404 and body["error"]["type"] == "RouteNotFoundError"
    assert body["error"]["message"] == (
        "no route /v2/embed; this function's routes are: /, /predict, /embed, /v1/embeddings (POST)"
    )


def test_a_route_of_another_task_is_a_404_naming_both_tasks(embed_fn, rerank_fn) -> None:
    status, _, body = call(embed_fn, "/rerank", {"query": QUERY, "texts": DOCS})
    assert status == 404
    assert body["error"]["message"].startswith(
        "/rerank is for text-classification models and this one does feature-extraction; its routes are: /, "
    )
    status, _, body = call(rerank_fn, "/v1/embeddings", {"input": "a", "model": "m"})
    assert status == 404 and "/, /predict, /rerank (POST)" in body["error"]["message"]


def test_a_get_on_a_route_is_a_405_with_allow_in_the_routes_shape(embed_fn) -> None:
    response = embed_fn.handle(http_event("/v1/embeddings", {}, method="GET"), FakeContext())
    assert response["statusCode"] == 405 and response["headers"]["Allow"] == "POST"
    error = json.loads(response["body"])["error"]
    assert error["code"] == "MethodNotAllowedError" and "not allowed on /v1/embeddings" in error["message"]


# --- events/routes/: sample events of each route, shaped as Lambda sends them ----------------------------------

ROUTE_EVENTS = {
    "function_url_embed.json": ("embed", "/embed"),
    "function_url_openai_embeddings.json": ("embed", "/v1/embeddings"),
    "function_url_rerank.json": ("rerank", "/rerank"),
}


def test_every_route_sample_event_is_listed() -> None:
    from support import EVENTS

    assert sorted(p.name for p in (EVENTS / "routes").glob("*.json")) == sorted(ROUTE_EVENTS)


@pytest.mark.parametrize("name", sorted(ROUTE_EVENTS))
def test_route_sample_events_are_function_url_events_answered_200(name: str, request) -> None:
    import hashlib

    event = load_event(f"routes/{name}")
    template = load_event("function_url.json")
    which, path = ROUTE_EVENTS[name]
    assert set(event) == set(template) and set(event["requestContext"]) == set(template["requestContext"])
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == path
    body = event["body"].encode()
    assert event["headers"]["content-length"] == str(len(body))
    assert event["headers"]["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    fn = request.getfixturevalue(f"{which}_fn")
    response = fn.handle(event, FakeContext())
    assert response["statusCode"] == 200, response["body"]
    answer = json.loads(response["body"])
    assert isinstance(answer, list) if path != "/v1/embeddings" else answer["object"] == "list"
