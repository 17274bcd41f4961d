"""Bundle path -> ready engine + tokenizer + task metadata, each load phase timed.

The torch engine builds the model from its config with weight initialisation switched off, then assigns the
memory-mapped bundle tensors in place (no random init, no copy when the stored dtype is the compute dtype).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.bundle import Bundle, read_bundle
from runtime.engines import EngineError, choose_engine
from runtime.tokenizer import TextTokenizer, TokenizerSpec

ONNX_FILE = "model.onnx"


@dataclass
class LoadedModel:
    bundle: Bundle
    engine: Any  # see runtime.engines
    tokenizer: TextTokenizer
    device: str
    dtype: str
    phases_ms: dict[str, float] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.bundle.manifest

    @property
    def task(self) -> str:
        return self.bundle.manifest["task"]

    @property
    def model(self) -> Any:
        """The torch module (torch engine), or None."""
        return self.engine.model


def compute_dtype(stored: str, device: str, cuda_dtype: str = "float16") -> str:
    """fp32 on a CPU whatever the storage (fp16 matmuls on a CPU are ~27x slower); the chosen half type on CUDA."""
    if device.startswith("cuda"):
        return cuda_dtype
    return "float32"


def load_model(
    path: str | os.PathLike[str],
    *,
    device: str = "cpu",
    cuda_dtype: str = "float16",
    verify_hash: bool = True,
    engine: str = "auto",
    threads: int = 0,
) -> LoadedModel:
    """Open a bundle and build its engine and tokenizer.

    Args:
        path: the bundle file.
        device: "cpu", "cuda[:N]" or "auto" (cuda when a GPU is visible; always cpu for the onnxruntime engine).
        cuda_dtype: compute dtype on CUDA ("float16", "bfloat16" or "float32"); ignored on a CPU.
        verify_hash: check the content hash (see read_bundle).
        engine: "auto" (the bundle's own), "torch" or "onnxruntime".
        threads: intra-op threads for the engine; 0 leaves the library default.

    Returns:
        LoadedModel; `phases_ms` times "read_bundle", the engine's phases (torch: "import_torch", "load_weights",
        "build_model", plus "import_transformers" on the transformers implementation; onnxruntime:
        "import_onnxruntime", "create_session") and "tokenizer".

    Raises:
        BundleError subclasses when the file is unusable or the engine cannot serve it (EngineError: the engine
        cannot serve the bundle or the device).
    """
    phases: dict[str, float] = {}

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            phases[name] = phases.get(name, 0.0) + (time.perf_counter_ns() - t0) / 1e6

    with phase("read_bundle"):
        bundle = read_bundle(Path(path), verify_hash=verify_hash)
    m = bundle.manifest
    name = choose_engine(engine, m, bundle.has_file(ONNX_FILE))
    if name == "onnxruntime":
        from runtime.engines.onnx_engine import build_onnx_engine

        if device not in ("auto", "cpu"):
            raise EngineError(
                f"ENGINE=onnxruntime runs on the CPU, but DEVICE={device!r}; set DEVICE=cpu (or auto), or ENGINE=torch"
            )
        device, dtype = "cpu", "float32"
        built = build_onnx_engine(bundle, threads=threads, phase=phase)
    else:
        from runtime.engines.torch_engine import build_torch_engine

        device = resolve_device(device)
        dtype = compute_dtype(m["dtype"], device, cuda_dtype)
        built = build_torch_engine(bundle, device=device, dtype=dtype, threads=threads, phase=phase)
    with phase("tokenizer"):
        tokenizer = TextTokenizer(bundle.read_file("tokenizer.json"), TokenizerSpec.from_manifest(m["tokenizer"]))
    return LoadedModel(bundle=bundle, engine=built, tokenizer=tokenizer, device=device, dtype=dtype, phases_ms=phases)


def resolve_device(requested: str) -> str:
    """DEVICE=auto -> cuda when a GPU is visible (torch is imported only to ask), else cpu."""
    if requested != "auto":
        return requested
    if not os.path.exists("/dev/nvidia0") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
