"""Compare outputs with the golden examples stored at build time (the init canary and `bundle_builder verify`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# storage dtype -> allowed drift from the fp32 reference computed at build time
EMBEDDING_MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "bfloat16": 0.99}
CLASSIFICATION_MAX_ABS = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 3e-2}


PRECISION_ORDER = ("float32", "float16", "bfloat16")  # finest first


def coarser(a: str, b: str) -> str:
    """The less precise of two dtypes: the one whose drift limits apply."""
    return max(a, b, key=PRECISION_ORDER.index)


@dataclass(frozen=True)
class GoldenCheck:
    metric: str  # "min_cosine", "max_abs_diff" or "text_match"
    value: float
    limit: float
    ok: bool

    def describe(self) -> str:
        return f"{self.metric}={self.value:.6g} (limit {self.limit:g})"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float(a == b)


def compare(task: str, storage_dtype: str, expected: list[Any], actual: list[Any]) -> GoldenCheck:
    """Largest difference between expected and actual outputs (one per golden example) for `task`."""
    if task == "feature-extraction":
        value = min(_cosine(e, a) for e, a in zip(expected, actual))
        limit = EMBEDDING_MIN_COSINE[storage_dtype]
        return GoldenCheck("min_cosine", value, limit, value >= limit)
    if task == "text-classification":
        worst = 0.0
        for e, a in zip(expected, actual):
            got = {d["label"]: d["score"] for d in a}
            worst = max([worst, *(abs(d["score"] - got.get(d["label"], math.inf)) for d in e)])
        limit = CLASSIFICATION_MAX_ABS[storage_dtype]
        return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)
    if task == "text-generation":
        same = sum(e["generated_text"] == a["generated_text"] for e, a in zip(expected, actual)) / max(len(expected), 1)
        # Greedy text must match exactly from fp32 weights; half-precision storage may flip a near-tie token.
        limit = 1.0 if storage_dtype == "float32" else 0.0
        return GoldenCheck("text_match", same, limit, same >= limit)
    raise ValueError(f"no golden comparison for task {task!r}")
