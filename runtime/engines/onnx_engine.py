"""The onnxruntime engine: the bundle's fused ONNX graph on ORT's CPU provider. Imports neither torch nor transformers.

The graph was fused offline by the builder (bundle_builder.onnx_export) with portable contrib ops only; the session
adds ORT's own machine-specific optimisations in memory when it opens, and writes nothing to disk. The graph's weights
are bundle tensors, passed to the session from the memory map (ONNX external initializers): stored once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.bundle import Bundle
from runtime.engines import ONNX_FILE, ONNX_TENSOR_PREFIX, BuiltEngine, EngineError, EngineOptions, Phase
from runtime.errors import BundleCorruptError
from runtime.manifest import Manifest


class OnnxEngine:
    name = "onnxruntime"
    implementation = "onnxruntime"
    model = None  # no torch module behind this engine

    def __init__(self, session: Any, initializers: list[Any] | None = None) -> None:
        self._session = session
        self._initializers = initializers  # ORT reads the weights from these buffers: they live as long as the session
        self._inputs = [i.name for i in session.get_inputs()]
        self._outputs = [session.get_outputs()[0].name]

    def run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """(B, T) int64 arrays -> last_hidden_state (B, T, H) or logits (B, L), float32.

        Only the graph's inputs are fed: a tokenizer may produce token_type_ids that the model does not take.
        """
        return self._session.run(self._outputs, {name: batch[name] for name in self._inputs})[0]

    def output_width(self) -> int | None:
        shape = self._session.get_outputs()[0].shape  # logits: ["batch", L]; hidden states: 3 axes
        return shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) else None


def _initializers(bundle: Bundle, ort: Any) -> tuple[list[str], list[Any]]:
    """The graph's weights, stored once as bundle tensors ("onnx/<initializer name>") and handed to ORT as views of
    the memory map (no copy, no file written). fp16-stored weights are widened to the graph's fp32 (a copy)."""
    names: list[str] = []
    values: list[Any] = []
    for tensor in bundle.tensor_names:
        if not tensor.startswith(ONNX_TENSOR_PREFIX):
            continue
        array = bundle.array(tensor, copy=False)
        if array.dtype == np.float16:
            array = array.astype(np.float32)
        names.append(tensor.removeprefix(ONNX_TENSOR_PREFIX))
        values.append(ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array)))
    return names, values


def build(bundle: Bundle, manifest: Manifest, options: EngineOptions, phase: Phase) -> BuiltEngine:
    """Open an ORT session on the bundle's model.onnx (from memory) with `options.threads` intra-op threads.

    Raises:
        EngineError: DEVICE asks for a GPU (this engine runs on the CPU).
        BundleCorruptError: ORT cannot load the graph, or the graph wants an input the bundled tokenizer never makes.
    """
    if options.device not in ("auto", "cpu"):
        raise EngineError(
            f"ENGINE=onnxruntime runs on the CPU, but DEVICE={options.device!r}; set DEVICE=cpu (or auto), or ENGINE=torch"
        )
    threads = options.threads
    with phase("import_onnxruntime"):
        import onnxruntime as ort
    with phase("create_session"):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one graph, run node after node: no second pool to wake
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The heavy fusions are already in the graph; ENABLE_ALL adds the layout and kernel choices for this CPU.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        graph = bundle.read_file(ONNX_FILE)
        names, values = _initializers(bundle, ort)
        if names:
            opts.add_external_initializers(names, values)
        try:
            session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BundleCorruptError(
                f"{bundle.path}: onnxruntime {ort.__version__} cannot load {ONNX_FILE} ({type(e).__name__}: {e}). "
                "Rebuild the bundle with this release's bundle_builder, or serve it with ENGINE=torch"
            ) from None
        # ORT's Python wrapper keeps the model bytes (~ the weights) alive only to re-create the session when the
        # providers change, which this engine never does: let them go.
        if getattr(session, "_model_bytes", None) is not None:
            session._model_bytes = None
        del graph
    produced = set(manifest.tokenizer.model_input_names)
    missing = [i.name for i in session.get_inputs() if i.name not in produced]
    if missing:
        raise BundleCorruptError(
            f"{bundle.path}: {ONNX_FILE} takes inputs {missing} that the bundled tokenizer does not produce "
            f"(it produces {sorted(produced)}); rebuild the bundle"
        )
    # int8 bundles hold dynamically quantized weights: MatMuls run in int8, the rest in fp32
    dtype = "int8" if manifest.dtype == "int8" else "float32"
    return BuiltEngine(OnnxEngine(session, values), device="cpu", dtype=dtype)
