"""sentence-transformers layouts (issue #12): every folder saved by the pinned sentence-transformers answers as
`SentenceTransformer.encode` does.

Each layout is a tiny random-weight model assembled from sentence-transformers' own modules and written with
`SentenceTransformer.save`, so modules.json carries the 6.x class paths
(`sentence_transformers.base.modules.transformer.Transformer`, `...sentence_transformer.modules.pooling.Pooling`,
`...base.modules.dense.Dense`, `...base.modules.normalize.Normalize`); two more are rewritten to the 2.x names and
legacy pooling keys. The peer is sentence-transformers itself, loaded from the saved folder in the test. The
`*_reference_*` tests check the peer, so that a parity failure is the bundle's, not the test's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support import FakeContext, new_function

from bundle_builder.build import build_bundle
from bundle_builder.errors import SourceError
from runtime.errors import RequestError

TEXTS = [
    "ok",
    "the capital of france is paris",
    "I waited an hour and the support team never answered my question!",
    "lambda functions load the model once and answer many requests",
    "great product, terrible delivery, average price. " * 12,  # past every limit here: truncated the same way
]
COSINE = 0.9999
ST_TYPES = {
    "Transformer": "sentence_transformers.base.modules.transformer.Transformer",
    "Pooling": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
    "Dense": "sentence_transformers.base.modules.dense.Dense",
    "Normalize": "sentence_transformers.base.modules.normalize.Normalize",
}
LEGACY_TYPES = {kind: f"sentence_transformers.models.{kind}" for kind in ST_TYPES}


def _pooling(mode: str, **kwargs: Any) -> Callable[[int], list[Any]]:
    def head(dim: int) -> list[Any]:
        from sentence_transformers.sentence_transformer.modules.pooling import Pooling

        return [Pooling(dim, pooling_mode=mode, **kwargs)]

    return head


def _normalized(head: Callable[[int], list[Any]]) -> Callable[[int], list[Any]]:
    def with_normalize(dim: int) -> list[Any]:
        from sentence_transformers.base.modules.normalize import Normalize

        return [*head(dim), Normalize()]

    return with_normalize


def _labse_head(dim: int) -> list[Any]:
    """Mean pooling, two Dense layers (Tanh, sentence-transformers' default, then Identity), Normalize."""
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    return [
        Pooling(dim, pooling_mode="mean"),
        Dense(dim, 16),
        Dense(16, 8, activation_function=torch.nn.Identity()),
        Normalize(),
    ]


@dataclass(frozen=True)
class Layout:
    kind: str  # tests/tiny_models.py kind of the Transformer
    head: Callable[[int], list[Any]]  # the modules after the Transformer, given its output dimension
    st_kwargs: dict[str, Any] = field(default_factory=dict)  # SentenceTransformer(...) arguments: prompts
    max_seq_length: int | None = None
    padding_side: str | None = None
    sharp_attention: bool = False  # see _sharpen_attention
    legacy: bool = False  # rewritten to the 2.x names after saving (see _to_legacy)
    legacy_tokenizer_limit: int = 64  # the tokenizer's model_max_length left in a legacy folder


PROMPTS = {"prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": "query"}
LAYOUTS = {
    "cls-prompts": Layout("bert", _normalized(_pooling("cls")), PROMPTS, sharp_attention=True),
    "max-no-normalize": Layout("roberta", _pooling("max")),
    "dense-head": Layout("bert", _labse_head),
    "lasttoken-decoder": Layout("llama", _normalized(_pooling("lasttoken")), padding_side="left"),
    "weightedmean": Layout("bert", _pooling("weightedmean")),
    "mean_sqrt_len_tokens": Layout("bert", _pooling("mean_sqrt_len_tokens")),
    "include-prompt-false": Layout(
        "bert",
        _pooling("mean", include_prompt=False),
        {"prompts": {"query": "search query: "}, "default_prompt_name": "query"},
    ),
    "legacy-2x-names": Layout("bert", _normalized(_pooling("mean")), max_seq_length=16, legacy=True),
    # sentence_bert_config.json's max_seq_length wins over a smaller tokenizer limit, in 2.x as in 6.2
    "legacy-max-seq-above-tokenizer": Layout(
        "bert", _normalized(_pooling("mean")), max_seq_length=32, legacy=True, legacy_tokenizer_limit=16
    ),
    "max-seq-length": Layout("bert", _normalized(_pooling("mean")), max_seq_length=8),
    "cls-and-mean-concatenated": Layout("distilbert", _pooling(["cls", "mean"]), sharp_attention=True),  # type: ignore[arg-type]  # a list of modes
}
PROMPTED = ("cls-prompts", "include-prompt-false")


def _sharpen_attention(base: Path, folder: Path) -> Path:
    """A copy of `base` with its attention projections scaled up. A tiny random encoder's first-token state barely
    depends on the rest of the text, so CLS pooling would give nearly the same vector for every text (and with or
    without the prompt) and a parity check would pass whatever the bundle tokenized."""
    from transformers import AutoModel

    shutil.copytree(base, folder)
    model = AutoModel.from_pretrained(str(base))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "attention" in name and param.ndim == 2:
                param.mul_(6.0)
    model.save_pretrained(str(folder))
    return folder


def _to_legacy(folder: Path, tokenizer_limit: int) -> None:
    """Rewrite a saved folder as sentence-transformers 2.x wrote it: `sentence_transformers.models.*` types, the
    boolean pooling keys, max_seq_length in sentence_bert_config.json with the tokenizer's model_max_length left at
    `tokenizer_limit` (all-MiniLM-L6-v2: 256 and 512), a Normalize folder without config, no model_type or prompts.
    """
    modules = json.loads((folder / "modules.json").read_text())
    by_kind = {}
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        module["type"] = LEGACY_TYPES[kind]
        by_kind[kind] = folder / module["path"]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    pooling = json.loads((by_kind["Pooling"] / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean"
    (by_kind["Pooling"] / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": pooling["embedding_dimension"],
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (by_kind["Normalize"] / "config.json").unlink()
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    max_seq_length = tok_cfg["model_max_length"]
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**tok_cfg, "model_max_length": tokenizer_limit}, indent=2)
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2)
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"__version__": {"sentence_transformers": "2.2.2", "transformers": "4.30.2", "pytorch": "2.0.1"}})
    )


def _save(layout: Layout, base: Path, folder: Path) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.transformer import Transformer

    # decoder embedders (Qwen3-Embedding) pad on the left. Given to the tokenizer when it is loaded: transformers 5
    # saves padding_side to tokenizer_config.json only as an init argument, not when set on the loaded tokenizer
    processor_kwargs = {"padding_side": layout.padding_side} if layout.padding_side else None
    transformer = Transformer(str(base), processor_kwargs=processor_kwargs)
    if transformer.tokenizer.pad_token is None:  # the tiny decoder's tokenizer has "<pad>" in its vocabulary only
        transformer.tokenizer.pad_token = "<pad>"
    if layout.max_seq_length:
        transformer.max_seq_length = layout.max_seq_length
    modules = [transformer, *layout.head(transformer.get_embedding_dimension())]
    SentenceTransformer(modules=modules, device="cpu", **layout.st_kwargs).save(str(folder))
    return folder


def load_st(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def st_folder(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """st_folder(layout) -> the folder SentenceTransformer.save wrote (built once per module)."""
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            layout = LAYOUTS[name]
            base = tiny_model(layout.kind, task="feature-extraction")
            if layout.sharp_attention:
                base = _sharpen_attention(base, tmp_path_factory.mktemp(f"{layout.kind}-sharp") / "model")
            folder = _save(layout, base, tmp_path_factory.mktemp(name) / "model")
            if layout.legacy:
                unchanged = tmp_path_factory.mktemp(f"{name}-as-saved") / "model"
                shutil.copytree(folder, unchanged)
                cache[f"{name}/as-saved"] = unchanged
                _to_legacy(folder, layout.legacy_tokenizer_limit)
            cache[name] = folder
        return cache[name]

    return make


@pytest.fixture(scope="module")
def reference(st_folder) -> Callable[[str], np.ndarray]:
    """reference(layout) -> SentenceTransformer(folder).encode(TEXTS), the default prompt applied (cached)."""
    cache: dict[str, np.ndarray] = {}

    def encode(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_st(st_folder(name)).encode(TEXTS, convert_to_numpy=True).astype(np.float64)
        return cache[name]

    return encode


@pytest.fixture(scope="module")
def st_bundle(st_folder, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """st_bundle(layout, engine="torch") -> a bundle built from the folder with no task given (cached)."""
    cache: dict[tuple[str, str], Path] = {}

    def make(name: str, engine: str = "torch") -> Path:
        if (name, engine) not in cache:
            out = tmp_path_factory.mktemp("st-bundles") / f"{name}-{engine}.bundle"
            build_bundle(st_folder(name), out, engine=engine)
            cache[name, engine] = out
        return cache[name, engine]

    return make


def served(bundle: Path, texts: list[str], **env: str) -> np.ndarray:
    fn = new_function(bundle, NUM_THREADS="1", **env)
    return np.asarray(fn.handle({"inputs": texts}, FakeContext())["outputs"], dtype=np.float64)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def assert_answers_as_encode(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape  # one vector per text, the model's dimension
    assert cosines(got, expected).min() >= COSINE, cosines(got, expected)
    # the length too: mean_sqrt_len_tokens is mean pooling times sqrt(tokens), the same direction
    norms_got, norms_expected = np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1)
    np.testing.assert_allclose(norms_got, norms_expected, rtol=1e-4)


# --- the peer: each saved folder loads in sentence-transformers and tells the texts apart -------------------------


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_reference_layout_saves_loads_and_tells_texts_apart(st_folder, reference, name: str) -> None:
    folder = st_folder(name)
    types = [m["type"] for m in json.loads((folder / "modules.json").read_text())]
    expected_types = LEGACY_TYPES if LAYOUTS[name].legacy else ST_TYPES
    assert set(types) <= set(expected_types.values()), types
    expected = reference(name)
    model = load_st(folder)
    assert expected.shape == (len(TEXTS), model.get_embedding_dimension())
    # every pair of texts is further apart than the parity tolerance, or a bundle could pass by answering any text
    pairwise = cosines(expected[:, None, :], expected[None, :, :]) - 2 * np.eye(len(TEXTS))
    assert pairwise.max() < COSINE, pairwise
    layout = LAYOUTS[name]
    if layout.max_seq_length:
        assert model.max_seq_length == layout.max_seq_length
        assert len(model.preprocess([TEXTS[-1]])["input_ids"][0]) == layout.max_seq_length
    if layout.padding_side:
        assert json.loads((folder / "tokenizer_config.json").read_text())["padding_side"] == layout.padding_side
        assert model.tokenizer.padding_side == layout.padding_side
        assert model.tokenizer.pad_token is not None


@pytest.mark.parametrize("name", PROMPTED)
def test_reference_default_prompt_changes_the_embeddings(st_folder, reference, name: str) -> None:
    """encode(texts) applies the default prompt; a bundle that ignored it would not match (cosine < tolerance)."""
    without_prompt = load_st(st_folder(name)).encode(TEXTS, prompt="").astype(np.float64)
    assert cosines(reference(name), without_prompt).max() < COSINE  # every text


def test_reference_include_prompt_false_excludes_the_prompt_tokens(st_folder, reference) -> None:
    """The prompt still goes through the encoder, but its tokens are not pooled: differs from include_prompt=True."""
    model = load_st(st_folder("include-prompt-false"))
    assert model[1].include_prompt is False
    model.set_pooling_include_prompt(True)
    assert cosines(reference("include-prompt-false"), model.encode(TEXTS).astype(np.float64)).min() < COSINE


@pytest.mark.parametrize("name", [n for n, layout in LAYOUTS.items() if layout.max_seq_length])
def test_reference_max_seq_length_changes_the_long_texts(st_folder, reference, name: str) -> None:
    """A bundle that took the other limit in the folder (the tokenizer's, or the model's 64 positions) instead of
    sentence-transformers' max_seq_length would not match."""
    layout = LAYOUTS[name]
    model = load_st(st_folder(name))
    model.max_seq_length = layout.legacy_tokenizer_limit if layout.legacy else 64
    assert cosines(reference(name), model.encode(TEXTS).astype(np.float64)).min() < COSINE


@pytest.mark.parametrize("name", [n for n, layout in LAYOUTS.items() if layout.legacy])
def test_reference_legacy_folder_loads_as_the_folder_it_was_rewritten_from(st_folder, reference, name: str) -> None:
    legacy = load_st(st_folder(name))
    assert legacy.max_seq_length == LAYOUTS[name].max_seq_length  # from sentence_bert_config.json
    assert legacy.tokenizer.model_max_length == LAYOUTS[name].max_seq_length
    as_saved = load_st(st_folder(f"{name}/as-saved")).encode(TEXTS).astype(np.float64)
    np.testing.assert_allclose(reference(name), as_saved, atol=1e-6)


# --- the bundle answers as encode ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_st_layout_bundle_answers_as_sentence_transformers_encode(st_bundle, reference, name: str) -> None:
    assert_answers_as_encode(served(st_bundle(name), TEXTS), reference(name))


def test_dense_head_onnxruntime_bundle_answers_as_sentence_transformers_encode(st_bundle, reference) -> None:
    got = served(st_bundle("dense-head", engine="onnxruntime"), TEXTS, ENGINE="onnxruntime")
    assert_answers_as_encode(got, reference("dense-head"))


# --- modules the runtime cannot compute are refused by name -----------------------------------------------------


@pytest.mark.parametrize(
    "module_type, replaces_pooling",
    [
        ("sentence_transformers.base.modules.router.Router", False),
        ("sentence_transformers.sentence_transformer.modules.layer_norm.LayerNorm", False),
        ("my_pkg.Custom", False),
        ("my_pkg.modules.Pooling", True),  # custom code that shares a served module's class name, in its place
    ],
    ids=["router", "layer-norm", "custom", "custom-named-pooling"],
)
def test_unknown_st_module_is_refused_naming_its_type(
    st_folder, tmp_path: Path, module_type: str, replaces_pooling: bool
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(st_folder("weightedmean"), folder)
    modules = json.loads((folder / "modules.json").read_text())
    if replaces_pooling:
        modules[1]["type"] = module_type
    else:
        extra = f"{len(modules)}_Extra"
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": extra, "type": module_type})
        (folder / extra).mkdir()
        (folder / extra / "config.json").write_text("{}")
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    out = tmp_path / "out.bundle"
    with pytest.raises(SourceError) as err:
        build_bundle(folder, out)
    assert module_type in str(err.value)
    assert not out.exists()


def test_decoder_embedder_bundle_records_left_padding(st_bundle) -> None:
    from runtime.bundle import read_bundle

    assert read_bundle(st_bundle("lasttoken-decoder")).manifest["tokenizer"]["padding_side"] == "left"


def test_inspect_shows_pooling_head_and_prompts(st_bundle) -> None:
    from bundle_builder.summary import summarize

    pooling = summarize(st_bundle("cls-prompts"))["pooling"]
    assert pooling["modes"] == ["cls"] and pooling["normalize"] is True
    assert pooling["prompts"] == {"query": "query: ", "document": "passage: "}
    assert pooling["default_prompt_name"] == "query" and pooling["similarity"] == "cosine"
    dense = summarize(st_bundle("dense-head"))["pooling"]["dense"]
    assert dense == [{"activation": "tanh", "bias": True}, {"activation": "identity", "bias": True}]


def test_a_cross_encoder_folder_builds_as_text_classification(tiny_model, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    from runtime.bundle import read_bundle

    folder = tmp_path / "cross-encoder"
    CrossEncoder(str(tiny_model("bert")), num_labels=3, device="cpu").save(str(folder))
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"
    out = tmp_path / "ce.bundle"
    assert build_bundle(folder, out).verify.check.ok  # golden outputs from transformers' pipeline on the folder
    assert read_bundle(out).manifest["task"] == "text-classification"


# --- request parameters, named as Text Embeddings Inference names them -------------------------------------------


def answer(bundle: Path, parameters: dict[str, Any], texts: list[str] = TEXTS) -> dict[str, Any]:
    fn = new_function(bundle, NUM_THREADS="1")
    response: dict[str, Any] = fn.handle({"inputs": texts, "parameters": parameters}, FakeContext())
    return response


def test_prompt_name_picks_another_of_the_models_prompts(st_folder, st_bundle) -> None:
    got = np.asarray(answer(st_bundle("cls-prompts"), {"prompt_name": "document"})["outputs"])
    expected = load_st(st_folder("cls-prompts")).encode(TEXTS, prompt_name="document").astype(np.float64)
    assert_answers_as_encode(got, expected)


def test_a_request_prompt_is_measured_and_left_out_of_pooling_like_encode(st_folder, st_bundle) -> None:
    prompt = "Represent this sentence for retrieval: "
    got = np.asarray(answer(st_bundle("include-prompt-false"), {"prompt": prompt})["outputs"])
    expected = load_st(st_folder("include-prompt-false")).encode(TEXTS, prompt=prompt).astype(np.float64)
    assert_answers_as_encode(got, expected)


@pytest.mark.parametrize("name, dims", [("dense-head", 4), ("max-no-normalize", 5)])
def test_dimensions_keep_the_leading_ones_and_renormalise_a_normalised_model(st_folder, st_bundle, name, dims) -> None:
    got = np.asarray(answer(st_bundle(name), {"dimensions": dims})["outputs"])
    expected = load_st(st_folder(name)).encode(TEXTS, truncate_dim=dims).astype(np.float64)
    if LAYOUTS[name].head is _labse_head:  # the model normalises: the cut vector is unit length again
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0)
    assert_answers_as_encode(got, expected)


def test_truncation_is_reported_and_can_be_refused(st_folder, st_bundle) -> None:
    model = load_st(st_folder("max-seq-length"))  # 8 tokens
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in TEXTS]
    too_long = [i for i, n in enumerate(lengths) if n > 8]
    assert too_long and len(too_long) < len(TEXTS)
    timing = answer(st_bundle("max-seq-length"), {})["timing"]
    assert timing["truncated_inputs"] == too_long
    assert "truncated_inputs" not in answer(st_bundle("max-seq-length"), {}, texts=["ok"])["timing"]
    with pytest.raises(RequestError) as info:
        answer(st_bundle("max-seq-length"), {"truncate": False})
    named = info.value.index  # one of the over-long inputs, by its own index (passes group texts by length)
    assert info.value.status == 413 and named in too_long
    assert str(info.value) == (
        f'"inputs"[{named}] has {lengths[named]} tokens; the limit is 8 (the model\'s max length); shorten it, '
        'or send "truncate": true to cut it'
    )


def test_left_truncation_keeps_the_end_of_the_text(st_folder, st_bundle) -> None:
    got = np.asarray(answer(st_bundle("max-seq-length"), {"truncation_direction": "Left"})["outputs"])
    model = load_st(st_folder("max-seq-length"))
    model.tokenizer.truncation_side = "left"
    assert_answers_as_encode(got, model.encode(TEXTS).astype(np.float64))


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"dimensions": 0}, "parameter 'dimensions' must be an integer between 1 and 8, got 0"),
        ({"dimensions": 9}, "parameter 'dimensions' must be an integer between 1 and 8, got 9"),
        ({"prompt_name": "web"}, "parameter 'prompt_name' is 'web'; this model's prompts are: 'document', 'query'"),
        (
            {"prompt_name": "query", "prompt": "x: "},
            'parameters "prompt_name" and "prompt" exclude each other; send one of them',
        ),
        (
            {"truncation_direction": "middle"},
            "parameter 'truncation_direction' must be 'right' or 'left', got 'middle'",
        ),
        ({"truncate": "no"}, "parameter 'truncate' must be true or false, got 'no'"),
    ],
    ids=["dims-zero", "dims-over", "unknown-prompt", "both-prompts", "direction", "truncate-type"],
)
def test_bad_embedding_parameters_are_422_with_the_reason(st_bundle, parameters, message: str) -> None:
    bundle = st_bundle("cls-prompts") if "prompt_name" in parameters else st_bundle("dense-head")
    with pytest.raises(RequestError) as info:
        answer(bundle, parameters)
    assert (info.value.error_type, str(info.value)) == ("InvalidParametersError", message)
