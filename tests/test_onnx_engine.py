"""The onnxruntime engine: --engine onnxruntime bundles reproduce their peers and refuse what they cannot serve."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bundle_builder.build import build_bundle
from bundle_builder.errors import SourceError
from bundle_builder.onnx_export import OUTPUTS
from runtime.bundle import read_bundle
from runtime.engines import EngineError, EngineOptions
from runtime.tasks import TASKS
from runtime.loader import ONNX_FILE, load_model
from runtime.predictor import Predictor
from runtime.settings import Settings
from support import FakeContext, new_function

TEXTS = [
    "Serverless inference keeps costs low for spiky traffic.",
    "The parcel arrived broken and nobody answered my emails!",
    "ok",
    "word " * 400,  # longer than every model's limit: truncation must match the peer's
]
def only_holds(held: str, wanted: str) -> str:
    return (
        f"ENGINE={wanted} but this bundle holds the weights for {held} only (each weight is stored once, for the engine "
        f"it was built for); unset ENGINE, or rebuild it with `bundle_builder build --engine {wanted}`"
    )


@pytest.fixture(scope="session")
def ort_bundle(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """ort_bundle(kind, task=..., multi_label=...) -> a tiny bundle built with --engine onnxruntime (cached)."""
    cache: dict[tuple, Path] = {}

    def make(kind: str, task: str = "text-classification", multi_label: bool = False) -> Path:
        key = (kind, task, multi_label)
        if key not in cache:
            out = tmp_path_factory.mktemp("ort") / f"{kind}-{task}-{multi_label}.bundle"
            src = tiny_model(kind, task, multi_label)
            build_bundle(src, out, engine="onnxruntime", task=task, multi_label=multi_label)
            cache[key] = out
        return cache[key]

    return make


def predictor_for(bundle: Path, engine: str = "auto") -> Predictor:
    return Predictor.load(Settings(model_bundle=str(bundle), device="cpu", canary=False, engine=engine, num_threads=1))


def cosine(a: list[float], b: list[float]) -> float:
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a_ @ b_ / (np.linalg.norm(a_) * np.linalg.norm(b_)))


@pytest.mark.slow
def test_minilm_ort_embeddings_equal_sentence_transformers(minilm_dir: Path, minilm_ort_bundle: Path) -> None:
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True).encode(TEXTS).tolist()
    predictor = predictor_for(minilm_ort_bundle)
    assert predictor.model.engine.name == "onnxruntime" and predictor.model.model is None
    single = [predictor.predict([t], {}).outputs[0] for t in TEXTS]
    batched = predictor.predict(TEXTS, {}).outputs
    for exp, one, many in zip(expected, single, batched, strict=True):
        assert cosine(exp, one) >= 0.9999
        assert cosine(exp, many) >= 0.9999


@pytest.mark.slow
def test_minilm_ort_graph_is_fused_with_portable_ops_only(minilm_ort_bundle: Path) -> None:
    import onnx

    graph = onnx.load_model(io.BytesIO(read_bundle(minilm_ort_bundle).read_file(ONNX_FILE)))
    ops = {(n.domain or "ai.onnx", n.op_type) for n in graph.graph.node}
    assert {d for d, _ in ops} <= {"ai.onnx", "com.microsoft"}  # no machine-specific layouts (NCHWc, ...)
    assert {("com.microsoft", "Attention"), ("com.microsoft", "SkipLayerNormalization")} <= ops
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert dims == [["batch", "sequence"]] * 3


@pytest.mark.slow
def test_minilm_ort_bundle_is_verified_on_onnxruntime_and_refuses_torch(minilm_ort_bundle: Path) -> None:
    from bundle_builder.verify import verify_bundle

    report = verify_bundle(minilm_ort_bundle)
    assert list(report.engines) == ["onnxruntime"]  # the only engine whose weights it holds
    assert report.check.ok and report.check.metric == "min_cosine"
    fn = new_function(minilm_ort_bundle, ENGINE="auto")
    assert fn.handle({"inputs": TEXTS[0]}, FakeContext())["model"]["engine"] == "onnxruntime" and fn.canary.ok
    with pytest.raises(EngineError) as info:
        new_function(minilm_ort_bundle, ENGINE="torch")
    assert str(info.value) == only_holds("onnxruntime", "torch")


@pytest.mark.slow
def test_minilm_ort_bundle_stores_each_weight_once(minilm_dir: Path, minilm_ort_bundle: Path) -> None:
    bundle = read_bundle(minilm_ort_bundle)
    graph = bundle.read_file(ONNX_FILE)
    weights = (minilm_dir / "model.safetensors").stat().st_size
    tokenizer = len(bundle.read_file("tokenizer.json"))
    assert len(graph) < 100_000  # the graph without its weights: they are bundle tensors
    assert all(name.startswith("onnx/") for name in bundle.tensor_names)
    assert minilm_ort_bundle.stat().st_size <= 1.02 * (weights + tokenizer)


@pytest.mark.slow
def test_two_ort_builds_of_minilm_are_byte_identical(minilm_dir: Path, minilm_ort_bundle: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.bundle"
    build_bundle(minilm_dir, again, engine="onnxruntime", name="all-MiniLM-L6-v2")
    assert again.read_bytes() == minilm_ort_bundle.read_bytes()


@pytest.mark.parametrize(
    "kind, multi_label",
    [("bert", False), ("distilbert", False), ("roberta", False), ("bert", True)],
    ids=["bert", "distilbert", "roberta", "bert-multi-label"],
)
def test_ort_classification_scores_equal_hf_pipeline(tiny_model, ort_bundle, kind: str, multi_label: bool) -> None:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(tiny_model(kind, multi_label=multi_label)), device="cpu")
    fn = "sigmoid" if multi_label else "softmax"
    predictor = predictor_for(ort_bundle(kind, multi_label=multi_label))
    assert predictor.model.engine.name == "onnxruntime"
    batched = predictor.predict(TEXTS, {}).outputs
    for text, many in zip(TEXTS, batched, strict=True):
        expected = pipe(text, top_k=None, function_to_apply=fn, truncation=True)
        for got in (predictor.predict([text], {}).outputs[0], many):
            assert [d["label"] for d in got] == [d["label"] for d in expected]
            assert max(abs(g["score"] - e["score"]) for g, e in zip(got, expected)) <= 1e-4


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta"])
def test_ort_hidden_states_equal_torch_engine_of_the_same_model(ort_bundle, tiny_bundle, kind: str) -> None:
    ort_model = load_model(ort_bundle(kind, task="feature-extraction"))
    torch_model = load_model(tiny_bundle(kind, task="feature-extraction"))
    assert (ort_model.engine.name, torch_model.engine.name) == ("onnxruntime", "torch")
    batch = ort_model.tokenizer.encode(TEXTS)  # padded: 4 rows of different lengths
    mask = batch["attention_mask"][..., None]
    got, expected = ort_model.engine.run(batch), torch_model.engine.run(batch)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs((got - expected) * mask).max() <= 1e-4


def test_ort_phases_are_timed_and_no_torch_module_is_built(ort_bundle) -> None:
    loaded = load_model(ort_bundle("bert"))
    assert set(loaded.phases_ms) == {"read_bundle", "import_onnxruntime", "create_session", "tokenizer"}
    assert loaded.model is None and loaded.device == "cpu" and loaded.dtype == "float32"
    options = loaded.engine._session.get_session_options()
    assert options.optimized_model_filepath == ""  # nothing is written at run time
    assert (options.inter_op_num_threads, options.intra_op_num_threads) == (1, 0)


def test_handler_reports_the_onnxruntime_engine(ort_bundle, monkeypatch) -> None:
    fn = new_function(ort_bundle("bert"))
    response = fn.handle({"inputs": "great product"}, FakeContext())
    assert response["model"]["engine"] == "onnxruntime"
    assert fn.canary.ok and "create_session" in fn.init_ms


def test_engine_onnxruntime_on_a_torch_only_bundle_fails_at_init(tiny_bundle, monkeypatch) -> None:
    with pytest.raises(EngineError) as info:
        new_function(tiny_bundle("bert"), ENGINE="onnxruntime")
    assert str(info.value) == only_holds("torch", "onnxruntime")


def test_onnxruntime_engine_refuses_a_gpu_device(ort_bundle) -> None:
    with pytest.raises(EngineError) as info:
        load_model(ort_bundle("bert"), options=EngineOptions(device="cuda"))
    assert str(info.value) == (
        "ENGINE=onnxruntime runs on the CPU, but DEVICE='cuda'; set DEVICE=cpu (or auto), or ENGINE=torch"
    )


def test_text_generation_is_refused_with_the_fix(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "gen.bundle"
    with pytest.raises(SourceError) as info:
        build_bundle(tiny_model("llama", task="text-generation"), out, engine="onnxruntime")
    served = [t for t in OUTPUTS if t in TASKS]  # every task this runtime serves that has an ONNX export
    assert {"feature-extraction", "text-classification"} <= set(served) and "text-generation" not in served
    assert str(info.value) == (
        f"--engine onnxruntime serves {', '.join(served)}; task 'text-generation' is built for the onnxruntime-genai or "
        "torch engine. Build it without --engine (or with --engine onnxruntime-genai or torch)"
    )
    assert not out.exists()


def test_export_is_deterministic(tiny_model, ort_bundle, tmp_path: Path) -> None:
    import transformers

    from bundle_builder.onnx_export import export_onnx, externalize
    from bundle_builder.sources import read_source

    src = tiny_model("roberta")
    source = read_source(src)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(src))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(src)).eval()
    attention = model.config._attn_implementation
    first, second = export_onnx(model, source, tokenizer), export_onnx(model, source, tokenizer)
    assert first == second
    assert model.config._attn_implementation == attention  # traced with eager attention, then restored
    assert read_bundle(ort_bundle("roberta")).read_file(ONNX_FILE) == externalize(first)[0]

    again = tmp_path / "again.bundle"
    build_bundle(src, again, engine="onnxruntime", task="text-classification")
    assert again.read_bytes() == ort_bundle("roberta").read_bytes()
