"""text-classification: every label with its score, sorted, as transformers' pipeline(top_k=None) gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.golden import GoldenCheck, max_label_score_diff
from runtime.loader import LoadedModel
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p


class ClassificationTask:
    name = "text-classification"

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        self.labels: list[str] = list(m.labels)
        multi = m.problem_type == "multi_label_classification" or len(self.labels) == 1
        self.default_function = "sigmoid" if multi else "softmax"

    def check_inputs(self, inputs: list[Any]) -> None:
        text_only(self.name, inputs)

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return p.check(
            self.name,
            params,
            {
                "top_k": p.integer(1, len(self.labels)),
                "function_to_apply": p.one_of("softmax", "sigmoid", "none"),
            },
        )

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.tokenizer.encode(inputs)

    def forward(self, batch: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
        return self.engine.run(batch)  # (B, num_labels) logits

    def postprocess(self, logits: np.ndarray, batch: dict[str, np.ndarray], params: dict[str, Any]) -> Chunk:
        fn = params.get("function_to_apply", self.default_function)
        if fn == "softmax":
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            scores = shifted / shifted.sum(axis=-1, keepdims=True)
        elif fn == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-logits))
        else:
            scores = logits
        top_k = params.get("top_k", len(self.labels))
        out = []
        for row in scores.tolist():
            ranked = sorted(zip(self.labels, row), key=lambda pair: pair[1], reverse=True)[:top_k]
            out.append([{"label": label, "score": score} for label, score in ranked])
        return Chunk(out)

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return max_label_score_diff(expected, actual, precision)
