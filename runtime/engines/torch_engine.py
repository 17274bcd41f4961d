"""The torch engine: the transformers model class built from the bundled config, weights assigned from the mmap."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from runtime.bundle import Bundle
from runtime.errors import BundleCorruptError

# manifest["auto_class"] -> the transformers Auto class that builds the model for the task
AUTO_CLASSES = ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")
OUTPUTS = {"feature-extraction": "last_hidden_state", "text-classification": "logits", "text-generation": None}


class TorchEngine:
    name = "torch"

    def __init__(self, model: Any, device: str, output: str | None) -> None:
        self.model = model
        self.device = device
        self._output = output

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) int64 arrays -> last_hidden_state (B, T, H) or logits (B, L), float32 on the host."""
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            out = getattr(self.model(**inputs), self._output)
            return out.float().cpu().numpy()


def build_torch_engine(
    bundle: Bundle, *, device: str, dtype: str, threads: int, phase: Callable[[str], AbstractContextManager[None]]
) -> TorchEngine:
    """Build the model without random init and assign the memory-mapped tensors (cast only when dtypes differ)."""
    m = bundle.manifest
    with phase("import_torch"):
        import torch
    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set: a second engine in the same process
            pass
    with phase("import_transformers"):
        import transformers
        from transformers.initialization import no_init_weights
    with phase("build_model"):
        config = transformers.AutoConfig.for_model(**json.loads(bundle.read_file("config.json")))
        auto = m["auto_class"]
        if auto not in AUTO_CLASSES:
            raise BundleCorruptError(f"{bundle.path} names model class {auto!r}; this runtime builds {AUTO_CLASSES}")
        with no_init_weights():
            model = getattr(transformers, auto).from_config(config, dtype=getattr(torch, dtype))
    with phase("load_weights"):
        target = getattr(torch, dtype)
        tensors = {k: (v.to(target) if v.is_floating_point() and v.dtype != target else v) for k, v in bundle.tensors().items()}
        try:
            model.load_state_dict(tensors, strict=True, assign=True)
        except RuntimeError as e:
            raise BundleCorruptError(f"{bundle.path}: tensors do not fit the bundled {auto} config: {e}") from None
        model.requires_grad_(False)
        model.eval()
        if device != "cpu":
            model.to(device)
    return TorchEngine(model, device, OUTPUTS[m["task"]])
