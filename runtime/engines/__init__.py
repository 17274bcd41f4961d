"""Engines run the model's forward pass: token ids in (numpy), hidden states or logits out (numpy).

    torch         transformers' model class on PyTorch, under torch.inference_mode (every task; the default)
    onnxruntime   an ONNX graph exported and optimised at build time (encoder tasks; opt-in, no torch at run time)

Each engine offers `name`, `run(batch) -> np.ndarray`, and `model` (the torch module, or None).
"""

from __future__ import annotations

from typing import Any

from runtime.errors import BundleError

ENGINES = ("torch", "onnxruntime")


class EngineError(BundleError):
    """The requested engine cannot serve this bundle (fatal at init)."""


def choose_engine(requested: str, manifest: dict[str, Any], has_onnx: bool) -> str:
    """ENGINE=auto -> the engine the bundle was built for; an explicit choice must be servable."""
    name = manifest.get("engine", "torch") if requested == "auto" else requested
    if name not in ENGINES:
        raise EngineError(f"ENGINE={requested!r} is not an engine; choose auto, {', '.join(ENGINES)}")
    if name == "onnxruntime" and not has_onnx:
        raise EngineError(
            "ENGINE=onnxruntime but this bundle has no ONNX graph; rebuild it with `bundle_builder build --engine onnxruntime`"
        )
    return name
