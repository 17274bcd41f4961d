"""Engines run the model's forward pass: token ids in (numpy), hidden states or logits out (numpy).

    torch         PyTorch under torch.inference_mode: the native encoder or transformers' class (every task)
    onnxruntime   an ONNX graph exported and optimised at build time (encoder tasks; no torch at run time)
    onnxruntime-genai
                  a causal LM's decoder graph with its KV cache, built by ONNX Runtime GenAI's model builder at build
                  time (text-generation; no torch at run time); it decodes step by step (start/append), not `run`

An engine module offers `build(bundle, manifest, options, phase) -> BuiltEngine`; it is imported only when chosen,
so a bundle served by onnxruntime never imports torch. Adding an engine is one module and one line in ENGINES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from runtime.errors import BundleError

if TYPE_CHECKING:
    from runtime.bundle import Bundle
    from runtime.manifest import Manifest

ONNX_FILE = "model.onnx"  # the bundle file holding the ONNX graph (written by bundle_builder --engine onnxruntime)
ONNX_TENSOR_PREFIX = "onnx/"  # bundle tensors that are the ONNX graph's initializers, by initializer name
GENAI_MODEL = "genai/model.onnx"  # the onnxruntime-genai decoder graph, weights inside (bundle_builder.genai_export)
GENAI_CONFIG = "genai/genai_config.json"  # ONNX Runtime GenAI's config of that graph, as its builder wrote it

# engine name -> the module that builds it
ENGINES = {
    "torch": "runtime.engines.torch_engine",
    "onnxruntime": "runtime.engines.onnx_engine",
    "onnxruntime-genai": "runtime.engines.genai_engine",
}

Phase = Callable[[str], AbstractContextManager[None]]


class EngineError(BundleError):
    """The requested engine cannot serve this bundle (fatal at init)."""


class Engine(Protocol):
    name: str
    implementation: str  # how the forward pass runs: "native" | "transformers" (torch), "onnxruntime"
    model: Any  # the torch module behind the engine, or None

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) int64 arrays -> last_hidden_state (B, T, H) or logits (B, L), float32 on the host."""
        ...

    def output_width(self) -> int | None:
        """L of logits (B, L), as the loaded weights or graph fix it (one per label); None for hidden states."""
        ...


@dataclass(frozen=True)
class EngineOptions:
    """What the function's settings say about running the model."""

    device: str = "auto"  # "auto" | "cpu" | "cuda[:N]"
    cuda_dtype: str = "float16"  # compute dtype on CUDA; a CPU always computes in float32
    threads: int = 0  # intra-op threads; 0 leaves the library default
    torch_implementation: str = "auto"  # "auto" (native encoder when it serves the bundle) | "transformers"
    cuda_visible: bool = False  # a GPU may be present (DEVICE=auto asks torch only then)


@dataclass(frozen=True)
class BuiltEngine:
    engine: Engine
    device: str  # where it computes: "cpu" or "cuda[:N]"
    dtype: str  # what it computes in


def bundle_engines(manifest: Manifest, has_onnx: bool) -> tuple[str, ...]:
    """The engines whose weights a bundle holds (bundles older than the manifest's "engines" field: torch, plus
    onnxruntime when they carry a graph)."""
    if manifest.engines:
        return manifest.engines
    return ("torch", "onnxruntime") if has_onnx else ("torch",)


def choose_engine(requested: str, manifest: Manifest, has_onnx: bool) -> str:
    """ENGINE=auto -> the engine the bundle was built for; an explicit choice must be one the bundle holds."""
    name = manifest.engine if requested == "auto" else requested
    if name not in ENGINES:
        raise EngineError(f"ENGINE={requested!r} is not an engine; choose auto, {', '.join(ENGINES)}")
    held = bundle_engines(manifest, has_onnx)
    if name not in held:
        raise EngineError(
            f"ENGINE={name} but this bundle holds the weights for {', '.join(held)} only (each weight is stored once, "
            f"for the engine it was built for); unset ENGINE, or rebuild it with `bundle_builder build --engine {name}`"
        )
    return name


def build_engine(name: str, bundle: Bundle, manifest: Manifest, options: EngineOptions, phase: Phase) -> BuiltEngine:
    """Import the engine's module and build it on the bundle. Raises BundleError subclasses."""
    module = importlib.import_module(ENGINES[name])
    built: BuiltEngine = module.build(bundle, manifest, options, phase)
    return built
