"""`make serve` (devtools/serve.py): HTTP requests become Function URL events, answered through the official RIE.

Clients that exist call it unchanged: the pinned `openai` client on /v1/embeddings (base64, the client's default,
and float), plain HTTP on /embed and /. The peer for the vectors is SentenceTransformer.encode on all-MiniLM-L6-v2.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from runtime.events import EventKind, HttpEvent, classify
from test_events_shape import FUNCTION_URL_DOMAIN, FUNCTION_URL_IAM_KEYS, HTTP_V2_CONTEXT_KEYS, HTTP_V2_HTTP_KEYS, HTTP_V2_KEYS

TEXTS = ["The hotel staff went out of their way to help us.", "My order arrived broken.", "ok"]


@pytest.fixture(scope="module")
def server(minilm_bundle) -> Any:
    from devtools.rie import RieFunction
    from devtools.serve import HANDLER, LocalServer

    with RieFunction(HANDLER, env={"MODEL_BUNDLE": str(minilm_bundle)}, timeout_s=120) as fn, LocalServer(fn) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> Any:
    import openai

    http = openai.DefaultHttpxClient(trust_env=False)  # no proxy from the environment: 127.0.0.1 only
    yield openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0, http_client=http)
    http.close()


@pytest.fixture(scope="module")
def encode(minilm_dir) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True).encode


def cosines(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def post(server: Any, path: str, body: Any, method: str = "POST") -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_the_openai_client_gets_embeddings_equal_to_encode(client, encode) -> None:
    answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64
    assert answer.model == "all-MiniLM-L6-v2" and [d.index for d in answer.data] == [0, 1, 2]
    assert cosines([d.embedding for d in answer.data], encode(TEXTS)).min() > 0.9999
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(TEXTS) * 2


def test_the_openai_client_gets_float_and_shortened_embeddings(client, encode) -> None:
    answer = client.embeddings.create(model="m", input="hello there", encoding_format="float", dimensions=64)
    vector = answer.data[0].embedding
    assert len(vector) == 64 and abs(np.linalg.norm(vector) - 1.0) < 1e-5
    assert cosines([vector], encode(["hello there"], truncate_dim=64))[0] > 0.9999


def test_the_openai_client_raises_on_a_bad_request_with_the_reason(client) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="m", input=[[101, 7592]])
    assert info.value.status_code == 400
    assert '"input" holds token ids; this function takes text' in info.value.message


def test_embed_and_the_inference_api_answer_over_plain_http(server, encode) -> None:
    status, headers, body = post(server, "/embed", {"inputs": TEXTS})
    assert status == 200 and cosines(body, encode(TEXTS)).min() > 0.9999
    assert float(headers["x-inference-time"]) > 0 and json.loads(headers["X-Timing"])["device"] == "cpu"
    status, _, body = post(server, "/", {"inputs": TEXTS[0]})
    assert status == 200 and set(body) == {"outputs", "model", "timing"}


def test_unknown_paths_and_methods_answer_404_and_405(server) -> None:
    status, _, body = post(server, "/v1/chat/completions", {"messages": []})
    assert status == 404 and "/, /predict, /embed, /v1/embeddings (POST)" in body["error"]["message"]
    status, headers, body = post(server, "/embed", {}, method="PUT")
    assert status == 405 and headers["Allow"] == "POST" and body["error_type"] == "Validation"


def test_requests_become_function_url_events_as_lambda_builds_them() -> None:
    from devtools.serve import function_url_event

    event = function_url_event(
        "post", "/embed?a=1&a=2", {"Content-Type": "application/json", "Cookie": "x=1; y=2"}, b'{"inputs": "hi"}'
    )
    assert set(event) == HTTP_V2_KEYS  # cookies and query parameters present: the full v2 key set
    ctx = event["requestContext"]
    assert set(ctx) == HTTP_V2_CONTEXT_KEYS and set(ctx["http"]) == HTTP_V2_HTTP_KEYS
    assert set(ctx["authorizer"]["iam"]) == FUNCTION_URL_IAM_KEYS
    assert FUNCTION_URL_DOMAIN.match(ctx["domainName"]) and event["headers"]["host"] == ctx["domainName"]
    assert event["queryStringParameters"] == {"a": "1,2"} and event["cookies"] == ["x=1", "y=2"]
    assert classify(event) is EventKind.FUNCTION_URL
    http = HttpEvent(event, EventKind.FUNCTION_URL)
    assert (http.method, http.path, http.body(1000)) == ("POST", "/embed", b'{"inputs": "hi"}')
    binary = function_url_event("POST", "/", {"Content-Type": "application/octet-stream"}, b"\xff\x00")
    assert binary["isBase64Encoded"] is True and binary["body"] == "/wA="
