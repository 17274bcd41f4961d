"""handler.handler with every event in events/, on a tiny classifier bundle and on the real MiniLM bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import BundleCorruptError, RequestError
from support import EVENTS, EXPECTED, POISON_MESSAGE_ID, FakeContext, event_inputs, new_function, load_event

GOOD_DIRECT = {"inputs": "The battery lasts all day."}


@pytest.fixture(scope="module")
def peers(minilm_dir: Path, tiny_model):
    """Reference outputs per bundle kind: sentence-transformers for MiniLM, the HF pipeline for the tiny classifier."""
    from sentence_transformers import SentenceTransformer
    from transformers import pipeline

    st = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)
    pipe = pipeline("text-classification", model=str(tiny_model("bert")), device="cpu")
    return {
        "minilm": lambda text: st.encode([text])[0].tolist(),
        "tiny": lambda text: pipe(text, top_k=None),
    }


@pytest.fixture(params=["tiny", "minilm"])
def fn(request, monkeypatch, tiny_bundle, minilm_bundle):
    """A freshly initialised function (a new container) on each bundle kind."""
    bundle = tiny_bundle("bert") if request.param == "tiny" else minilm_bundle
    module = new_function(bundle)
    module.kind = request.param
    return module


def assert_matches_peer(kind: str, peers: dict, text: str, output: Any) -> None:
    expected = peers[kind](text)
    if kind == "minilm":
        import torch

        cos = torch.nn.functional.cosine_similarity(torch.tensor(output), torch.tensor(expected), dim=0)
        assert float(cos) >= 0.9999
    else:
        assert [d["label"] for d in output] == [d["label"] for d in expected]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(output, expected)) <= 1e-4


def check_envelope(fn: Any, envelope: dict[str, Any], request_id: str) -> None:
    assert envelope["model"]["sha256"] == fn.predictor.model.bundle.sha256
    assert envelope["model"]["task"] == fn.predictor.model.task
    timing = envelope["timing"]
    assert timing["request_id"] == request_id and timing["device"] == "cpu" and timing["dtype"] == "float32"
    stages = timing["request_ms"]
    assert set(stages) == {"parse", "preprocess", "inference", "postprocess", "total"}
    covered = sum(v for k, v in stages.items() if k != "total")
    # the stages cover the request: what is left is the code between them, plus any preemption on a busy machine
    assert covered <= stages["total"] + 1e-6 and stages["total"] - covered <= max(0.05 * stages["total"], 2.0), stages


def check_answer(fn: Any, peers: dict, event: dict[str, Any], envelope: dict[str, Any], request_id: str) -> None:
    """The envelope is well formed and each output equals the peer's for its input."""
    check_envelope(fn, envelope, request_id)
    inputs = event_inputs(event)
    texts, outputs = ([inputs], [envelope["outputs"]]) if isinstance(inputs, str) else (inputs, envelope["outputs"])
    for text, out in zip(texts, outputs, strict=True):
        assert_matches_peer(fn.kind, peers, text, out)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_event_gets_its_documented_answer(fn, peers, name: str) -> None:
    event = load_event(name)
    how, want = EXPECTED[name]
    ctx = FakeContext(f"req-{name}")
    if how == "raises":
        with pytest.raises(RequestError) as info:
            fn.handle(event, ctx)
        assert type(info.value).__name__ == want
    elif how == "sqs":
        assert fn.handle(event, ctx) == {"batchItemFailures": [{"itemIdentifier": mid} for mid in want]}
    elif how == "direct":
        check_answer(fn, peers, event, fn.handle(event, ctx), ctx.aws_request_id)
    else:
        response = fn.handle(event, ctx)
        assert response["statusCode"] == want
        assert response["headers"]["Content-Type"] == "application/json"
        body = json.loads(response["body"])
        if want == 200:
            check_answer(fn, peers, event, body, ctx.aws_request_id)
        else:
            assert body["error"]["request_id"] == ctx.aws_request_id
            assert body["error"]["type"] and body["error"]["message"]
            assert "Traceback" not in response["body"]
    # the container keeps serving after any request, good or bad
    assert "outputs" in fn.handle(GOOD_DIRECT, FakeContext("after"))


def test_every_event_file_has_a_documented_answer() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


def test_cold_start_is_true_only_for_the_first_request(fn) -> None:
    first = fn.handle(GOOD_DIRECT, FakeContext("1"))["timing"]
    second = fn.handle(GOOD_DIRECT, FakeContext("2"))["timing"]
    assert first["cold_start"] is True and second["cold_start"] is False
    assert first["init_ms"] == second["init_ms"]
    phases = set(first["init_ms"])
    engine = fn.handle(GOOD_DIRECT, FakeContext("3"))["model"]["engine"]  # the default build may choose either
    own = {"torch": {"import_torch", "build_model", "load_weights"}, "onnxruntime": {"import_onnxruntime", "create_session"}}
    assert own[engine] | {"read_bundle", "tokenizer", "canary", "total"} <= phases
    assert first["init_ms"]["total"] >= sum(v for k, v in first["init_ms"].items() if k != "total") * 0.99


def test_threads_follow_the_cpus_the_process_may_use(monkeypatch, tiny_bundle) -> None:
    from runtime.settings import usable_cpus

    fn = new_function(tiny_bundle("bert"))
    assert fn.handle(GOOD_DIRECT, FakeContext())["timing"]["threads"] == usable_cpus()
    fn = new_function(tiny_bundle("bert"), NUM_THREADS="1")
    assert fn.handle(GOOD_DIRECT, FakeContext())["timing"]["threads"] == 1


BAD_DIRECT = [
    ("not-an-object", ["a", "b"], "InvalidInputError", "the request must be a JSON object like {\"inputs\": \"text\"}, got list"),
    ("inputs-number", {"inputs": 3}, "InvalidInputError", '"inputs" must be a string or a non-empty list of strings, got int'),
    ("inputs-empty-list", {"inputs": []}, "InvalidInputError", '"inputs" must be a string or a non-empty list of strings, got an empty list'),
    ("inputs-null", {"inputs": None}, "InvalidInputError", '"inputs" must be a string or a non-empty list of strings, got null'),
    ("item-not-string", {"inputs": ["ok", 5]}, "InvalidInputError", '"inputs"[1] must be a string, got int'),
    ("blank-text", {"inputs": "   "}, "InvalidInputError", '"inputs"[0] is empty; send some text'),
    ("unknown-key", {"inputs": "x", "input": "y"}, "InvalidInputError", "unknown key 'input' in the request; it accepts ['inputs', 'parameters']"),
    ("too-many-items", {"inputs": ["x"] * 33}, "PayloadTooLargeError", '"inputs" has 33 items; the limit is 32 (MAX_BATCH_ITEMS)'),
    ("too-long", {"inputs": "x" * 20001}, "PayloadTooLargeError", '"inputs"[0] has 20001 characters; the limit is 20000 (MAX_INPUT_CHARS)'),
    ("parameters-not-object", {"inputs": "x", "parameters": [1]}, "InvalidParametersError", '"parameters" must be a JSON object, got list'),
]


@pytest.mark.parametrize("event, error_type, message", [b[1:] for b in BAD_DIRECT], ids=[b[0] for b in BAD_DIRECT])
def test_bad_direct_invokes_raise_typed_errors(monkeypatch, tiny_bundle, event, error_type: str, message: str) -> None:
    fn = new_function(tiny_bundle("bert"))
    with pytest.raises(RequestError) as info:
        fn.handle(event, FakeContext())
    assert type(info.value).__name__ == error_type
    assert str(info.value) == message
    assert fn.handle(GOOD_DIRECT, FakeContext())["outputs"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"top_k": 0}, "parameter 'top_k' must be an integer between 1 and 3, got 0"),
        ({"top_k": "2"}, "parameter 'top_k' must be an integer between 1 and 3, got '2'"),
        ({"function_to_apply": "relu"}, "parameter 'function_to_apply' must be one of ['softmax', 'sigmoid', 'none'], got 'relu'"),
        ({"temperature": 1.0}, "unknown parameter 'temperature' for text-classification; accepted parameters: function_to_apply, raw_scores, return_text, top_k, top_n, truncate, truncation_direction"),
    ],
    ids=["top-k-zero", "top-k-string", "bad-function", "unknown"],
)
def test_bad_parameters_answer_422_over_http(monkeypatch, tiny_bundle, params, message: str) -> None:
    fn = new_function(tiny_bundle("bert"))
    event = load_event("http_api_v2.json")
    event.update(body=json.dumps({"inputs": "hello", "parameters": params}), isBase64Encoded=False)
    response = fn.handle(event, FakeContext())
    assert response["statusCode"] == 422
    assert json.loads(response["body"])["error"] == {"type": "InvalidParametersError", "message": message, "request_id": "req-test-1"}


def test_body_over_the_byte_limit_answers_413(monkeypatch, tiny_bundle) -> None:
    fn = new_function(tiny_bundle("bert"), MAX_BODY_BYTES="100")
    event = load_event("apigw_rest_v1.json")
    event["body"] = json.dumps({"inputs": "y" * 200})
    response = fn.handle(event, FakeContext())
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"]["message"] == "the body has 214 bytes; the limit is 100 (MAX_BODY_BYTES)"


def test_invalid_base64_body_answers_400(monkeypatch, tiny_bundle) -> None:
    fn = new_function(tiny_bundle("bert"))
    event = load_event("http_api_v2.json")
    event["body"] = "!!!not base64!!!"
    response = fn.handle(event, FakeContext())
    assert response["statusCode"] == 400
    assert "not valid base64" in json.loads(response["body"])["error"]["message"]


def test_unexpected_failure_answers_500_with_request_id_and_no_internals(monkeypatch, tiny_bundle, capsys) -> None:
    fn = new_function(tiny_bundle("bert"))

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(fn.predictor, "predict", explode)
    response = fn.handle(load_event("function_url.json"), FakeContext("req-500"))
    assert response["statusCode"] == 500
    assert "secret internal detail" not in response["body"] and "Traceback" not in response["body"]
    assert json.loads(response["body"])["error"]["request_id"] == "req-500"
    assert "secret internal detail" in capsys.readouterr().out  # ...but the log has it
    with pytest.raises(RequestError) as info:
        fn.handle(GOOD_DIRECT, FakeContext("req-direct"))
    assert type(info.value).__name__ == "InternalError" and "req-direct" in str(info.value)
    monkeypatch.undo()


def test_corrupt_bundle_fails_init_not_the_first_request(monkeypatch, tiny_bundle, tmp_path: Path) -> None:
    bad = tmp_path / "bad.bundle"
    data = bytearray(tiny_bundle("bert").read_bytes())
    data[-100] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleCorruptError, match="failed its content check"):
        new_function(bad)


def test_canary_refuses_a_model_that_drifted_from_its_golden_outputs(monkeypatch, tiny_bundle, tmp_path: Path) -> None:
    from runtime.bundle import read_bundle, write_bundle

    good = read_bundle(tiny_bundle("bert"))
    manifest = json.loads(json.dumps(good.manifest))
    for d in manifest["golden"][0]["output"]:
        d["score"] = 1.0 - d["score"]
    drifted = tmp_path / "drifted.bundle"
    write_bundle(drifted, manifest=manifest, tensors=good.tensors(), files={n: good.read_file(n) for n in good.file_names})
    with pytest.raises(BundleCorruptError, match="canary failed"):
        new_function(drifted)
    assert new_function(drifted, CANARY="false").canary is None


def test_sqs_batch_delivers_results_to_a_real_queue_and_lists_only_bad_records(monkeypatch, tiny_bundle) -> None:
    import boto3
    from moto import mock_aws

    from devtools.moto_sqs import receive_until

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="results")["QueueUrl"]
        fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
        event = load_event("sqs_batch.json")
        bad_params = dict(event["Records"][0], messageId="bad-params", body=json.dumps({"inputs": "x", "parameters": {"top_k": 9}}))
        event["Records"].append(bad_params)
        response = fn.handle(event, FakeContext())
        assert response == {"batchItemFailures": [{"itemIdentifier": POISON_MESSAGE_ID}, {"itemIdentifier": "bad-params"}]}
        good_ids = {r["messageId"] for r in event["Records"]} - {POISON_MESSAGE_ID, "bad-params"}
        got = receive_until(sqs, url, len(good_ids) + 1, timeout_s=2)  # one more than expected: none may be extra
        results = {json.loads(m["Body"])["messageId"]: json.loads(m["Body"]) for m in got}
        assert set(results) == good_ids
        for record in event["Records"]:
            if record["messageId"] in good_ids:
                inputs = json.loads(record["body"])["inputs"]
                outputs = results[record["messageId"]]["outputs"]
                per_input = [outputs] if isinstance(inputs, str) else outputs
                assert len(per_input) == (1 if isinstance(inputs, str) else len(inputs))
                assert all(len(labels) == 3 for labels in per_input)  # every label of the tiny classifier
                assert results[record["messageId"]]["model"]["sha256"] == fn.predictor.model.bundle.sha256


def test_sqs_empty_and_all_failed_batches_are_answered(monkeypatch, tiny_bundle) -> None:
    fn = new_function(tiny_bundle("bert"))
    assert fn.handle({"Records": []}, FakeContext()) == {"batchItemFailures": []}
    event = load_event("sqs_batch.json")
    for r in event["Records"]:
        r["body"] = "not json"
    ids = [r["messageId"] for r in event["Records"]]
    assert fn.handle(event, FakeContext()) == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}
