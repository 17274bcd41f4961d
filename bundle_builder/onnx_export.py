"""Build time: a transformers encoder -> one ONNX graph for the onnxruntime engine, fused offline and proved.

    1. trace   torch.onnx.export (the TorchScript exporter: the dynamo one needs onnxscript), opset 17, eager
               attention (the pattern ORT's fusions recognise), dynamic batch and sequence axes
    2. fuse    onnxruntime.transformers.optimizer with opt_level=0: Python pattern fusions only (Attention,
               EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). The fused ops are com.microsoft contrib
               ops that every CPU build of ORT runs; nothing is specialised to the build machine's CPU, unlike a
               graph saved after ORT_ENABLE_ALL (which may hold layout- and instruction-set-specific nodes)
    3. prove   ORT on the fused graph must reproduce the torch model on padded batches of shapes it was not
               traced with; if the fused graph drifts the plain one is kept, and if that drifts too we refuse
    4. pin     doc strings and producer fields are fixed, so the same model always gives the same bytes

The runtime applies its own (in-memory, machine-specific) graph optimisations when it opens the session.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import numpy as np

from bundle_builder.errors import SourceError
from runtime.tasks import TASKS

OPSET = 17
# task -> the model output the graph returns (several: stacked on a new last axis, as the torch engine does)
OUTPUTS: dict[str, str | tuple[str, ...]] = {
    "feature-extraction": "last_hidden_state",
    "text-classification": "logits",
    "zero-shot-classification": "logits",
    "token-classification": "logits",  # (B, T, labels)
    "fill-mask": "logits",  # (B, T, vocab)
    "question-answering": ("start_logits", "end_logits"),  # (B, T, 2)
}
PER_TOKEN = ("feature-extraction", "token-classification", "fill-mask", "question-answering")  # outputs (B, T, ...)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # graph input order: fixed, so bytes are stable
MAX_ABS_DIFF = 1e-4  # fp32 ORT vs fp32 torch, scaled by the output's magnitude when that is above 1
_TRACE_TEXTS = ["the quick brown fox jumps over the lazy dog", "hello world"]
_CHECK_TEXTS = [
    "ok",
    "serverless inference keeps costs low for spiky traffic",
    "the parcel arrived broken and nobody answered my emails, so i asked again",
]
_CHECK_TOKENS = 32  # short: the check proves shapes and masking, not long-sequence numerics


def export_onnx(model: Any, source: Any, tokenizer: Any, *, fuse: bool = True) -> bytes:
    """The model's forward pass as a fused, verified, deterministic ONNX graph.

    Args:
        fuse: False keeps the plain traced graph (standard ops only: what the int8 quantizer reads).
        model: the fp32 transformers model (AutoModel or AutoModelForSequenceClassification), in eval mode.
        source: the bundle_builder Source (its task picks the output).
        tokenizer: the model's tokenizer; the graph takes the inputs it produces that the model accepts.

    Returns:
        The serialised ModelProto: inputs input_ids / attention_mask / token_type_ids as (B, T) int64, one float32
        output: last_hidden_state (B, T, H), logits (B, L) or (B, T, L), or the stacked span logits (B, T, 2).

    Raises:
        SourceError: the task has no ONNX export (text-generation), or no exported graph reproduces the model.
    """
    output = OUTPUTS.get(source.task)
    if output is None:  # text-generation: causal LMs have their own ONNX engine (bundle_builder.genai_export)
        raise SourceError(
            f"--engine onnxruntime serves {', '.join(t for t in OUTPUTS if t in TASKS)}; task {source.task!r} is built "
            "for the onnxruntime-genai or torch engine. Build it without --engine (or with --engine onnxruntime-genai or "
            "torch)"
        )
    per_token = source.task in PER_TOKEN
    names = input_names(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trace = _batch(tokenizer, _TRACE_TEXTS, names, pad_id)
    checks = [_batch(tokenizer, _CHECK_TEXTS, names, pad_id), _batch(tokenizer, _CHECK_TEXTS[1:2], names, pad_id)]
    expected = [_torch_forward(model, b, output) for b in checks]

    plain = _trace(model, names, output, trace, per_token)
    fused, stats = _fuse(plain, model.config) if fuse else (None, {})
    worst: dict[str, float] = {"fused": float("nan")}
    for label, graph in (("fused", fused), ("plain", plain)):
        if graph is None:
            continue
        worst[label] = _max_rel_diff(graph, checks, expected, per_token)
        if worst[label] <= MAX_ABS_DIFF:
            if label == "fused":
                _note(graph, "fused", ",".join(f"{k}:{v}" for k, v in sorted(stats.items()) if v))
            return _pin(graph)
    raise SourceError(
        f"the ONNX export of this {source.model_type} model does not reproduce it: largest difference "
        f"{worst['plain']:.3g} (fused graph {worst['fused']:.3g}, limit {MAX_ABS_DIFF:g}). Build it with --engine torch"
    )


def input_names(model: Any, tokenizer: Any) -> list[str]:
    """The inputs the tokenizer produces that the model's forward accepts, in INPUTS order."""
    accepted = inspect.signature(model.forward).parameters
    produced = set(tokenizer.model_input_names)
    return [n for n in INPUTS if n in produced and n in accepted]


def _batch(tokenizer: Any, texts: list[str], names: list[str], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded (B, T) int64 arrays, padded by hand so a tokenizer without padding settings still works."""
    enc = [tokenizer(t, truncation=True, max_length=_CHECK_TOKENS) for t in texts]
    width = max(len(e["input_ids"]) for e in enc)
    out: dict[str, np.ndarray] = {}
    for name in names:
        fill = {"input_ids": pad_id}.get(name, 0)
        rows = [list(e[name]) if name in e else [0] * len(e["input_ids"]) for e in enc]
        out[name] = np.array([r + [fill] * (width - len(r)) for r in rows], dtype=np.int64)
    return out


def _torch_forward(model: Any, batch: dict[str, np.ndarray], output: str | tuple[str, ...]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return _read(model(**{k: torch.from_numpy(v) for k, v in batch.items()}), output).float().numpy()


def _read(out: Any, output: str | tuple[str, ...]) -> Any:
    """The named output of a transformers ModelOutput; several names stacked on a new last axis."""
    import torch

    if isinstance(output, tuple):
        return torch.stack([getattr(out, name) for name in output], dim=-1)
    return getattr(out, output)


def output_name(output: str | tuple[str, ...]) -> str:
    """The graph output's name: the model output's, or "span_logits" for the stacked start and end logits."""
    return output if isinstance(output, str) else "span_logits"


def _trace(
    model: Any, names: list[str], output: str | tuple[str, ...], example: dict[str, np.ndarray], per_token: bool
) -> Any:
    """torch.onnx.export with eager attention (restored afterwards) -> ModelProto."""
    import io

    import onnx
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return _read(self.model(**dict(zip(names, tensors))), output)

    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic[output_name(output)] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
    previous = model.config._attn_implementation
    buf = io.BytesIO()
    try:
        model.set_attn_implementation("eager")
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape arithmetic that is the same for any shape
            torch.onnx.export(
                Forward().eval(),
                tuple(torch.from_numpy(example[n]) for n in names),
                buf,  # type: ignore[arg-type]  # typed as a path; the dynamo=False exporter also takes a file object
                input_names=names,
                output_names=[output_name(output)],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.set_attn_implementation(previous)
    return onnx.load_from_string(buf.getvalue())


def _fuse(graph: Any, config: Any) -> tuple[Any, dict[str, int]]:
    """ORT's transformer fusions, Python only (opt_level=0): portable contrib ops, no machine-specific nodes."""
    import copy

    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions

    options = FusionOptions("bert")
    options.attention_mask_format = AttentionMaskFormat.AttentionMask  # the raw (B, T) mask: any padding is right
    log = logging.getLogger("onnxruntime.transformers")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        fused = optimizer.optimize_model(
            copy.deepcopy(graph),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            optimization_options=options,
            opt_level=0,
            use_gpu=False,
        )
        stats = fused.get_fused_operator_statistics()
    finally:
        log.setLevel(level)
    fused.topological_sort()
    return fused.model, stats


def _max_rel_diff(
    graph: Any, batches: list[dict[str, np.ndarray]], expected: list[np.ndarray], per_token: bool
) -> float:
    """Largest |ORT - torch| over real tokens, divided by the output's magnitude when that is above 1."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception:
        return float("inf")
    worst = 0.0
    for batch, ref in zip(batches, expected):
        got = session.run(None, batch)[0]
        diff = np.abs(got - ref)
        if per_token:  # padded positions are never read (pooled, labelled, or spanned): their values are not compared
            diff = diff * batch["attention_mask"][..., None]
        worst = max(worst, float(diff.max()) / max(1.0, float(np.abs(ref).max())))
    return worst


def _note(graph: Any, key: str, value: str) -> None:
    entry = graph.metadata_props.add()
    entry.key, entry.value = key, value


def _pin(graph: Any) -> bytes:
    """Serialise with every field that names the build (doc strings, producer) fixed."""
    graph.doc_string = ""
    graph.graph.doc_string = ""
    for node in graph.graph.node:
        node.doc_string = ""
    graph.producer_name = "bundle_builder.onnx_export"
    graph.producer_version = ""
    return graph.SerializeToString()


def is_fused(graph_bytes: bytes) -> bool:
    """Whether export_onnx kept the fused graph (it notes the fusions it made); False for the plain one."""
    import onnx

    return any(p.key == "fused" and p.value for p in onnx.load_from_string(graph_bytes).metadata_props)


def externalize(graph_bytes: bytes, *, min_bytes: int = 1024) -> tuple[bytes, dict[str, np.ndarray]]:
    """Take the graph's float (and 8-bit) weights out of it, so that the bundle stores them once, as its own aligned tensors.

    Returns:
        (the graph with each float initializer of at least `min_bytes` marked as external data, named but empty;
        initializer name -> its array). The runtime hands the arrays to ORT from the bundle's memory map
        (SessionOptions.add_external_initializers); the "location" it names is never opened.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(graph_bytes)
    weights: dict[str, np.ndarray] = {}
    for init in graph.graph.initializer:
        if init.data_type not in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.INT8,
            onnx.TensorProto.UINT8,
        ):
            continue
        array = numpy_helper.to_array(init)
        if array.nbytes < min_bytes:
            continue
        weights[init.name] = array
        for field in ("raw_data", "float_data", "int32_data"):  # int8 values live in raw_data or int32_data
            init.ClearField(field)
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", "bundle"), ("length", str(array.nbytes))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
    return graph.SerializeToString(), weights
