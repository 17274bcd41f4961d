"""Which engine a bundle is built for: what each engine's bundle holds, and the choice by measurement.

    --engine torch        the weights as the model's own tensors (state_dict names)
    --engine onnxruntime  an ONNX graph exported, fused and proved at build time; its weights as bundle tensors
                          ("onnx/<initializer>") that ORT reads from the memory map; no torch copy
    --engine onnxruntime-genai
                          text-generation: a causal LM's decoder graph with its KV cache (bundle_builder.genai_export)
    --engine auto         (the default) torch and the ONNX engine for the task (onnxruntime for encoders,
                          onnxruntime-genai for causal LMs) are built and proved; each is timed on the golden inputs in
                          this process, one request at a time, and the fastest is written. The figures go into the
                          manifest ("engine_choice"), which `inspect` shows. A model no ONNX engine serves (an
                          encoder-decoder, a failed export or proof) is built for torch, and the reason is recorded

Each weight is stored once, for the engine the bundle is built for; the other engine cannot serve that bundle.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle_builder.errors import SourceError, VerifyError
from bundle_builder.quantize import Floors
from runtime.bundle import write_bundle
from runtime.engines import ONNX_FILE, ONNX_TENSOR_PREFIX

MEASURE_ROUNDS = 15  # timed passes over the golden inputs per engine, after WARMUP_ROUNDS
WARMUP_ROUNDS = 2
GENERATION_ROUNDS = 2  # text-generation: each golden answer is a whole greedy decode


@dataclass
class Contents:
    """What a bundle for one engine holds: its manifest, tensors and files."""

    manifest: dict[str, Any]
    tensors: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


def torch_contents(state: dict[str, Any], files: dict[str, bytes], manifest: dict[str, Any]) -> Contents:
    return Contents(
        {
            **manifest,
            "engine": "torch",
            "engines": ["torch"],
            "compiled": "none: eager PyTorch; nothing is compiled at build time or at cold start",
        },
        state,
        files,
    )


def onnx_contents(
    model: Any,
    source: Any,
    tokenizer: Any,
    *,
    dtype: str,
    head: dict[str, Any],
    files: dict[str, bytes],
    manifest: dict[str, Any],
    quantize: str | None = None,
    floors: Floors | None = None,
) -> Contents:
    """The ONNX graph (exported, fused, proved against torch) with its weights as bundle tensors.

    Args:
        head: tensors the task applies after the graph (sentence-transformers Dense layers), stored as they are.
        quantize: "int8": dynamic int8 weights, the scheme chosen by measured fidelity (bundle_builder.quantize).
        floors: the fidelity an int8 bundle must keep (default Floors()).

    Raises:
        SourceError: the task or dtype has no ONNX bundle, no exported graph reproduces the model, or no int8
            scheme meets the floors.
    """
    from bundle_builder.onnx_export import export_onnx, is_fused

    if dtype == "bfloat16":
        raise SourceError("--dtype bfloat16 is for the torch engine; an onnxruntime bundle stores float32 or float16")
    try:
        graph = export_onnx(model, source, tokenizer)
        # int8 schemes read the fused graph or the plain traced one (bundle_builder.quantize)
        graphs = {"plain": export_onnx(model, source, tokenizer, fuse=False)} if quantize == "int8" else {}
    except SourceError:
        raise
    except Exception as e:  # the exporter meets every architecture transformers has; say what broke, keep the model
        raise SourceError(f"the ONNX export failed ({type(e).__name__}: {e})") from e
    quantization = None
    if quantize == "int8":
        if is_fused(graph):
            graphs["fused"] = graph
        graph, quantization = _quantized(graphs, source.task, dtype, head, files, manifest, floors or Floors())
    return _onnx_bundle(graph, dtype, head, files, manifest, quantization)


def _onnx_bundle(
    graph: bytes,
    dtype: str,
    head: dict[str, Any],
    files: dict[str, bytes],
    manifest: dict[str, Any],
    quantization: dict[str, Any] | None = None,
) -> Contents:
    import onnx
    import onnxruntime
    import torch

    from bundle_builder.onnx_export import externalize

    small, weights = externalize(graph)
    target = getattr(torch, dtype)
    tensors: dict[str, Any] = {}
    for name, array in weights.items():
        t = torch.from_numpy(array.copy())
        tensors[ONNX_TENSOR_PREFIX + name] = t.to(target) if t.is_floating_point() else t
    tensors.update(head)
    out = {
        **manifest,
        "engine": "onnxruntime",
        "engines": ["onnxruntime"],
        "compiled": "ahead of time: ONNX graph exported and fused at build time (model.onnx); "
        "nothing is compiled at cold start",
        "versions": {**manifest["versions"], "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }
    if quantization is not None:
        out.update(
            dtype="int8",
            quantization=quantization,
            compiled="ahead of time: ONNX graph exported and quantized to int8 at build time (model.onnx); ORT fuses "
            "it in memory when the session opens; nothing is compiled at cold start",
        )
    return Contents(out, tensors, {**files, ONNX_FILE: small})


def _quantized(
    graphs: dict[str, bytes],
    task: str,
    dtype: str,
    head: dict[str, Any],
    files: dict[str, bytes],
    manifest: dict[str, Any],
    floors: Floors,
) -> tuple[bytes, dict[str, Any]]:
    """The int8 graph of the first scheme that meets the floors, measured through the runtime on bundles."""
    import torch

    from bundle_builder.quantize import FIDELITY_TEXTS, choose_scheme
    from runtime.predictor import Predictor
    from runtime.settings import Settings

    texts = [ex["input"] for ex in manifest["golden"]] + list(FIDELITY_TEXTS)
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:

        def outputs_of(candidate: bytes) -> list[Any]:
            contents = _onnx_bundle(candidate, dtype, head, files, manifest)
            path = Path(tmp) / "candidate.bundle"
            write_bundle(path, manifest=contents.manifest, tensors=contents.tensors, files=contents.files)
            settings = Settings(model_bundle=str(path), device="cpu", canary=False, num_threads=torch.get_num_threads())
            predictor = Predictor.load(settings, verify_hash=False)
            return [predictor.predict([text], {}).outputs[0] for text in texts]

        _, quantized, record = choose_scheme(task, graphs, texts, outputs_of, floors)
    return quantized, record


def choose(candidates: dict[str, Contents], out: Path, *, why_torch_only: str | None) -> dict[str, Any]:
    """Time each candidate on its golden inputs and pick the fastest; every engine but torch must first prove itself.

    Returns:
        The manifest's "engine_choice": {"chosen", "reason"} and, when several were timed, "p50_ms" per engine and
        "measured_on" (inputs, threads, machine).
    """
    from bundle_builder.verify import verify_bundle

    if set(candidates) == {"torch"}:
        return {"chosen": "torch", "reason": why_torch_only or "only the torch engine serves this model"}
    with tempfile.TemporaryDirectory(prefix="engine-choice-", dir=out.parent) as tmp:
        paths = {}
        for name, contents in candidates.items():
            paths[name] = Path(tmp) / f"{name}.bundle"
            write_bundle(paths[name], manifest=contents.manifest, tensors=contents.tensors, files=contents.files)
        failed = {}
        for name in [n for n in candidates if n != "torch"]:
            try:
                verify_bundle(paths[name])
            except VerifyError as e:
                failed[name] = f"the {name} engine did not reproduce the golden examples: {e}"
        if set(candidates) - set(failed) == {"torch"}:
            return {"chosen": "torch", "reason": "; ".join(failed.values())}
        generation = next(iter(candidates.values())).manifest["task"] == "text-generation"
        p50: dict[str, float] = {}
        for name in sorted(set(candidates) - set(failed), key=lambda n: n != "torch"):  # torch first: ORT's spinning
            p50[name], inputs, threads, rounds = _p50_ms(paths[name], generation)  # threads must not slow it
    chosen = min(p50, key=lambda name: p50[name])
    others = ", ".join(f"{name} in {p50[name]:.2f} ms" for name in p50 if name != chosen)
    return {
        "chosen": chosen,
        "p50_ms": p50,
        "measured_on": f"{inputs} golden inputs x {rounds}, one request at a time, {threads} threads, "
        f"{platform.machine()}",
        "reason": f"{chosen} answered in {p50[chosen]:.2f} ms at p50, {others}",
    }


def _p50_ms(path: Path, generation: bool = False) -> tuple[float, int, int, int]:
    """p50 of one predict() per golden input, through the runtime's own Predictor on its default engine; fewer
    rounds for generation, whose golden answers take a whole decode each."""
    import torch

    from runtime.predictor import Predictor
    from runtime.settings import Settings

    threads = torch.get_num_threads()
    settings = Settings(model_bundle=str(path), device="cpu", canary=False, num_threads=threads)
    predictor = Predictor.load(settings, verify_hash=False)
    examples = predictor.model.manifest.golden
    warmup, rounds = (1, GENERATION_ROUNDS) if generation else (WARMUP_ROUNDS, MEASURE_ROUNDS)
    times: list[int] = []
    for round_ in range(warmup + rounds):
        for ex in examples:
            t0 = time.perf_counter_ns()
            predictor.predict([ex.input], ex.parameters)
            if round_ >= warmup:
                times.append(time.perf_counter_ns() - t0)
    return round(statistics.median(times) / 1e6, 3), len(examples), threads, rounds
