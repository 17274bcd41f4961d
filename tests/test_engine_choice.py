"""The build picks the bundle's engine by measurement (`--engine auto`, the default), and stores each weight once.

Both candidate bundles are built and proved; each is timed on its golden inputs in the build process; the faster one
is written, with the figures in the manifest. Models ONNX cannot serve are built for torch with the reason recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bundle_builder.build import build_bundle
from bundle_builder.summary import render, summarize
from runtime.bundle import read_bundle
from support import FakeContext, new_function


@pytest.fixture(scope="module")
def auto_built(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("auto") / "bert.bundle"
    return out, build_bundle(tiny_model("bert"), out)  # engine="auto" is the default


def test_the_faster_proved_engine_is_written_with_its_figures(auto_built) -> None:
    out, result = auto_built
    choice = read_bundle(out).manifest["engine_choice"]
    assert choice == result.engine_choice
    assert set(choice["p50_ms"]) == {"torch", "onnxruntime"} and all(v > 0 for v in choice["p50_ms"].values())
    assert choice["chosen"] == min(choice["p50_ms"], key=choice["p50_ms"].get)
    assert read_bundle(out).manifest["engines"] == [choice["chosen"]]
    info = summarize(out)
    assert info["engine"] == choice["chosen"] and f"chosen by     {choice['reason']}" in render(info)


def test_the_chosen_bundle_holds_one_engine_s_weights_and_answers(auto_built, tiny_model) -> None:
    from transformers import pipeline

    out, result = auto_built
    bundle = read_bundle(out)
    onnx_names = [n for n in bundle.tensor_names if n.startswith("onnx/")]
    if result.engine_choice["chosen"] == "onnxruntime":
        assert onnx_names == bundle.tensor_names and bundle.has_file("model.onnx")
    else:
        assert not onnx_names and not bundle.has_file("model.onnx")
    fn = new_function(out, NUM_THREADS="1")
    answer = fn.handle({"inputs": "great product"}, FakeContext())
    assert answer["model"]["engine"] == result.engine_choice["chosen"]
    expected = pipeline("text-classification", model=str(tiny_model("bert")), device="cpu")("great product", top_k=None)
    assert [d["label"] for d in answer["outputs"]] == [d["label"] for d in expected]
    np.testing.assert_allclose([d["score"] for d in answer["outputs"]], [d["score"] for d in expected], atol=1e-4)


def test_a_causal_lm_is_timed_on_torch_and_onnxruntime_genai_and_the_faster_kept(tiny_model, tmp_path: Path) -> None:
    result = build_bundle(tiny_model("llama", task="text-generation"), tmp_path / "gen.bundle")
    p50 = result.engine_choice["p50_ms"]
    assert set(p50) == {"torch", "onnxruntime-genai"}
    assert result.engine_choice["chosen"] == min(p50, key=p50.get)
    assert read_bundle(result.path).manifest["engine"] == result.engine_choice["chosen"]


def test_a_failed_export_falls_back_to_torch_and_says_why(tiny_model, tmp_path: Path) -> None:
    # transformers' Llama classifier refuses padded batches without a pad token: the exporter's proof needs them
    result = build_bundle(tiny_model("llama"), tmp_path / "llama-clf.bundle", task="text-classification")
    assert result.engine_choice["chosen"] == "torch"
    assert result.engine_choice["reason"].startswith("the ONNX export failed (ValueError: ")


def test_an_fp16_onnx_bundle_is_half_the_size_and_computes_in_fp32(tiny_model, tmp_path: Path) -> None:
    fp32, fp16 = tmp_path / "fp32.bundle", tmp_path / "fp16.bundle"
    build_bundle(tiny_model("bert", task="feature-extraction"), fp32, engine="onnxruntime", task="feature-extraction")
    build_bundle(
        tiny_model("bert", task="feature-extraction"), fp16, engine="onnxruntime", task="feature-extraction",
        dtype="float16",
    )
    assert read_bundle(fp16).tensor_bytes() == pytest.approx(read_bundle(fp32).tensor_bytes() / 2, rel=0.02)
    a, b = (new_function(p, NUM_THREADS="1").handle({"inputs": "hello"}, FakeContext()) for p in (fp32, fp16))
    assert a["timing"]["dtype"] == b["timing"]["dtype"] == "float32"
    cos = np.dot(a["outputs"], b["outputs"]) / (np.linalg.norm(a["outputs"]) * np.linalg.norm(b["outputs"]))
    assert cos > 0.999


def test_the_default_minilm_build_records_its_choice(minilm_bundle: Path) -> None:
    manifest = read_bundle(minilm_bundle).manifest
    assert manifest["engine"] == manifest["engine_choice"]["chosen"] and manifest["engines"] == [manifest["engine"]]
    assert set(manifest["engine_choice"]["p50_ms"]) == {"torch", "onnxruntime"}
