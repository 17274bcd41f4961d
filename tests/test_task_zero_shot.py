"""zero-shot-classification answers as transformers' ZeroShotClassificationPipeline on the same folder.

Tiny random NLI models (bert: WordPiece, roberta: byte-level BPE, xlm-roberta: Unigram), redrawn so that their scores
differ (tests/sharp_models.py), each built for both engines; every answer is compared with transformers.pipeline
("zero-shot-classification") on the source folder: labels in the same order, scores within 1e-4.
"""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sharp_models import sharpened
from support import FakeContext, load_event, modules_after, new_function, rehash_header

from runtime.errors import BundleCorruptError, RequestError
from runtime.settings import Settings, SettingsError

TASK = "zero-shot-classification"
KINDS = ["bert", "roberta", "xlm-roberta"]
ENGINES = ["torch", "onnxruntime"]
LABELS = ["battery", "support", "cloud computing", "travel"]
TEXT = "the battery lasts all day and the screen is gorgeous"
ACCENTS = "Café crème à Paris, naïve façade — 東京タワーは高い 🙂🚀 Ünïcödé"
LONG = " ".join(["i waited an hour and the support team never answered my question"] * 12)  # over 64 tokens


@pytest.fixture(scope="module")
def source(tiny_model, tmp_path_factory) -> Any:
    cache: dict[str, Path] = {}

    def make(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = sharpened(tiny_model(kind, TASK), tmp_path_factory.mktemp(f"nli-{kind}"))
        return cache[kind]

    return make


@pytest.fixture(scope="module")
def bundle(source, tmp_path_factory) -> Any:
    from bundle_builder.build import build_bundle

    cache: dict[tuple[str, str], Path] = {}

    def make(kind: str, engine: str = "torch") -> Path:
        if (kind, engine) not in cache:
            out = tmp_path_factory.mktemp("zs-bundles") / f"{kind}-{engine}.bundle"
            build_bundle(source(kind), out, task=TASK, engine=engine)
            cache[kind, engine] = out
        return cache[kind, engine]

    return make


@pytest.fixture(scope="module")
def function(bundle) -> Any:
    cache: dict[tuple[str, str], Any] = {}

    def make(kind: str, engine: str = "torch") -> Any:
        if (kind, engine) not in cache:
            cache[kind, engine] = new_function(bundle(kind, engine), NUM_THREADS="1")
        return cache[kind, engine]

    return make


@pytest.fixture(scope="module")
def peer(source) -> Any:
    import transformers

    cache: dict[str, Any] = {}

    def make(kind: str) -> Any:
        if kind not in cache:
            folder = str(source(kind))
            cache[kind] = transformers.pipeline(TASK, model=folder, tokenizer=folder, device="cpu")
        return cache[kind]

    return make


def ask(fn: Any, inputs: Any, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = fn.handle({"inputs": inputs, "parameters": parameters or {}}, FakeContext())
    return answer


def assert_same(got: Any, want: Any) -> None:
    """Equal answers: sequences and label order exact, scores within 1e-4 (fp32)."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    assert got["sequence"] == want["sequence"]
    assert got["labels"] == want["labels"]
    assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)


CASES = {
    "labels": (TEXT, {"candidate_labels": LABELS}),
    "multi-label": (TEXT, {"candidate_labels": LABELS, "multi_label": True}),
    "one-label": (TEXT, {"candidate_labels": ["battery"]}),
    "one-label-multi": (TEXT, {"candidate_labels": ["travel"], "multi_label": True}),
    "comma-string": (TEXT, {"candidate_labels": " battery, support,, cloud computing ,travel,"}),
    "template": (TEXT, {"candidate_labels": LABELS, "hypothesis_template": "Ce texte parle de {}."}),
    "template-0": (TEXT, {"candidate_labels": LABELS, "hypothesis_template": "{0}? {0}!", "multi_label": True}),
    "accents-cjk-emoji": (ACCENTS, {"candidate_labels": ["café", "東京", "🙂", "naïve"]}),
    "long-input": (LONG, {"candidate_labels": LABELS}),
    "list": ([TEXT, "ok", LONG, ACCENTS], {"candidate_labels": LABELS}),
    "list-multi": ([TEXT, "ok", ACCENTS], {"candidate_labels": "support, travel", "multi_label": False}),
    "duplicates": ([TEXT, TEXT], {"candidate_labels": ["travel", "battery", "travel"]}),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_answers_as_the_pipeline(function, peer, kind: str, engine: str, case: str) -> None:
    inputs, parameters = CASES[case]
    got = ask(function(kind, engine), inputs, parameters)["outputs"]
    assert_same(got, peer(kind)(inputs, **parameters))


def test_the_scores_tell_the_labels_apart(peer) -> None:
    # gaps over the score tolerance: else any label order would pass
    for kind in KINDS:
        scores = peer(kind)(TEXT, candidate_labels=LABELS)["scores"]
        assert min(a - b for a, b in itertools.pairwise(scores)) > 1e-4, (kind, scores)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_the_tokenizer_reads_alike_tie_in_the_pipelines_order(function, peer, kind: str) -> None:
    # WordPiece lowercases: the three spellings are one hypothesis, and equal scores come out last label first
    labels = ["paris", "Paris", "PARIS", "travel"]
    want = peer(kind)(TEXT, candidate_labels=labels)
    for engine in ENGINES:
        assert_same(ask(function(kind, engine), TEXT, {"candidate_labels": labels})["outputs"], want)


def test_long_inputs_are_cut_only_first_and_reported(function, peer) -> None:
    answer = ask(function("bert"), ["short text", LONG], {"candidate_labels": LABELS})
    assert answer["timing"]["truncated_inputs"] == [1]
    assert_same(answer["outputs"], peer("bert")(["short text", LONG], candidate_labels=LABELS))


@pytest.mark.parametrize("kind", KINDS)
def test_the_native_encoder_serves_zero_shot_and_equals_transformers(bundle, function, kind: str) -> None:
    native = function(kind)
    assert native.predictor.describe_model()["implementation"] == "native"
    plain = new_function(bundle(kind), NUM_THREADS="1", TORCH_IMPLEMENTATION="transformers")
    assert plain.predictor.describe_model()["implementation"] == "transformers"
    for inputs, parameters in CASES.values():
        assert_same(ask(native, inputs, parameters)["outputs"], ask(plain, inputs, parameters)["outputs"])


ERRORS = [
    ("missing-labels", TEXT, {}, 422, "parameter 'candidate_labels' is required for zero-shot-classification"),
    ("empty-list", TEXT, {"candidate_labels": []}, 422, "parameter 'candidate_labels' has no label, got []"),
    ("only-commas", TEXT, {"candidate_labels": " , ,"}, 422, "parameter 'candidate_labels' has no label, got ' , ,'"),
    ("not-strings", TEXT, {"candidate_labels": [1, 2]}, 422, "must be a list of strings or a comma-separated string"),
    (
        "too-many",
        TEXT,
        {"candidate_labels": [f"l{i}" for i in range(11)]},
        413,
        "the limit is 10 (MAX_CANDIDATE_LABELS)",
    ),
    ("no-braces", TEXT, {"candidate_labels": LABELS, "hypothesis_template": "This is it."}, 422, "it must contain {}"),
    ("attribute", TEXT, {"candidate_labels": LABELS, "hypothesis_template": "{0.__class__}"}, 422, "must contain {}"),
    ("two-fields", TEXT, {"candidate_labels": LABELS, "hypothesis_template": "{} and {}"}, 422, "must contain {}"),
    ("named", TEXT, {"candidate_labels": LABELS, "hypothesis_template": "{label}"}, 422, "must contain {}"),
    ("multi-label-text", TEXT, {"candidate_labels": LABELS, "multi_label": "yes"}, 422, "must be true or false"),
    ("unknown", TEXT, {"candidate_labels": LABELS, "top_k": 2}, 422, "unknown parameter 'top_k' for zero-shot"),
    ("hypothesis-too-long", "short", {"candidate_labels": ["battery " * 70]}, 422, "which leaves no room for the text"),
    ("truncate-false", LONG, {"candidate_labels": LABELS, "truncate": False}, 413, "the limit is 64"),
    ("chat", [{"role": "user", "content": "hi"}], {"candidate_labels": LABELS}, 400, "chat-style inputs"),
]


@pytest.mark.parametrize(
    ("inputs", "parameters", "status", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_requests_are_typed_errors_and_the_function_keeps_serving(
    function, peer, inputs: Any, parameters: dict[str, Any], status: int, message: str
) -> None:
    fn = function("bert")
    with pytest.raises(RequestError) as info:
        ask(fn, inputs, parameters)
    assert (info.value.status, message in str(info.value)) == (status, True), str(info.value)
    assert_same(ask(fn, TEXT, {"candidate_labels": LABELS})["outputs"], peer("bert")(TEXT, candidate_labels=LABELS))


def test_the_error_messages_in_full(function) -> None:
    fn = function("bert")
    with pytest.raises(RequestError) as info:
        ask(fn, TEXT, {"candidate_labels": LABELS, "hypothesis_template": "This is it."})
    assert str(info.value) == (
        "parameter 'hypothesis_template' is 'This is it.': it must contain {} where the label goes, as in "
        '"This example is {}." (no other {...} fields)'
    )
    with pytest.raises(RequestError) as info:
        ask(fn, TEXT, {"candidate_labels": ",".join(["x"] * 11)})
    assert (info.value.error_type, str(info.value)) == (
        "PayloadTooLargeError",
        "parameter 'candidate_labels' has 11 labels; the limit is 10 (MAX_CANDIDATE_LABELS)",
    )


def test_the_pipeline_fails_where_a_hypothesis_is_too_long(peer) -> None:
    # it falls back to no truncation and the model reads past its positions; the function answers 422 instead
    with pytest.raises(RuntimeError, match=r"size of tensor|out of bounds"):
        peer("bert")("short", candidate_labels=["battery " * 70])


def test_max_candidate_labels_is_a_checked_setting(bundle, peer) -> None:
    # the init canary replays a one-label golden example, so any cap starts
    assert Settings.from_env({"MODEL_BUNDLE": "m"}).max_candidate_labels == 10
    for bad in ("0", "1025", "many"):
        with pytest.raises(SettingsError, match="MAX_CANDIDATE_LABELS"):
            Settings.from_env({"MODEL_BUNDLE": "m", "MAX_CANDIDATE_LABELS": bad})
    fn = new_function(bundle("bert"), NUM_THREADS="1", MAX_CANDIDATE_LABELS="2")
    with pytest.raises(RequestError, match=r"has 3 labels; the limit is 2 \(MAX_CANDIDATE_LABELS\)"):
        ask(fn, TEXT, {"candidate_labels": LABELS[:3]})
    assert_same(
        ask(fn, TEXT, {"candidate_labels": LABELS[:2]})["outputs"], peer("bert")(TEXT, candidate_labels=LABELS[:2])
    )


def test_many_rows_run_in_several_passes_with_the_same_answer(bundle, peer) -> None:
    # 3 inputs x 4 labels = 12 (text, hypothesis) rows, 3 per engine call
    fn = new_function(bundle("roberta"), NUM_THREADS="1", MAX_BATCH_ITEMS="3")
    inputs = [TEXT, LONG, ACCENTS]
    assert_same(
        ask(fn, inputs, {"candidate_labels": LABELS})["outputs"], peer("roberta")(inputs, candidate_labels=LABELS)
    )


def test_a_classifier_without_an_entailment_label_is_refused_by_the_builder(tiny_model, tmp_path) -> None:
    from bundle_builder.build import build_bundle
    from bundle_builder.errors import SourceError

    with pytest.raises(SourceError, match="needs an NLI model whose config names an entailment label"):
        build_bundle(tiny_model("bert"), tmp_path / "x.bundle", task=TASK)


@pytest.mark.parametrize(
    "task_config", [{}, {"entailment_id": 3}, {"entailment_id": "2"}, {"entailment_id": True}], ids=str
)
def test_a_bundle_without_a_valid_entailment_id_does_not_start(bundle, tmp_path, task_config: dict[str, Any]) -> None:
    def mutate(header: dict[str, Any]) -> None:
        header["manifest"]["task_config"] = task_config

    bad = tmp_path / "bad.bundle"
    bad.write_bytes(rehash_header(bundle("bert").read_bytes(), mutate))
    with pytest.raises(BundleCorruptError, match=r"manifest field 'task_config.entailment_id' must be the index"):
        new_function(bad, NUM_THREADS="1", CANARY="false")


@pytest.mark.parametrize("event", ["zero_shot_classification_direct.json", "zero_shot_classification_http.json"])
def test_the_sample_events_answer_as_the_pipeline(function, peer, event: str) -> None:
    payload = load_event(f"tasks/{event}")
    answer = function("bert").handle(payload, FakeContext())
    if "body" in payload:
        assert answer["statusCode"] == 200
        body = json.loads(base64.b64decode(payload["body"]) if payload["isBase64Encoded"] else payload["body"])
        outputs = json.loads(answer["body"])["outputs"]
    else:
        body, outputs = payload, answer["outputs"]
    assert_same(outputs, peer("bert")(body["inputs"], **body["parameters"]))


def test_the_onnxruntime_path_never_imports_torch_or_transformers(bundle) -> None:
    modules = modules_after(bundle("bert", "onnxruntime"), {"inputs": TEXT, "parameters": {"candidate_labels": LABELS}})
    assert "onnxruntime" in modules and not modules & {"torch", "transformers", "bundle_builder"}
