"""token-classification answers as transformers' TokenClassificationPipeline, on both engines and three tokenizers.

The models are tiny RANDOM token classifiers (tests/tiny_models.py): bert (WordPiece, "##" subwords), roberta
(byte-level BPE) and xlm-roberta (SentencePiece Unigram behind Metaspace), each with a 64-token window. Their
labels are random, so these tests prove fidelity to the pipeline, not accuracy. The peer is
transformers.pipeline("token-classification") on the same source folder, with the same parameters.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import BundleCorruptError, RequestError
from support import FakeContext, event_inputs, load_event, new_function, rehash_header

KINDS = ("bert", "roberta", "xlm-roberta")
ENGINES = ("torch", "onnxruntime")
TASK = "token-classification"
LONG = " ".join(
    f"Zoë Müller flew {n} times from Zürich to 東京 with Björk 🚀 and the battery lasts all day." for n in range(1, 7)
)  # well past the 64-token window for every tokenizer
TEXTS = [
    "Ada Lovelace worked with Charles Babbage in London.",
    "Café naïve résumé: 北京 and 東京, 🚀🎉 emoji, Ünïcödé spacing  twice!",
    "Cafe\u0301 (a combining accent), ﬁne Ⅻ, [SEP] and <s> typed in, a tab\there and a\nnew line",
    LONG,
]
PARAMETERS = [
    {},
    {"aggregation_strategy": "none"},
    {"aggregation_strategy": "simple"},
    {"aggregation_strategy": "first"},
    {"aggregation_strategy": "average"},
    {"aggregation_strategy": "max"},
    {"aggregation_strategy": "Max"},  # the pipeline takes a strategy in any case
    {"ignore_labels": []},
    {"ignore_labels": ["O", "B-ORG", "I-ORG"]},
    {"aggregation_strategy": "simple", "ignore_labels": ["O", "PER"]},
    {"aggregation_strategy": "average", "ignore_labels": []},
    {"stride": 16},  # with the default strategy ("none"): the pipeline takes it
    {"stride": 16, "aggregation_strategy": "simple"},
    {"stride": 16, "aggregation_strategy": "first"},
    {"stride": 0, "aggregation_strategy": "average"},
    {"stride": 40, "aggregation_strategy": "max", "ignore_labels": []},
]


def case_id(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"


@pytest.fixture(scope="module")
def pipes(tiny_model: Callable[..., Path]) -> dict[str, Any]:
    from transformers import pipeline

    return {k: pipeline(TASK, model=str(tiny_model(k, TASK)), device="cpu") for k in KINDS}


@pytest.fixture(scope="module")
def functions(tiny_bundle: Callable[..., Path]) -> Callable[[str, str], Any]:
    cache: dict[tuple[str, str], Any] = {}

    def get(kind: str, engine: str) -> Any:
        if (kind, engine) not in cache:
            cache[(kind, engine)] = new_function(tiny_bundle(kind, TASK, engine=engine), NUM_THREADS="1")
        return cache[(kind, engine)]

    return get


def expected(pipe: Any, inputs: Any, params: dict[str, Any]) -> Any:
    from bundle_builder.reference import plain_json

    return plain_json(pipe(inputs, **params))


def ask(fn: Any, inputs: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return fn.handle({"inputs": inputs, "parameters": params or {}}, FakeContext())


def assert_same(want: Any, got: Any) -> None:
    """Everything but the scores exactly (labels, words, offsets, indices, keys, order); scores within 1e-4."""

    def split(value: Any, scores: list[float]) -> Any:
        if isinstance(value, list):
            return [split(v, scores) for v in value]
        scores.append(value["score"])
        return {k: v for k, v in value.items() if k != "score"}

    want_scores: list[float] = []
    got_scores: list[float] = []
    assert split(got, got_scores) == split(want, want_scores)
    assert all(isinstance(s, float) for s in got_scores)
    assert got_scores == pytest.approx(want_scores, abs=1e-4)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", PARAMETERS, ids=case_id)
def test_answers_equal_the_pipeline(pipes, functions, kind: str, engine: str, params: dict[str, Any]) -> None:
    want = expected(pipes[kind], TEXTS, params)
    assert any(want), "the peer finds nothing: the case proves nothing"
    assert_same(want, ask(functions(kind, engine), TEXTS, params)["outputs"])


@pytest.mark.parametrize("kind", KINDS)
def test_one_text_answers_a_flat_list(pipes, functions, kind: str) -> None:
    params = {"aggregation_strategy": "first"}
    assert_same(expected(pipes[kind], TEXTS[1], params), ask(functions(kind, "torch"), TEXTS[1], params)["outputs"])


@pytest.mark.parametrize("kind", KINDS)
def test_the_texts_exercise_subwords_unknown_tokens_and_windows(pipes, kind: str) -> None:
    """What the cases above rely on: words split into several tokens, offsets past non-ASCII characters, and a text
    longer than the window, whose later windows the stride answers reach."""
    tokenizer = pipes[kind].tokenizer
    encoded = tokenizer(TEXTS[1], return_offsets_mapping=True, add_special_tokens=False)
    assert len(encoded["input_ids"]) > len(TEXTS[1].split())  # some words are several tokens
    if kind == "bert":  # WordPiece with a lowercase English vocabulary: CJK and emoji are unknown
        assert tokenizer.unk_token_id in encoded["input_ids"]
    assert len(tokenizer(LONG)["input_ids"]) > 2 * tokenizer.model_max_length
    cut = expected(pipes[kind], LONG, {"ignore_labels": []})
    whole = expected(pipes[kind], LONG, {"stride": 40, "aggregation_strategy": "max", "ignore_labels": []})
    assert max(e["end"] for e in whole) > max(e["end"] for e in cut)


@pytest.mark.parametrize("engine", ENGINES)
def test_truncation_is_reported_unless_a_stride_covers_the_text(functions, engine: str) -> None:
    fn = functions("bert", engine)
    assert ask(fn, TEXTS)["timing"]["truncated_inputs"] == [TEXTS.index(LONG)]
    assert "truncated_inputs" not in ask(fn, TEXTS, {"stride": 8, "aggregation_strategy": "simple"})["timing"]


@pytest.mark.parametrize("kind", KINDS)
def test_windows_beyond_one_forward_pass(pipes, tiny_bundle, kind: str) -> None:
    """MAX_BATCH_ITEMS=2: the long text's many windows run two per forward pass, and merge as the pipeline's do."""
    fn = new_function(tiny_bundle(kind, TASK), NUM_THREADS="1", MAX_BATCH_ITEMS="2")
    params = {"stride": 50, "aggregation_strategy": "simple"}
    assert_same(expected(pipes[kind], LONG, params), ask(fn, LONG, params)["outputs"])


REFUSED = [
    (
        {"aggregation_strategy": "word"},
        "parameter 'aggregation_strategy' must be one of ['none', 'simple', 'first', 'average', 'max'], got 'word'",
    ),
    (
        {"aggregation_strategy": 1},
        "parameter 'aggregation_strategy' must be one of ['none', 'simple', 'first', 'average', 'max'], got 1",
    ),
    ({"ignore_labels": "O"}, "parameter 'ignore_labels' must be a list of strings, got 'O'"),
    ({"ignore_labels": ["O", None]}, "parameter 'ignore_labels' must be a list of strings, got ['O', None]"),
    (
        {"stride": 62, "aggregation_strategy": "simple"},
        "parameter 'stride' must be an integer between 0 and 61 (windows hold 64 tokens, 2 of them special), got 62",
    ),
    (
        {"stride": -1, "aggregation_strategy": "simple"},
        "parameter 'stride' must be an integer between 0 and 61 (windows hold 64 tokens, 2 of them special), got -1",
    ),
    (
        {"stride": 8, "aggregation_strategy": "none"},
        "parameter 'stride' cannot go with aggregation_strategy 'none' (transformers' pipeline refuses the pair); "
        "send aggregation_strategy 'simple', 'first', 'average' or 'max'",
    ),
    (
        {"is_split_into_words": True},
        "unknown parameter 'is_split_into_words' for token-classification; accepted parameters: "
        "aggregation_strategy, ignore_labels, stride",
    ),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "params, message",
    REFUSED,
    ids=[
        "strategy",
        "strategy-type",
        "labels-str",
        "labels-null",
        "stride-big",
        "stride-negative",
        "stride-none",
        "unknown",
    ],
)
def test_bad_parameters_are_422_and_the_function_keeps_serving(
    pipes, functions, engine: str, params: dict[str, Any], message: str
) -> None:
    fn = functions("bert", engine)
    with pytest.raises(RequestError) as info:
        ask(fn, TEXTS, params)
    assert (info.value.error_type, info.value.status, str(info.value)) == ("InvalidParametersError", 422, message)
    assert_same(expected(pipes["bert"], TEXTS[0], {}), ask(fn, TEXTS[0])["outputs"])


def test_the_pipeline_refuses_what_is_refused(pipes) -> None:
    """The peer's own refusals behind the 422s above: a stride with "none", a stride past the window, and (a panic
    in the tokenizers library) a stride that leaves a window no new token."""
    pipe = pipes["bert"]
    with pytest.raises(ValueError, match="aggregation_strategy"):
        pipe(LONG, stride=8, aggregation_strategy="none")
    with pytest.raises(ValueError, match="model_max_length"):
        pipe(LONG, stride=64, aggregation_strategy="simple")
    with pytest.raises(BaseException, match="stride") as info:
        pipe(LONG, stride=62, aggregation_strategy="simple")
    assert type(info.value).__name__ == "PanicException"
    assert expected(pipe, LONG, {"stride": 61, "aggregation_strategy": "simple"})  # the largest stride taken


@pytest.mark.parametrize("engine", ENGINES)
def test_labels_are_checked_against_the_logits(tiny_bundle, tmp_path: Path, engine: str) -> None:
    """A manifest naming fewer labels than the classifier has logits is refused at init: from the engine's width
    (torch), or from the logits of the canary (onnxruntime, whose graph does not say what its last axis is)."""

    def drop_a_label(header: dict[str, Any]) -> None:
        header["manifest"]["labels"] = header["manifest"]["labels"][:-1]

    path = tmp_path / "model.bundle"
    path.write_bytes(rehash_header(tiny_bundle("bert", TASK, engine=engine).read_bytes(), drop_a_label))
    with pytest.raises(BundleCorruptError) as info:
        new_function(path, NUM_THREADS="1")
    if engine == "torch":
        assert "manifest field 'labels' must name one label per logit: the model's classifier outputs 7" in str(
            info.value
        )
    else:
        assert "where (rows, tokens, 6 labels) was expected" in str(info.value)


def test_a_bundle_without_the_unknown_token_id_is_refused(tiny_bundle, tmp_path: Path) -> None:
    def forget(header: dict[str, Any]) -> None:
        header["manifest"]["task_config"] = {}

    path = tmp_path / "model.bundle"
    path.write_bytes(rehash_header(tiny_bundle("bert", TASK).read_bytes(), forget))
    with pytest.raises(BundleCorruptError) as info:
        new_function(path, NUM_THREADS="1")
    assert str(info.value) == (
        f"{path}: manifest field 'task_config' must hold \"unk_token_id\" (an id, or null), got {{}}; rebuild the "
        "bundle with bundle_builder"
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["tasks/token_classification_direct.json", "tasks/token_classification_http.json"])
def test_sample_events_answer_as_the_pipeline(pipes, functions, name: str, engine: str) -> None:
    event = load_event(name)
    fn = functions("bert", engine)
    response = fn.handle(event, FakeContext())
    if "body" in event:
        assert response["statusCode"] == 200
        body = json.loads(response["body"])
        params = json.loads(base64.b64decode(event["body"]))["parameters"]
    else:
        body, params = response, event["parameters"]
    assert_same(expected(pipes["bert"], event_inputs(event), params), body["outputs"])
