"""zero-shot-classification answers as transformers' ZeroShotClassificationPipeline on the same folder.

Tiny random NLI models (bert: WordPiece, roberta: byte-level BPE, xlm-roberta: Unigram), redrawn so that their scores
differ (tests/pipeline_peers.py), each built for both engines; every answer is compared with transformers.pipeline
("zero-shot-classification") on the source folder: labels in the same order, scores within 1e-4.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pipeline_peers import PipelinePeers, answer_event, ask, cli_budget
from support import load_event, modules_after, new_function

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
def models(tiny_model, tmp_path_factory) -> PipelinePeers:
    return PipelinePeers(TASK, tiny_model, tmp_path_factory)


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
def test_answers_as_the_pipeline(models, kind: str, engine: str, case: str) -> None:
    inputs, parameters = CASES[case]
    got = ask(models.function(kind, engine), inputs, parameters)["outputs"]
    assert_same(got, models.peer(kind)(inputs, **parameters))


def test_the_scores_tell_the_labels_apart(models) -> None:
    # gaps over the score tolerance: else any label order would pass
    for kind in KINDS:
        scores = models.peer(kind)(TEXT, candidate_labels=LABELS)["scores"]
        assert min(a - b for a, b in itertools.pairwise(scores)) > 1e-4, (kind, scores)


@pytest.mark.parametrize("kind", KINDS)
def test_labels_the_tokenizer_reads_alike_tie_in_the_pipelines_order(models, kind: str) -> None:
    # WordPiece lowercases: the three spellings are one hypothesis, and equal scores come out last label first
    labels = ["paris", "Paris", "PARIS", "travel"]
    want = models.peer(kind)(TEXT, candidate_labels=labels)
    for engine in ENGINES:
        assert_same(ask(models.function(kind, engine), TEXT, {"candidate_labels": labels})["outputs"], want)


def test_long_inputs_are_cut_only_first_and_reported(models) -> None:
    answer = ask(models.function("bert"), ["short text", LONG], {"candidate_labels": LABELS})
    assert answer["timing"]["truncated_inputs"] == [1]
    assert_same(answer["outputs"], models.peer("bert")(["short text", LONG], candidate_labels=LABELS))


@pytest.mark.parametrize("kind", KINDS)
def test_the_native_encoder_serves_zero_shot_and_equals_transformers(models, kind: str) -> None:
    native = models.function(kind)
    assert native.predictor.describe_model()["implementation"] == "native"
    plain = new_function(models.bundle(kind), NUM_THREADS="1", TORCH_IMPLEMENTATION="transformers")
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
    models, inputs: Any, parameters: dict[str, Any], status: int, message: str
) -> None:
    fn = models.function("bert")
    with pytest.raises(RequestError) as info:
        ask(fn, inputs, parameters)
    assert (info.value.status, message in str(info.value)) == (status, True), str(info.value)
    assert_same(
        ask(fn, TEXT, {"candidate_labels": LABELS})["outputs"], models.peer("bert")(TEXT, candidate_labels=LABELS)
    )


def test_the_error_messages_in_full(models) -> None:
    fn = models.function("bert")
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


def test_the_pipeline_fails_where_a_hypothesis_is_too_long(models) -> None:
    # it falls back to no truncation and the model reads past its positions; the function answers 422 instead
    with pytest.raises(RuntimeError, match=r"size of tensor|out of bounds"):
        models.peer("bert")("short", candidate_labels=["battery " * 70])


def test_max_candidate_labels_is_a_checked_setting(models) -> None:
    # the init canary replays a one-label golden example, so any cap starts
    assert Settings.from_env({"MODEL_BUNDLE": "m"}).max_candidate_labels == 10
    for bad in ("0", "1025", "many"):
        with pytest.raises(SettingsError, match="MAX_CANDIDATE_LABELS"):
            Settings.from_env({"MODEL_BUNDLE": "m", "MAX_CANDIDATE_LABELS": bad})
    fn = new_function(models.bundle("bert"), NUM_THREADS="1", MAX_CANDIDATE_LABELS="2")
    with pytest.raises(RequestError, match=r"has 3 labels; the limit is 2 \(MAX_CANDIDATE_LABELS\)"):
        ask(fn, TEXT, {"candidate_labels": LABELS[:3]})
    assert_same(
        ask(fn, TEXT, {"candidate_labels": LABELS[:2]})["outputs"],
        models.peer("bert")(TEXT, candidate_labels=LABELS[:2]),
    )


def test_many_rows_run_in_several_passes_with_the_same_answer(models) -> None:
    # 3 inputs x 4 labels = 12 (text, hypothesis) rows, 3 per engine call
    fn = new_function(models.bundle("roberta"), NUM_THREADS="1", MAX_BATCH_ITEMS="3")
    inputs = [TEXT, LONG, ACCENTS]
    assert_same(
        ask(fn, inputs, {"candidate_labels": LABELS})["outputs"],
        models.peer("roberta")(inputs, candidate_labels=LABELS),
    )


def test_a_classifier_without_an_entailment_label_is_refused_by_the_builder(tiny_model, tmp_path) -> None:
    from bundle_builder.build import build_bundle
    from bundle_builder.errors import SourceError

    with pytest.raises(SourceError, match="needs an NLI model whose config names an entailment label"):
        build_bundle(tiny_model("bert"), tmp_path / "x.bundle", task=TASK)


@pytest.mark.parametrize(
    "task_config", [{}, {"entailment_id": 3}, {"entailment_id": "2"}, {"entailment_id": True}], ids=str
)
def test_a_bundle_without_a_valid_entailment_id_does_not_start(models, tmp_path, task_config: dict[str, Any]) -> None:
    bad = models.with_task_config("bert", task_config, tmp_path / "bad.bundle")
    with pytest.raises(BundleCorruptError, match=r"manifest field 'task_config.entailment_id' must be the index"):
        new_function(bad, NUM_THREADS="1", CANARY="false")


@pytest.mark.parametrize("event", ["zero_shot_classification_direct.json", "zero_shot_classification_http.json"])
def test_the_sample_events_answer_as_the_pipeline(models, event: str) -> None:
    payload = load_event(f"tasks/{event}")
    body, outputs = answer_event(models.function("bert"), payload)
    assert_same(outputs, models.peer("bert")(body["inputs"], **body["parameters"]))


def test_the_onnxruntime_path_never_imports_torch_or_transformers(models) -> None:
    modules = modules_after(
        models.bundle("bert", "onnxruntime"), {"inputs": TEXT, "parameters": {"candidate_labels": LABELS}}
    )
    assert "onnxruntime" in modules and not modules & {"torch", "transformers", "bundle_builder"}


def test_the_golden_comparison_lets_near_ties_swap_and_nothing_else() -> None:
    from runtime.tasks.zero_shot import label_scores_diff

    golden = {"sequence": "s", "labels": ["a", "b", "a"], "scores": [0.40004, 0.4, 0.2]}
    swapped = {"sequence": "s", "labels": ["b", "a", "a"], "scores": [0.40001, 0.40002, 0.19996]}
    assert label_scores_diff([golden], [swapped], "float32").ok
    for other in ({**swapped, "sequence": "t"}, {**swapped, "labels": ["b", "a", "c"]}):
        assert label_scores_diff([golden], [other], "float32").value == float("inf")


def test_the_cli_builds_it_and_measures_a_maximal_request_of_max_candidate_labels(models, tmp_path) -> None:
    measured = cli_budget(models.source("roberta"), TASK, tmp_path / "cli.bundle")["measured"]
    assert measured["maximal_request"] == "32 inputs of 64 tokens"
    assert 0 < measured["typical_p50_ms"] < measured["maximal_p50_ms"]
