"""`--quantize int8`: the scheme is chosen by measured fidelity against fp32, recorded, and refused below the floors.

The real proof is all-MiniLM-L6-v2 against sentence-transformers' own encode; tiny random models show the records
for classification and the refusal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bundle_builder.build import build_bundle
from bundle_builder.errors import SourceError
from bundle_builder.quantize import SCHEMES, Floors
from runtime.bundle import read_bundle
from support import FakeContext, new_function

TEXTS = ["The battery lasts all day.", "Support never answered my emails.", "ok", "Photosynthesis makes glucose."]


@pytest.fixture(scope="module")
def minilm_int8(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "minilm-int8.bundle"
    build_bundle(minilm_dir, out, quantize="int8", name="all-MiniLM-L6-v2")
    return out


def test_minilm_int8_keeps_the_floors_against_sentence_transformers(minilm_dir, minilm_int8, minilm_ort_bundle) -> None:
    from sentence_transformers import SentenceTransformer

    manifest = read_bundle(minilm_int8).manifest
    record = manifest["quantization"]
    assert manifest["dtype"] == "int8" and manifest["engine"] == "onnxruntime"
    assert record["scheme"] in SCHEMES and record["tried"][-1]["scheme"] == record["scheme"]
    assert record["tried"][-1]["passed"] and not any(t["passed"] for t in record["tried"][:-1])
    assert record["tried"][-1]["min_cosine"] >= 0.95 and record["tried"][-1]["mean_cosine"] >= 0.99
    fn = new_function(minilm_int8, NUM_THREADS="1")
    answer = fn.handle({"inputs": TEXTS}, FakeContext())
    assert answer["timing"]["dtype"] == "int8" and fn.canary.ok
    want = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True).encode(TEXTS)
    got = np.asarray(answer["outputs"])
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= Floors().min_cosine
    assert minilm_int8.stat().st_size < 0.8 * minilm_ort_bundle.stat().st_size


def test_int8_classification_records_top1_agreement_and_score_drift(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "clf-int8.bundle"
    build_bundle(tiny_model("bert"), out, quantize="int8", floors=Floors(top1_agreement=0.0))
    record = read_bundle(out).manifest["quantization"]
    assert record["scheme"] == record["tried"][0]["scheme"] == next(iter(SCHEMES))  # any agreement passes: the first
    assert set(record["tried"][0]) == {"scheme", "top1_agreement", "max_score_diff", "passed"}
    assert 0.0 <= record["tried"][0]["top1_agreement"] <= 1.0
    answer = new_function(out, NUM_THREADS="1").handle({"inputs": "great"}, FakeContext())
    assert answer["timing"]["dtype"] == "int8" and answer["model"]["engine"] == "onnxruntime"


def test_no_scheme_within_the_floors_is_a_refusal_with_every_figure(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "refused.bundle"
    with pytest.raises(SourceError) as info:
        build_bundle(
            tiny_model("bert", task="feature-extraction"), out, task="feature-extraction", quantize="int8",
            floors=Floors(min_cosine=1.01, mean_cosine=1.01),  # over any cosine: every scheme is tried
        )
    message = str(info.value)
    assert message.startswith("no int8 scheme keeps this model's outputs within the floors")
    assert all(f"{scheme} " in message for scheme in SCHEMES) and "min_cosine=" in message
    assert not out.exists()


def test_quantize_with_the_torch_engine_is_refused(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="--quantize int8 runs on an ONNX Runtime engine; drop --engine torch"):
        build_bundle(tiny_model("bert"), tmp_path / "x.bundle", quantize="int8", engine="torch")
