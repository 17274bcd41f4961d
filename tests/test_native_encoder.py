"""The native encoder computes what transformers computes, serves without importing it, and declines what it cannot do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle_builder.build import build_bundle
from runtime.bundle import read_bundle, write_bundle
from runtime.engines import EngineOptions
from runtime.engines.native_encoder import build_native_encoder, unsupported
from runtime.errors import BundleCorruptError
from runtime.loader import LoadedModel, load_model
from runtime.predictor import Predictor
from runtime.function import Function
from runtime.settings import Settings, SettingsError
from support import ROOT

SINGLE = ["the capital of france is paris"]
PADDED = ["ok", "the battery lasts all day and the screen is gorgeous, truly gorgeous", "i waited an hour"]
TOLERANCE = 1e-5  # max abs difference in logits / hidden states
CASES = [
    ("bert", "text-classification", False),
    ("bert", "text-classification", True),
    ("distilbert", "text-classification", False),
    ("distilbert", "text-classification", True),
    ("roberta", "text-classification", False),
    ("roberta", "text-classification", True),
    ("bert", "feature-extraction", False),
    ("distilbert", "feature-extraction", False),
    ("roberta", "feature-extraction", False),
]
# Runs as a new container would: init, one direct event, then what implementation answered and what got imported.
PROBE = """
import json, sys
import handler
response = handler.handler({"inputs": "great product"}, None)
print(json.dumps({"outputs": response["outputs"], "engine": response["model"]["engine"],
                  "implementation": handler.FUNCTION.predictor.model.engine.implementation,
                  "transformers": "transformers" in sys.modules}))
"""


def load(bundle: Path, implementation: str, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    return load_model(bundle, options=EngineOptions(device="cpu", torch_implementation=implementation))


def max_abs_difference(a: LoadedModel, b: LoadedModel, texts: list[str]) -> float:
    batch = a.tokenizer.encode(texts)
    return float(np.abs(a.engine.run(batch) - b.engine.run(batch)).max())


def assert_native_matches_transformers(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    native, reference = load(bundle, "auto", monkeypatch), load(bundle, "transformers", monkeypatch)
    assert (native.engine.implementation, reference.engine.implementation) == ("native", "transformers")
    assert native.engine.name == reference.engine.name == "torch"
    assert not native.tokenizer.encode(PADDED)["attention_mask"].all()  # the batch really holds padding
    for texts in (SINGLE, PADDED):
        assert max_abs_difference(native, reference, texts) <= TOLERANCE, texts
    return native


@pytest.mark.parametrize(("kind", "task", "multi_label"), CASES, ids=[f"{k}-{t}-{'multi' if m else 'single'}" for k, t, m in CASES])
def test_native_outputs_equal_transformers(tiny_bundle, monkeypatch, kind: str, task: str, multi_label: bool) -> None:
    assert_native_matches_transformers(tiny_bundle(kind, task=task, multi_label=multi_label), monkeypatch)


def test_xlm_roberta_is_served_as_roberta(tiny_model, tmp_path: Path, monkeypatch) -> None:
    # XLM-RoBERTa's modeling code is RoBERTa's under other class names: a tiny RoBERTa relabelled is a valid one
    source = tmp_path / "xlm-roberta"
    shutil.copytree(tiny_model("roberta", multi_label=True), source)
    config = json.loads((source / "config.json").read_text())
    config.update(model_type="xlm-roberta", architectures=["XLMRobertaForSequenceClassification"])
    (source / "config.json").write_text(json.dumps(config))
    build_bundle(source, tmp_path / "xlm-roberta.bundle", multi_label=True, engine="torch")
    native = assert_native_matches_transformers(tmp_path / "xlm-roberta.bundle", monkeypatch)
    assert native.manifest.architecture == "XLMRobertaForSequenceClassification"


def test_segment_ids_reach_the_token_type_embeddings(tiny_bundle, monkeypatch) -> None:
    bundle = tiny_bundle("bert", task="feature-extraction")
    native, reference = load(bundle, "auto", monkeypatch), load(bundle, "transformers", monkeypatch)
    batch = native.tokenizer.encode(PADDED)
    batch["token_type_ids"][:, 3:] = 1  # a second segment, as a sentence pair would have
    assert np.abs(native.engine.run(batch) - reference.engine.run(batch)).max() <= TOLERANCE
    del batch["token_type_ids"]  # absent -> all zeros, in both
    assert np.abs(native.engine.run(batch) - reference.engine.run(batch)).max() <= TOLERANCE


def test_fp16_bundle_is_served_natively_in_fp32(tiny_bundle, monkeypatch) -> None:
    native = assert_native_matches_transformers(tiny_bundle("bert", dtype="float16"), monkeypatch)
    assert {p.dtype for p in native.model.parameters()} == {torch.float32}


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])
def test_golden_canary_passes_natively(tiny_bundle, kind: str) -> None:
    fn = Function.load(Settings(model_bundle=str(tiny_bundle(kind)), device="cpu"))
    assert fn.predictor.model.engine.implementation == "native"
    assert fn.canary is not None and fn.canary.ok
    assert fn.predictor.check_golden().ok  # every golden example, not only the canary's first
    assert "import_transformers" not in fn.init_ms


@pytest.mark.slow
def test_minilm_native_matches_transformers_and_its_golden_examples(minilm_torch_bundle: Path, monkeypatch) -> None:
    minilm_bundle = minilm_torch_bundle
    native = assert_native_matches_transformers(minilm_bundle, monkeypatch)
    assert native.manifest.architecture == "BertModel"
    predictor = Predictor.load(Settings(model_bundle=str(minilm_bundle), device="cpu"))
    assert predictor.model.engine.implementation == "native"
    check = predictor.check_golden()
    assert check.ok, check.describe()


def probe(bundle: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in ("ENGINE", "DEVICE", "CUDA_VISIBLE_DEVICES", "TORCH_IMPLEMENTATION")}
    full.update(MODEL_BUNDLE=str(bundle), LOG_LEVEL="WARNING", **env)
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, env=full, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_native_container_never_imports_transformers(tiny_bundle) -> None:
    native = probe(tiny_bundle("bert"))
    assert (native["engine"], native["implementation"], native["transformers"]) == ("torch", "native", False)
    forced = probe(tiny_bundle("bert"), TORCH_IMPLEMENTATION="transformers")
    assert (forced["engine"], forced["implementation"], forced["transformers"]) == ("torch", "transformers", True)
    for got, want in zip(native["outputs"], forced["outputs"]):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=TOLERANCE)


def test_an_unknown_implementation_is_refused(tiny_bundle) -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env({"MODEL_BUNDLE": str(tiny_bundle("bert")), "TORCH_IMPLEMENTATION": "nativ"})
    assert str(e.value) == "environment variable TORCH_IMPLEMENTATION='nativ' is not allowed: use auto or transformers"


def test_generation_keeps_the_transformers_path(tiny_bundle) -> None:
    assert load_model(tiny_bundle("llama", task="text-generation"), options=EngineOptions(device="cpu")).engine.implementation == "transformers"


DECLINED = {
    "decoder": ({"is_decoder": True}, "config has is_decoder"),
    "cross-attention": ({"add_cross_attention": True}, "config has add_cross_attention"),
    "relative-positions": ({"position_embedding_type": "relative_key"}, "config has position_embedding_type"),
    "chunked-ffn": ({"chunk_size_feed_forward": 4}, "config has chunk_size_feed_forward"),
    "activation": ({"hidden_act": "silu"}, "config has activation 'silu'"),
    "model-type": ({"model_type": "electra"}, "model_type 'electra' is not one of ['bert', 'distilbert', 'roberta', 'xlm-roberta']"),
}


@pytest.mark.parametrize(("change", "reason"), DECLINED.values(), ids=DECLINED.keys())
def test_configs_that_change_the_math_are_declined(tiny_bundle, change: dict, reason: str) -> None:
    bundle = read_bundle(tiny_bundle("bert"))
    config = {**json.loads(bundle.read_file("config.json")), **change}
    assert unsupported(config, "text-classification", "BertForSequenceClassification") == reason
    assert build_native_encoder(config, bundle.tensors(), "text-classification", "BertForSequenceClassification") is None


def test_a_head_other_than_the_task_s_is_declined(tiny_bundle) -> None:
    bundle = read_bundle(tiny_bundle("bert"))
    config = json.loads(bundle.read_file("config.json"))
    assert unsupported(config, "feature-extraction", "BertForSequenceClassification") == (
        "'BertForSequenceClassification' for feature-extraction "
        "(native: BertModel for feature-extraction, BertForSequenceClassification for text-classification and "
        "zero-shot-classification)"
    )


def test_tensors_that_do_not_fit_are_declined_and_setup_still_says_why(tiny_bundle, tmp_path: Path) -> None:
    bundle = read_bundle(tiny_bundle("bert"))
    config = json.loads(bundle.read_file("config.json"))
    tensors = bundle.tensors()
    del tensors["classifier.bias"]
    assert build_native_encoder(config, tensors, "text-classification", "BertForSequenceClassification") is None
    out = tmp_path / "missing.bundle"
    write_bundle(out, manifest=bundle.manifest, tensors=tensors, files={n: bundle.read_file(n) for n in bundle.file_names})
    with pytest.raises(BundleCorruptError, match="tensors do not fit the bundled AutoModelForSequenceClassification config"):
        load_model(out, options=EngineOptions(device="cpu"))  # the transformers path names the missing key


def test_an_unsupported_config_falls_back_to_transformers_and_stays_correct(tiny_model, tmp_path: Path) -> None:
    import transformers

    source = tmp_path / "relative"
    shutil.copytree(tiny_model("bert"), source)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    out = tmp_path / "relative.bundle"
    build_bundle(source, out, engine="torch")  # the builder proves the bundle on the path the runtime will take
    loaded = load_model(out, options=EngineOptions(device="cpu"))
    assert loaded.engine.implementation == "transformers"
    peer = transformers.AutoModelForSequenceClassification.from_pretrained(str(source), local_files_only=True).eval()
    batch = loaded.tokenizer.encode(PADDED)
    with torch.inference_mode():
        expected = peer(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert np.abs(loaded.engine.run(batch) - expected).max() <= TOLERANCE
