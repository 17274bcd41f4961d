"""Bundle path -> ready model + tokenizer + task metadata, each load phase timed.

The model is built from its config with weight initialisation switched off, then the memory-mapped bundle
tensors are assigned in place (no random init, no copy when the stored dtype is the compute dtype).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.bundle import Bundle, read_bundle
from runtime.errors import BundleCorruptError
from runtime.tokenizer import TextTokenizer, TokenizerSpec

# manifest["auto_class"] -> the transformers Auto class that builds the model for the task
AUTO_CLASSES = ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")


@dataclass
class LoadedModel:
    bundle: Bundle
    model: Any  # a transformers PreTrainedModel in eval mode
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


class _Phases:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def __call__(self, name: str):
        phases = self

        class _Phase:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter_ns()

            def __exit__(self, *exc: object) -> None:
                phases.ms[name] = (time.perf_counter_ns() - self.t0) / 1e6

        return _Phase()


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
) -> LoadedModel:
    """Open a bundle and build its model and tokenizer.

    Args:
        path: the bundle file.
        device: "cpu" or "cuda[:N]".
        cuda_dtype: compute dtype on CUDA ("float16", "bfloat16" or "float32"); ignored on a CPU.
        verify_hash: check the content hash (see read_bundle).

    Returns:
        LoadedModel with `phases_ms` = {"read_bundle", "import_transformers", "build_model", "load_weights",
        "tokenizer"}.

    Raises:
        BundleError subclasses when the file is unusable or its tensors do not fit its config.
    """
    phase = _Phases()
    with phase("read_bundle"):
        bundle = read_bundle(Path(path), verify_hash=verify_hash)
    m = bundle.manifest
    with phase("import_transformers"):
        import torch
        import transformers
        from transformers.initialization import no_init_weights
    dtype = compute_dtype(m["dtype"], device, cuda_dtype)
    with phase("build_model"):
        config_dict = json.loads(bundle.read_file("config.json"))
        config = transformers.AutoConfig.for_model(**config_dict)
        auto = m["auto_class"]
        if auto not in AUTO_CLASSES:
            raise BundleCorruptError(f"{path} names model class {auto!r}; this runtime builds {AUTO_CLASSES}")
        with no_init_weights():
            model = getattr(transformers, auto).from_config(config, dtype=getattr(torch, dtype))
    with phase("load_weights"):
        target = getattr(torch, dtype)
        tensors = {
            k: (v.to(target) if v.is_floating_point() and v.dtype != target else v)
            for k, v in bundle.tensors().items()
        }
        try:
            model.load_state_dict(tensors, strict=True, assign=True)
        except RuntimeError as e:
            raise BundleCorruptError(f"{path}: tensors do not fit the bundled {auto} config: {e}") from None
        model.requires_grad_(False)
        model.eval()
        if device != "cpu":
            model.to(device)
    with phase("tokenizer"):
        tokenizer = TextTokenizer(bundle.read_file("tokenizer.json"), TokenizerSpec.from_manifest(m["tokenizer"]))
    return LoadedModel(bundle=bundle, model=model, tokenizer=tokenizer, device=device, dtype=dtype, phases_ms=phase.ms)
