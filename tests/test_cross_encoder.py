"""Cross-encoders: text pairs and rerank requests answer as sentence-transformers' CrossEncoder scores them.

The model is a tiny random BERT with one output, wrapped and saved by the pinned sentence-transformers'
CrossEncoder (the `cross_encoder` fixture in conftest.py); the peer is CrossEncoder itself, loaded from that folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.errors import RequestError
from support import FakeContext, new_function

QUERY = "how long does the battery last"
DOCS = [
    "The battery lasts all day.",
    "Support never answered my question, after an hour of waiting on the phone line.",
    "ok",
    "Lambda loads the model once and answers many requests.",
]


@pytest.fixture(scope="module")
def fn(cross_encoder) -> Any:
    return new_function(cross_encoder[1], NUM_THREADS="1")


def ask(fn: Any, inputs: Any, parameters: dict[str, Any] | None = None) -> Any:
    return fn.handle({"inputs": inputs, "parameters": parameters or {}}, FakeContext())["outputs"]


def test_the_scores_tell_the_documents_apart(cross_encoder) -> None:
    scores = cross_encoder[0].predict([(QUERY, d) for d in DOCS])
    assert max(scores) - min(scores) > 1e-3  # or an equal answer for every pair would pass


def test_a_pair_scores_as_cross_encoder_predict(cross_encoder, fn) -> None:
    model, _ = cross_encoder
    expected = model.predict([(QUERY, DOCS[0])])[0]  # sigmoid of the one logit
    got = ask(fn, {"text": QUERY, "text_pair": DOCS[0]})
    assert [d["label"] for d in got] == ["LABEL_0"] and got[0]["score"] == pytest.approx(float(expected), abs=1e-4)
    many = ask(fn, [{"text": QUERY, "text_pair": d} for d in DOCS])
    for got_one, want in zip(many, model.predict([(QUERY, d) for d in DOCS]), strict=True):
        assert got_one[0]["score"] == pytest.approx(float(want), abs=1e-4)


@pytest.mark.parametrize(
    "parameters", [{}, {"top_n": 2, "return_text": True}, {"raw_scores": True}], ids=["all", "top-2-text", "raw"]
)
def test_rerank_answers_as_cross_encoder_rank(cross_encoder, fn, parameters: dict[str, Any]) -> None:
    model, _ = cross_encoder
    ranked = model.rank(
        QUERY,
        DOCS,
        top_k=parameters.get("top_n"),
        return_documents=bool(parameters.get("return_text")),
        activation_fn=__import__("torch").nn.Identity() if parameters.get("raw_scores") else None,
    )
    got = ask(fn, {"query": QUERY, "texts": DOCS}, parameters)
    assert [g["index"] for g in got] == [int(r["corpus_id"]) for r in ranked]
    for g, r in zip(got, ranked, strict=True):
        assert g["score"] == pytest.approx(float(r["score"]), abs=1e-4)
        assert g.get("text") == r.get("text")


def test_rerank_on_a_model_with_several_labels_is_refused(tiny_bundle) -> None:
    fn = new_function(tiny_bundle("bert"), NUM_THREADS="1")
    with pytest.raises(RequestError) as info:
        ask(fn, {"query": QUERY, "texts": DOCS})
    assert (info.value.error_type, str(info.value)) == (
        "InvalidInputError",
        "rerank needs a cross-encoder (one output score); this model has 3 labels",
    )


@pytest.mark.parametrize(
    "inputs, message",
    [
        (
            {"text": QUERY},
            '"inputs"[0] has keys [\'text\']; a pair is {"text": str, "text_pair": str} and a rerank request {"query": str, "texts": [str, ...]}',
        ),
        ({"query": QUERY, "texts": []}, '"inputs"[0].texts must be non-empty text or a non-empty list of texts'),
        ({"query": QUERY, "texts": ["a"] * 33}, '"inputs"[0].texts has 33 texts; the limit is 32 (MAX_BATCH_ITEMS)'),
    ],
    ids=["half-pair", "no-texts", "too-many-texts"],
)
def test_malformed_pairs_are_refused_with_the_shape_expected(fn, inputs: Any, message: str) -> None:
    with pytest.raises(RequestError) as info:
        ask(fn, inputs)
    assert str(info.value) == message
    assert ask(fn, "still serving")  # the function keeps answering


def test_pairs_to_an_embedding_model_are_refused(minilm_bundle) -> None:
    fn = new_function(minilm_bundle, NUM_THREADS="1")
    with pytest.raises(RequestError) as info:
        ask(fn, {"text": "a", "text_pair": "b"})
    assert str(info.value).startswith("text pairs and rerank requests are for text-classification")


LONG_DOC = " ".join(f"word{i} battery" for i in range(80))  # far over the tiny model's 64 tokens


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_long_pair_is_cut_as_cross_encoder_cuts_it(cross_encoder, fn, side: str) -> None:
    model, _ = cross_encoder
    model.tokenizer.truncation_side = side
    try:
        want = float(model.predict([(QUERY, LONG_DOC)])[0])
    finally:
        model.tokenizer.truncation_side = "right"
    answer = fn.handle(
        {"inputs": {"text": QUERY, "text_pair": LONG_DOC}, "parameters": {"truncation_direction": side}}, FakeContext()
    )
    assert answer["outputs"][0]["score"] == pytest.approx(want, abs=1e-4)
    assert answer["timing"]["truncated_inputs"] == [0]


def test_truncate_false_refuses_a_long_rerank_text_naming_its_tokens(fn) -> None:
    with pytest.raises(RequestError) as info:
        ask(fn, {"query": QUERY, "texts": ["short", LONG_DOC]}, {"truncate": False})
    assert info.value.status == 413
    assert str(info.value).startswith('"inputs"[0] (text 1) has ')
    assert "tokens; the limit is 64 (the model's max length)" in str(info.value)


def test_text_ranking_builds_a_one_score_model_as_text_classification(cross_encoder, tmp_path) -> None:
    from bundle_builder.build import build_bundle

    folder = Path(cross_encoder[0].model.name_or_path)
    build_bundle(folder, tmp_path / "ranked.bundle", task="text-ranking")
    fn = new_function(tmp_path / "ranked.bundle", NUM_THREADS="1")
    assert fn.served.model["task"] == "text-classification"
    want = cross_encoder[0].rank(QUERY, DOCS)
    assert [r["index"] for r in ask(fn, {"query": QUERY, "texts": DOCS})] == [int(r["corpus_id"]) for r in want]


def test_text_ranking_refuses_a_model_with_several_labels(tiny_model, tmp_path) -> None:
    from bundle_builder.build import build_bundle
    from bundle_builder.errors import SourceError

    with pytest.raises(SourceError, match="text-ranking needs a model with one output score per pair; this one has 3"):
        build_bundle(tiny_model("bert"), tmp_path / "x.bundle", task="text-ranking")
