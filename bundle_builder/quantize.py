"""`--quantize int8`: ONNX Runtime dynamic int8 weights, with the scheme chosen by measured fidelity.

Schemes are tried from the smallest to the most faithful; the first whose outputs stay within the floors on the
golden inputs plus a fixed set of varied texts is kept:

    all-per-tensor       plain graph: every op ORT can quantize (MatMul, Gather: embeddings too), one scale per tensor
    all-per-channel      the same, one scale per output channel
    fused-u8-per-channel fused graph (Attention, SkipLayerNormalization, ...): MatMul and Attention weights, uint8,
                         one scale per output channel. The fastest that keeps MiniLM within the floors: QAttention
                         and MatMulInteger kernels; uint8 weights run ORT's u8u8 kernel on AVX2, whose u8s8 kernel
                         (int8 weights) can saturate, and lose more (MiniLM mean cosine 0.988 with int8, 0.991 uint8)
    fused-u8-per-channel-fp32-first-down-projection
                         the same, with the first feed-forward down-projection kept fp32
    matmul-per-channel   plain graph: MatMul weights only, int8, one scale per output channel
    matmul-per-channel-fp32-down-projections
                         the same, but the feed-forward down-projections (weight (k, n) with k > n) stay fp32:
                         their inputs carry the largest activations, and int8 loses most there

Plain schemes read the traced graph (standard ops) and ORT fuses around the quantized ops when the session opens;
fused schemes read the graph after ORT's Python fusions (shapes inferred with ORT's symbolic shape inference, which
knows the contrib ops), since quantizing first leaves the attention unfused. A model the fuser does not fuse is
measured on the plain schemes only.

Fidelity is measured through the runtime itself (the int8 bundle's Predictor against the fp32 one's), as a user's
requests would see it: embeddings min and mean cosine, classification top-1 agreement and largest score difference.
Every scheme tried is recorded in the manifest ("quantization"), which `inspect` shows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bundle_builder.errors import SourceError

# scheme -> quantize_dynamic options, plus "graph" (which export it reads) and "keep_down_projections" (how many
# feed-forward down-projections stay fp32, from the first; None: all of them)
SCHEMES: dict[str, dict[str, Any]] = {
    "all-per-tensor": {"graph": "plain", "op_types_to_quantize": None, "per_channel": False},
    "all-per-channel": {"graph": "plain", "op_types_to_quantize": None, "per_channel": True},
    "fused-u8-per-channel": {
        "graph": "fused",
        "op_types_to_quantize": ["MatMul", "Attention"],
        "per_channel": True,
        "weight_type": "QUInt8",
    },
    "fused-u8-per-channel-fp32-first-down-projection": {
        "graph": "fused",
        "op_types_to_quantize": ["MatMul", "Attention"],
        "per_channel": True,
        "weight_type": "QUInt8",
        "keep_down_projections": 1,
    },
    "matmul-per-channel": {"graph": "plain", "op_types_to_quantize": ["MatMul"], "per_channel": True},
    "matmul-per-channel-fp32-down-projections": {
        "graph": "plain",
        "op_types_to_quantize": ["MatMul"],
        "per_channel": True,
        "keep_down_projections": None,
    },
}

# A fixed, varied set: short and long, punctuation, numbers, accents, CJK, emoji, code, negation.
FIDELITY_TEXTS = (
    "ok",
    "Thanks!",
    "The battery lasts all day and the screen is gorgeous.",
    "I waited an hour and the support team never answered my question.",
    "This is not bad at all, actually.",
    "Refund my order #48213 now, it arrived broken.",
    "Le service client était très aimable et rapide.",
    "Der Akku hält nicht einmal einen halben Tag.",
    "東京の天気は明日晴れるでしょう。",
    "Great phone 👍 but the camera 📷 is meh.",
    "def add(a, b): return a + b",
    "Serverless inference keeps costs low for spiky traffic, but cold starts can hurt tail latency.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "The quarterly report shows revenue of $4.2M, up 12% year over year, driven by subscriptions.",
    "no",
    "Absolutely terrible experience, would never recommend this to anyone I know.",
    "The meeting is moved to 3 pm on Thursday; please update the calendar invite accordingly.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "lol that was hilarious 😂😂",
    "Can you help me reset my password? I no longer have access to the email on my account.",
    "   spaces   around   words   ",
    "A long sentence " * 20,
    "¿Dónde está la estación de tren más cercana?",
)


@dataclass(frozen=True)
class Floors:
    """What an int8 bundle must keep of the fp32 model's outputs (the user can lower or raise them)."""

    min_cosine: float = 0.95  # embeddings: the worst text
    mean_cosine: float = 0.99  # embeddings: on average
    top1_agreement: float = 0.99  # classification: share of texts with the same top label
    token_top1: float = 0.95  # generation: share of next tokens the same, teacher-forced (bundle_builder.genai_export)


def quantize_graph(graph: bytes, scheme: str) -> bytes:
    """The fp32 graph (the export SCHEMES[scheme]["graph"] names) with dynamically quantized 8-bit weights
    (activations stay fp32, quantized per call)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = dict(SCHEMES[scheme])
    fused = options.pop("graph") == "fused"
    weight_type = getattr(QuantType, options.pop("weight_type", "QInt8"))
    model = onnx.load_from_string(graph)
    if "keep_down_projections" in options:
        keep = options.pop("keep_down_projections")
        options["nodes_to_exclude"] = _down_projections(model)[:keep]
    if fused:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_dynamic(
            model,
            out,
            weight_type=weight_type,
            # weights only: the attention score MatMuls multiply two activations and lose too much in int8
            extra_options={"MatMulConstBOnly": True},
            **options,
        )
        return out.read_bytes()


def _down_projections(model: Any) -> list[str]:
    """MatMul nodes whose constant weight (k, n) shrinks its input (k > n): the feed-forward output layers."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul"
        and len(shapes.get(node.input[1], [])) == 2
        and shapes[node.input[1]][0] > shapes[node.input[1]][1]
    ]


QUANTIZED_TASKS = ("feature-extraction", "text-classification")  # the tasks whose int8 fidelity is measured


def fidelity(task: str, reference: list[Any], candidate: list[Any]) -> dict[str, float]:
    """How close the int8 outputs are to the fp32 ones, per task."""
    if task == "feature-extraction":
        a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        return {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}
    same = [r[0]["label"] == c[0]["label"] for r, c in zip(reference, candidate)]
    diff = max(
        abs(d["score"] - {e["label"]: e["score"] for e in c}[d["label"]])
        for r, c in zip(reference, candidate)
        for d in r
    )
    return {"top1_agreement": round(sum(same) / len(same), 6), "max_score_diff": round(float(diff), 6)}


def passes(task: str, figures: dict[str, float], floors: Floors) -> bool:
    if task == "feature-extraction":
        return figures["min_cosine"] >= floors.min_cosine and figures["mean_cosine"] >= floors.mean_cosine
    return figures["top1_agreement"] >= floors.top1_agreement


def choose_scheme(
    task: str, graphs: dict[str, bytes], texts: list[str], outputs_of: Callable[[bytes], list[Any]], floors: Floors
) -> tuple[str, bytes, dict[str, Any]]:
    """The first scheme (smallest first) whose outputs meet the floors.

    Args:
        graphs: the proved fp32 graphs, weights inside: "plain" (traced) and, when the fuser fused the model,
            "fused".
        texts: the inputs measured (golden inputs + FIDELITY_TEXTS).
        outputs_of: a graph -> the runtime's outputs for `texts` (through a bundle built around it).

    Returns:
        (scheme name, its int8 graph, the manifest's "quantization": scheme, floors, and every scheme tried).

    Raises:
        SourceError: no scheme meets the floors; the message gives every scheme's figures.
    """
    reference = outputs_of(graphs["plain"])
    tried: list[dict[str, Any]] = []
    for scheme, options in SCHEMES.items():
        if options["graph"] not in graphs:
            continue
        quantized = quantize_graph(graphs[options["graph"]], scheme)
        figures = fidelity(task, reference, outputs_of(quantized))
        ok = passes(task, figures, floors)
        tried.append({"scheme": scheme, **figures, "passed": ok})
        if ok:
            record = {"scheme": scheme, "floors": floors.__dict__, "texts": len(texts), "tried": tried}
            return scheme, quantized, record
    raise SourceError(
        f"no int8 scheme keeps this model's outputs within the floors {floors.__dict__}: "
        + "; ".join(
            f"{t['scheme']} {', '.join(f'{k}={v}' for k, v in t.items() if k not in ('scheme', 'passed'))}"
            for t in tried
        )
        + ". Build without --quantize, or lower the floors (--min-cosine, --mean-cosine, --min-top1)"
    )
