"""The torch engine: the model built from the bundled config, weights assigned from the mmap.

Two implementations of the forward pass, recorded in `TorchEngine.implementation`:
    native        runtime/engines/native_encoder.py: plain PyTorch BERT/RoBERTa/DistilBERT for feature-extraction,
                  text-classification and zero-shot-classification; never imports transformers (its modeling code is
                  most of the cold start)
    transformers  the transformers model class: generation, other architectures, and any config the native encoder
                  does not serve

TORCH_IMPLEMENTATION (Settings.torch_implementation): auto (default: native when the bundle is served) | transformers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from runtime.bundle import Bundle
from runtime.engines import BuiltEngine, EngineError, EngineOptions, Phase
from runtime.errors import BundleCorruptError
from runtime.manifest import HEAD_PREFIX, Manifest

# manifest.auto_class -> the output of the transformers class that the tasks read (None: the task calls generate;
# several names: stacked on a new last axis, as one array)
OUTPUTS: dict[str, str | tuple[str, ...] | None] = {
    "AutoModel": "last_hidden_state",
    "AutoModelForSequenceClassification": "logits",
    "AutoModelForTokenClassification": "logits",  # (B, T, labels)
    "AutoModelForMaskedLM": "logits",  # (B, T, vocab)
    "AutoModelForQuestionAnswering": ("start_logits", "end_logits"),  # (B, T, 2)
    "AutoModelForCausalLM": None,
    "AutoModelForSeq2SeqLM": None,
}
AUTO_CLASSES = tuple(OUTPUTS)
# what the native encoder can serve (zero-shot: the same sequence classifier, fed NLI pairs)
NATIVE_TASKS = ("feature-extraction", "text-classification", "zero-shot-classification")


class TorchEngine:
    name = "torch"

    def __init__(
        self, model: Any, device: str, output: str | tuple[str, ...] | None, implementation: str = "transformers"
    ) -> None:
        self.model = model
        self.device = device
        self.implementation = implementation  # "native" | "transformers"
        self._output = output

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) int64 arrays -> last_hidden_state (B, T, H) or logits (B, L), float32 on the host."""
        import torch

        with torch.inference_mode():
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}
            out = self.model(**inputs)  # native: the tensor itself; transformers: a ModelOutput
            if not isinstance(out, torch.Tensor):
                if self._output is None:
                    raise TypeError(f"{type(out).__name__} is not a tensor and this engine names no output to read")
                if isinstance(self._output, tuple):
                    out = torch.stack([getattr(out, name) for name in self._output], dim=-1)
                else:
                    out = getattr(out, self._output)
            return out.float().cpu().numpy()

    def output_width(self) -> int | None:
        if self._output != "logits" or type(self.model).__name__.endswith("ForMaskedLM"):  # a masked LM's are its vocab
            return None
        # both implementations size the head from config.json and load its tensors strictly, shapes checked
        width = getattr(getattr(self.model, "config", self.model), "num_labels", None)
        return width if isinstance(width, int) else None


def build(bundle: Bundle, manifest: Manifest, options: EngineOptions, phase: Phase) -> BuiltEngine:
    """Build the model without random init and assign the memory-mapped tensors (cast only when dtypes differ).

    The device is options.device (DEVICE=auto: cuda when a GPU is visible); the compute dtype is float32 on a CPU
    whatever the storage (fp16 matmuls on a CPU are ~27x slower) and options.cuda_dtype on a GPU.

    The native encoder is tried first for NATIVE_TASKS (phases "import_torch",
    "load_weights": map and cast, "build_model": build and assign); otherwise, or with
    TORCH_IMPLEMENTATION=transformers, the transformers class is built (phases "import_torch",
    "import_transformers", "build_model", "load_weights"). A bundle the native encoder declines goes on to the
    transformers class with the same mapped (and cast) tensors.

    Raises:
        BundleCorruptError: the bundle names a model class this runtime does not build, or its tensors do not fit.
    """
    m = manifest
    with phase("import_torch"):
        import torch
    device = resolve_device(options.device, options.cuda_visible)
    dtype = options.cuda_dtype if device.startswith("cuda") else "float32"
    threads = options.threads
    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set: a second engine in the same process
            pass
    values = json.loads(bundle.read_file("config.json"))
    tensors = None
    output = OUTPUTS.get(m.auto_class)
    if options.torch_implementation == "auto" and m.task in NATIVE_TASKS:
        with phase("load_weights"):
            tensors = _in_dtype(_model_tensors(bundle), getattr(torch, dtype))
        with phase("build_model"):  # on the meta device, then the mapped tensors assigned in place
            from runtime.engines.native_encoder import build_native_encoder

            native = build_native_encoder(values, tensors, m.task, m.architecture)
            if native is not None:
                native.requires_grad_(False)
                if device != "cpu":
                    native.to(device)
        if native is not None:
            return BuiltEngine(TorchEngine(native, device, output, implementation="native"), device, dtype)
    with phase("import_transformers"):
        import transformers
        from transformers.initialization import no_init_weights
    with phase("build_model"):
        auto = m.auto_class
        if auto not in AUTO_CLASSES:
            raise BundleCorruptError(f"{bundle.path} names model class {auto!r}; this runtime builds {AUTO_CLASSES}")
        cls = _model_class(values.get("model_type", ""), m.architecture)
        with no_init_weights():
            if cls is not None:  # the class Auto*.from_config would pick, without the Auto mappings
                config = cls.config_class(**_without(values, "model_type"))
                model = cls._from_config(config, dtype=getattr(torch, dtype))
            else:
                config = transformers.AutoConfig.for_model(**values)
                model = getattr(transformers, auto).from_config(config, dtype=getattr(torch, dtype))
    with phase("load_weights"):
        if tensors is None:
            tensors = _in_dtype(_model_tensors(bundle), getattr(torch, dtype))
        try:
            model.load_state_dict(tensors, strict=True, assign=True)
        except RuntimeError as e:
            raise BundleCorruptError(f"{bundle.path}: tensors do not fit the bundled {auto} config: {e}") from None
        model.requires_grad_(False)
        model.eval()
        if device != "cpu":
            model.to(device)
    return BuiltEngine(TorchEngine(model, device, output, implementation="transformers"), device, dtype)


def resolve_device(requested: str, cuda_visible: bool) -> str:
    """DEVICE=auto -> cuda when a GPU is visible and torch can use it, else cpu. Raises EngineError when DEVICE names
    a CUDA device torch cannot use (on Lambda: always, it has no GPU)."""
    if requested == "cpu" or (requested == "auto" and not cuda_visible):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    count = torch.cuda.device_count() if available else 0
    index = int(requested.partition(":")[2] or 0)
    if index >= count:
        raise EngineError(
            f"DEVICE={requested!r} but torch sees {count} CUDA device(s) (torch.cuda.is_available() is {available}); "
            "set DEVICE=auto (a GPU when there is one) or DEVICE=cpu"
        )
    return requested


def _model_tensors(bundle: Bundle) -> dict[str, Any]:
    """The model's state dict: every bundle tensor except the heads applied after the model (HEAD_PREFIX)."""
    return {k: v for k, v in bundle.tensors().items() if not k.startswith(HEAD_PREFIX)}


def _in_dtype(tensors: dict[str, Any], target: Any) -> dict[str, Any]:
    """Floating tensors cast to the compute dtype; the others (and those already in it) stay views of the mmap."""
    return {k: (v.to(target) if v.is_floating_point() and v.dtype != target else v) for k, v in tensors.items()}


def _model_class(model_type: str, architecture: str) -> Any:
    """The class the builder used (manifest.architecture) from its own modeling module, or None to use Auto*.

    Importing `transformers.models.<type>.modeling_<type>` directly skips building the Auto mappings (~0.1 s of
    CPU at init). Only a class whose config class is the config.json's own model_type is taken, so the model and
    config built are exactly those Auto*.from_config would build.
    """
    import importlib

    module_name = model_type.replace("-", "_")
    if not module_name.isidentifier() or not architecture.isidentifier():
        return None
    try:
        module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    except ImportError:
        return None
    cls = getattr(module, architecture, None)
    config_class = getattr(cls, "config_class", None)
    return cls if getattr(config_class, "model_type", None) == model_type else None


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}
