"""The onnxruntime-genai engine: a causal LM's decoder graph with its KV cache, built at build time by ONNX Runtime
GenAI's model builder (bundle_builder.genai_export). Imports neither torch nor transformers.

The bundle holds the graph with its weights inside (GENAI_MODEL, one aligned raw file) and the builder's
genai_config.json (GENAI_CONFIG). The graph is handed to ONNX Runtime GenAI as a view of the bundle's memory map
(`Config.add_model_data`): nothing is copied to disk. Only the config goes to a folder under /tmp, because GenAI
reads its config from a folder; the folder is removed once the model is built.

The engine decodes nothing by itself: `start(prompt)` runs the prompt through the graph and returns a `Sequence`
whose `logits()` are the next token's and whose `append(token)` runs one step. The decoding loop (greedy,
sampling, stop strings, the deadline) is runtime/tasks/decode_loop.py, so every choice it makes is the runtime's.
"""

from __future__ import annotations

import json
import mmap
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from runtime.bundle import Bundle
from runtime.engines import GENAI_CONFIG, GENAI_MODEL, BuiltEngine, EngineError, EngineOptions, Phase
from runtime.errors import BundleCorruptError
from runtime.manifest import Manifest


class Sequence:
    """One prompt being decoded: the graph's KV cache for the tokens fed so far."""

    def __init__(self, generator: Any) -> None:
        self._generator = generator

    def logits(self) -> np.ndarray:
        """(V,) float32 scores of the next token."""
        return np.asarray(self._generator.get_logits(), dtype=np.float32).reshape(-1)

    def all_logits(self) -> np.ndarray:
        """(T, V) float32 scores after each token of the last feed (the prompt's, right after start())."""
        out = np.asarray(self._generator.get_output("logits"), dtype=np.float32)
        return out.reshape(-1, out.shape[-1])

    def append(self, token: int) -> None:
        """Feed one token: one decoding step."""
        self._generator.append_tokens(np.array([token], dtype=np.int32))


class GenaiEngine:
    name = "onnxruntime-genai"
    implementation = "onnxruntime-genai"
    model = None  # no torch module behind this engine

    def __init__(self, og: Any, model: Any, keep: list[Any]) -> None:
        self._og = og
        self._model = model
        self._keep = keep  # the mapped graph bytes: GenAI holds a pointer into them, not a reference

    def start(self, prompt: list[int], max_new_tokens: int) -> Sequence:
        """Run the prompt through the graph (prefill) with room in the KV cache for `max_new_tokens` more."""
        params = self._og.GeneratorParams(self._model)
        # max_length sizes the cache; the runtime's loop decides when to stop, so GenAI's own search never ends early
        params.set_search_options(max_length=len(prompt) + max_new_tokens, min_length=0, do_sample=False)
        generator = self._og.Generator(self._model, params)
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))
        return Sequence(generator)

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        raise EngineError("the onnxruntime-genai engine decodes (start/append); it has no single forward pass")

    def output_width(self) -> int | None:
        return None


def build(bundle: Bundle, manifest: Manifest, options: EngineOptions, phase: Phase) -> BuiltEngine:
    """Build the GenAI model on the bundle's graph with `options.threads` intra-op threads (0: GenAI's default).

    Raises:
        EngineError: DEVICE asks for a GPU (this engine runs on the CPU).
        BundleCorruptError: the bundle lacks the graph or its config, or GenAI cannot load them.
    """
    if options.device not in ("auto", "cpu"):
        raise EngineError(
            f"ENGINE=onnxruntime-genai runs on the CPU, but DEVICE={options.device!r}; set DEVICE=cpu (or auto), "
            "or ENGINE=torch if the bundle holds torch weights"
        )
    for name in (GENAI_MODEL, GENAI_CONFIG):
        if not bundle.has_file(name):
            raise BundleCorruptError(f"{bundle.path} is built for onnxruntime-genai but has no {name}; rebuild it")
    with phase("import_onnxruntime_genai"):
        import onnxruntime_genai as og
    with phase("create_model"):
        config = json.loads(bundle.read_file(GENAI_CONFIG))
        session = config["model"]["decoder"].setdefault("session_options", {})
        if options.threads:
            session["intra_op_num_threads"] = options.threads
        session["inter_op_num_threads"] = 1  # one graph, run node after node: no second pool to wake
        session["log_severity_level"] = 3  # errors only
        graph = bundle.file_view(GENAI_MODEL)
        folder = tempfile.mkdtemp(prefix="genai-config-")  # GenAI reads its config from a folder: /tmp only
        try:
            Path(folder, "genai_config.json").write_text(json.dumps(config))
            og_config = og.Config(folder)
            og_config.add_model_data(config["model"]["decoder"]["filename"], graph)
            model = og.Model(og_config)
        except Exception as e:
            raise BundleCorruptError(
                f"{bundle.path}: onnxruntime-genai {og.__version__} cannot load {GENAI_MODEL} "
                f"({type(e).__name__}: {e}). Rebuild the bundle with this release's bundle_builder"
            ) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        # ONNX Runtime copied the weights into its own buffers: the mapped pages it read need not stay resident
        bundle.release_pages(GENAI_MODEL, mmap.MADV_DONTNEED)
    dtype = "int8" if manifest.dtype == "int8" else ("int4" if manifest.dtype == "int4" else "float32")
    return BuiltEngine(GenaiEngine(og, model, [graph]), device="cpu", dtype=dtype)
