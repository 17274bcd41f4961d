"""Compare outputs with the golden examples stored at build time (the init canary and `bundle_builder verify`).

Each task's `compare` picks its metric from here; the limits follow the coarser of the storage and compute dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# storage dtype -> allowed drift from the fp32 reference computed at build time
# int8: the build measured the bundle against fp32 on many texts (bundle_builder.quantize); the canary checks that it
# still computes about what it measured, within the default floor
EMBEDDING_MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "bfloat16": 0.99, "int8": 0.95}
CLASSIFICATION_MAX_ABS = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 3e-2, "int8": 0.25}


PRECISION_ORDER = ("float32", "float16", "bfloat16", "int8")  # finest first


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
        if self is NOTHING_TO_REPLAY:
            return "no golden examples (built with --no-golden)"
        return f"{self.metric}={self.value:.6g} (limit {self.limit:g})"


NOTHING_TO_REPLAY = GoldenCheck("none", 0.0, 0.0, True)  # a bundle built with --no-golden: nothing can drift


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float(a == b)


def min_cosine(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """Vectors: the smallest cosine similarity between expected and actual."""
    value = min(cosine(e, a) for e, a in zip(expected, actual))
    limit = EMBEDDING_MIN_COSINE[precision]
    return GoldenCheck("min_cosine", value, limit, value >= limit)


def max_label_score_diff(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """[{"label", "score"}, ...] lists: the largest score difference of a label (a missing label is infinitely off)."""
    worst = 0.0
    for e, a in zip(expected, actual):
        got = {d["label"]: d["score"] for d in a}
        worst = max([worst, *(abs(d["score"] - got.get(d["label"], math.inf)) for d in e)])
    limit = CLASSIFICATION_MAX_ABS[precision]
    return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)


def text_match(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """{"generated_text"} outputs: the share that is identical."""
    same = sum(e["generated_text"] == a["generated_text"] for e, a in zip(expected, actual)) / max(len(expected), 1)
    # Greedy text must match exactly from fp32 weights; half-precision storage may flip a near-tie token.
    limit = 1.0 if precision == "float32" else 0.0
    return GoldenCheck("text_match", same, limit, same >= limit)


def max_nested_diff(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """Pipeline-shaped answers (entities, spans, labels, tokens): the largest difference of a number at the same place;
    any other difference (a string, a key, a length) is infinitely off."""
    worst = max((_nested_diff(e, a) for e, a in zip(expected, actual)), default=0.0)
    limit = CLASSIFICATION_MAX_ABS[precision]
    return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)


def _nested_diff(expected: Any, actual: Any) -> float:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return 0.0 if expected is actual else math.inf
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if isinstance(expected, int) and isinstance(actual, int):  # offsets, token ids: exact
            return 0.0 if expected == actual else math.inf
        return abs(float(expected) - float(actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return math.inf
        return max((_nested_diff(expected[k], actual[k]) for k in expected), default=0.0)
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return math.inf
        return max((_nested_diff(e, a) for e, a in zip(expected, actual)), default=0.0)
    return 0.0 if expected == actual else math.inf
