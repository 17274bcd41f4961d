"""bundle_builder: real bundles reproduce their reference peers; builds are deterministic, compact and refuse bad sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle_builder.build import build_bundle
from bundle_builder.errors import SourceError
from runtime.bundle import read_bundle
from runtime.engines import EngineOptions
from runtime.loader import load_model
from runtime.predictor import Predictor
from runtime.settings import Settings
from support import ROOT

TEXTS = [
    "Serverless inference keeps costs low for spiky traffic.",
    "The parcel arrived broken and nobody answered my emails!",
    "ok",
    "word " * 400,  # longer than every model's limit: truncation must match the peer's
]


def predictor_for(bundle: Path) -> Predictor:
    return Predictor.load(Settings(model_bundle=str(bundle), device="cpu", canary=False))


def cosine(a: list[float], b: list[float]) -> float:
    return float(torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=0))


@pytest.mark.slow
def test_minilm_bundle_embeddings_equal_sentence_transformers(minilm_dir: Path, minilm_bundle: Path) -> None:
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True).encode(TEXTS).tolist()
    single = [predictor_for(minilm_bundle).predict([t], {}).outputs[0] for t in TEXTS]
    batched = predictor_for(minilm_bundle).predict(TEXTS, {}).outputs
    for exp, one, many in zip(expected, single, batched):
        assert cosine(exp, one) >= 0.9999
        assert cosine(exp, many) >= 0.9999


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "llama"])
@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_classification_scores_equal_hf_pipeline(tiny_model, tiny_bundle, kind: str, multi_label: bool) -> None:
    from transformers import pipeline

    src = tiny_model(kind, multi_label=multi_label)
    pipe = pipeline("text-classification", model=str(src), device="cpu")
    fn = "sigmoid" if multi_label else "softmax"
    predictor = predictor_for(tiny_bundle(kind, multi_label=multi_label))
    for text in TEXTS:
        expected = pipe(text, top_k=None, function_to_apply=fn, truncation=True)
        got = predictor.predict([text], {}).outputs[0]
        assert [d["label"] for d in got] == [d["label"] for d in expected]
        for g, e in zip(got, expected):
            assert abs(g["score"] - e["score"]) <= 1e-4
    if multi_label:  # independent sigmoid scores, not a distribution
        assert abs(sum(d["score"] for d in got) - 1.0) > 1e-3


def test_classification_top_k_limits_and_sorts(tiny_bundle) -> None:
    out = predictor_for(tiny_bundle("bert")).predict(["great product"], {"top_k": 2}).outputs[0]
    assert len(out) == 2 and out[0]["score"] >= out[1]["score"]


def test_causal_lm_logits_equal_source_model(tiny_model, tiny_bundle) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_model("llama", task="text-generation")
    reference = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    loaded = load_model(tiny_bundle("llama", task="text-generation"))
    for prompt in ["the capital of france is", "once upon a time"]:
        hf_ids = tokenizer(prompt, return_tensors="pt")
        ours = loaded.tokenizer.encode([prompt])
        assert ours["input_ids"].tolist() == hf_ids["input_ids"].tolist()
        with torch.inference_mode():
            expected = reference(**hf_ids).logits
            got = loaded.model(**{k: torch.from_numpy(v) for k, v in ours.items()}).logits
        assert (got - expected).abs().max().item() <= 1e-4


def test_tied_weights_stay_tied_after_loading(tiny_bundle) -> None:
    model = load_model(tiny_bundle("llama", task="text-generation")).model
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_weights_are_memory_mapped_not_copied(tiny_bundle) -> None:
    import ctypes

    loaded = load_model(tiny_bundle("bert"))
    mapped = loaded.bundle._map
    start = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
    for name, param in loaded.model.named_parameters():
        assert start <= param.data_ptr() < start + len(mapped), f"{name} was copied out of the bundle"


@pytest.mark.parametrize("implementation", ["auto", "transformers"])
def test_model_is_built_without_random_initialisation(tiny_bundle, monkeypatch, implementation: str) -> None:
    bundle = tiny_bundle("roberta")  # built before the spies: building the source initialises a model at random
    calls: list[tuple[str, str]] = []
    for fn in ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "trunc_normal_", "zeros_", "ones_"):
        original = getattr(torch.nn.init, fn)

        def spy(*a, _n=fn, _o=original, **k):
            calls.append((_n, (a[0] if a else k["tensor"]).device.type))
            return _o(*a, **k)

        monkeypatch.setattr(torch.nn.init, fn, spy)
    loaded = load_model(bundle, options=EngineOptions(torch_implementation=implementation))
    if implementation == "auto":  # the native encoder: torch.nn's own init runs, on the meta device (no data)
        assert loaded.engine.implementation == "native"
        assert {device for _, device in calls} <= {"meta"}
        assert set(loaded.phases_ms) == {"read_bundle", "import_torch", "build_model", "load_weights", "tokenizer"}
    else:
        assert calls == []
        assert set(loaded.phases_ms) == {
            "read_bundle",
            "import_torch",
            "import_transformers",
            "build_model",
            "load_weights",
            "tokenizer",
        }


def test_fp16_storage_is_upcast_to_fp32_on_cpu(tiny_bundle) -> None:
    loaded = load_model(tiny_bundle("bert", dtype="float16"))
    assert loaded.manifest.dtype == "float16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


@pytest.mark.slow
def test_two_builds_of_the_same_source_are_byte_identical(
    minilm_dir: Path, minilm_bundle: Path, tmp_path: Path
) -> None:
    """With the engine given, a build is byte-identical (an auto build also records the timings it measured)."""
    first, again = tmp_path / "first.bundle", tmp_path / "again.bundle"
    build_bundle(minilm_dir, first, name="all-MiniLM-L6-v2", engine="torch")
    build_bundle(minilm_dir, again, name="all-MiniLM-L6-v2", engine="torch")
    assert again.read_bytes() == first.read_bytes()


@pytest.mark.slow
def test_bundle_size_is_weights_plus_tokenizer_and_half_in_fp16(
    minilm_dir: Path, minilm_bundle: Path, tmp_path: Path
) -> None:
    weights = (minilm_dir / "model.safetensors").stat().st_size
    tokenizer = sum(
        (minilm_dir / f).stat().st_size for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
    )
    fp32 = minilm_bundle.stat().st_size
    assert abs(fp32 - (weights + tokenizer)) / (weights + tokenizer) <= 0.02
    half = build_bundle(minilm_dir, tmp_path / "half.bundle", dtype="float16")
    assert 0.45 <= half.size_bytes / fp32 <= 0.55
    assert half.verify.check.ok


def _copy_without(src: Path, dst: Path, *missing: str) -> Path:
    shutil.copytree(src, dst)
    for name in missing:
        (dst / name).unlink(missing_ok=True)
    return dst


def test_refuses_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist or is not a directory"):
        build_bundle(tmp_path / "nope", tmp_path / "out.bundle")


@pytest.mark.parametrize(
    "missing, message",
    [
        (["config.json"], "has no config.json"),
        (["model.safetensors"], "has no weights"),
        (["tokenizer.json", "vocab.txt"], "has no tokenizer files"),
    ],
    ids=["no-config", "no-weights", "no-tokenizer"],
)
def test_refuses_incomplete_folder(tiny_model, tmp_path: Path, missing: list[str], message: str) -> None:
    dst = _copy_without(tiny_model("bert"), tmp_path / "m", *missing)
    with pytest.raises(SourceError, match=message):
        build_bundle(dst, tmp_path / "out.bundle")
    assert not (tmp_path / "out.bundle").exists()


def test_refuses_models_that_need_trust_remote_code(tiny_model, tmp_path: Path) -> None:
    dst = _copy_without(tiny_model("bert"), tmp_path / "m")
    config = json.loads((dst / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(SourceError, match="trust_remote_code"):
        build_bundle(dst, tmp_path / "out.bundle")


def test_refuses_unknown_architecture(tiny_model, tmp_path: Path) -> None:
    dst = _copy_without(tiny_model("bert"), tmp_path / "m")
    config = json.loads((dst / "config.json").read_text())
    config["model_type"] = "my-secret-net"
    (dst / "config.json").write_text(json.dumps(config))
    with pytest.raises(SourceError, match="model_type 'my-secret-net' is not an architecture"):
        build_bundle(dst, tmp_path / "out.bundle")


def test_refuses_task_the_architecture_cannot_serve(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="has no AutoModelForCausalLM class"):
        build_bundle(tiny_model("distilbert"), tmp_path / "out.bundle", task="text-generation")


def test_task_is_inferred_from_config(tiny_model, tmp_path: Path) -> None:
    # Built here without task=: the tiny_bundle fixture always passes one, so its manifests only echo it back.
    # (kind, the head tiny_model saves it with) -> config.json's architecture -> the task and class inferred.
    cases = [
        ("roberta", "text-classification", "RobertaForSequenceClassification", "AutoModelForSequenceClassification"),
        ("bert", "feature-extraction", "BertModel", "AutoModel"),
        ("llama", "text-generation", "LlamaForCausalLM", "AutoModelForCausalLM"),
        ("t5", "text-generation", "T5ForConditionalGeneration", "AutoModelForSeq2SeqLM"),
    ]
    for kind, task, architecture, auto_class in cases:
        src = tiny_model(kind, task=task)
        assert json.loads((src / "config.json").read_text())["architectures"] == [architecture]
        out = tmp_path / f"{kind}.bundle"
        build_bundle(src, out)
        manifest = read_bundle(out).manifest
        got = (manifest["task"], manifest["auto_class"], manifest["architecture"])
        assert got == (task, auto_class, architecture), f"{kind} saved as {architecture}"

    # A head that names none of the served tasks, or no architectures at all, is refused, not guessed.
    for i, architectures in enumerate([["BertForPreTraining"], None]):
        dst = _copy_without(tiny_model("bert"), tmp_path / f"ambiguous{i}")
        config = json.loads((dst / "config.json").read_text())
        config["architectures"] = architectures
        (dst / "config.json").write_text(json.dumps(config))
        with pytest.raises(SourceError, match=r"cannot infer the task from architectures=.*; pass --task"):
            build_bundle(dst, tmp_path / "ambiguous.bundle")
        assert not (tmp_path / "ambiguous.bundle").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bundle_builder", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_build_inspect_verify(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "cli.bundle"
    built = run_cli(
        "build", str(tiny_model("bert", multi_label=True)), "-o", str(out), "--multi-label", "--name", "tiny", "--quiet"
    )
    assert built.returncode == 0, built.stderr
    info = json.loads(run_cli("inspect", str(out), "--json").stdout)
    for key in (
        "format",
        "format_version",
        "task",
        "model_type",
        "name",
        "sha256",
        "dtype",
        "num_parameters",
        "size_bytes",
        "labels",
    ):
        assert key in info
    assert info["labels"] == ["negative", "neutral", "positive"] and info["name"] == "tiny"
    assert info["size_bytes"] == out.stat().st_size and info["sha256"] == read_bundle(out).sha256
    assert "tiny  (text-classification" in run_cli("inspect", str(out)).stdout
    ok = run_cli("verify", str(out))
    assert ok.returncode == 0 and "max_abs_diff=" in ok.stdout

    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    bad = run_cli("verify", str(out))
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("BundleCorruptError: ")


def test_cli_reports_errors_as_one_line(tmp_path: Path) -> None:
    res = run_cli("build", str(tmp_path / "missing"), "-o", str(tmp_path / "x.bundle"), "--quiet")
    assert res.returncode == 1
    assert (
        res.stderr.strip() == f"SourceError: model folder {tmp_path / 'missing'} does not exist or is not a directory"
    )


@pytest.mark.parametrize(
    "parent, folder, name_or_path, expected",
    [
        ("acme-encoder", "model", None, "acme-encoder"),  # a package keeping its weights in model/
        ("models", "sentiment-v3", None, "sentiment-v3"),
        ("tmp123", "model", "acme/base-encoder", "base-encoder"),
    ],
    ids=["package-folder", "own-folder", "config-name"],
)
def test_the_bundle_is_named_for_the_model_not_its_folder_called_model(
    tiny_model, tmp_path: Path, parent: str, folder: str, name_or_path: str | None, expected: str
) -> None:
    import json
    import shutil

    from bundle_builder.build import model_name
    from bundle_builder.sources import read_source

    path = tmp_path / parent / folder
    shutil.copytree(tiny_model("bert"), path)
    config = json.loads((path / "config.json").read_text())
    config["_name_or_path"] = name_or_path
    (path / "config.json").write_text(json.dumps(config))
    assert model_name(read_source(path)) == expected
