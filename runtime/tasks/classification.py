"""text-classification: every label with its score, sorted, as transformers' pipeline(top_k=None) gives them.

Inputs are texts, pairs ({"text", "text_pair"}, as the pipeline takes them), or a rerank request ({"query", "texts"})
for a cross-encoder (one output): the texts ranked by score, as Text Embeddings Inference's /rerank answers and
sentence-transformers' CrossEncoder.rank scores them (sigmoid of the logit unless raw_scores).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import InputTooLongError, InvalidInputError
from runtime.golden import GoldenCheck, max_label_score_diff
from runtime.loader import LoadedModel
from runtime.manifest import field_error
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p
from runtime.tokenizer import Text

PAIR_KEYS = {"text", "text_pair"}
RERANK_KEYS = {"query", "texts"}


@dataclass(frozen=True)
class ClassificationBatch:
    arrays: dict[str, np.ndarray]  # (rows, T) int64: one row per text or pair
    spans: list[tuple[int, int]]  # each input's rows
    reranks: list[list[str] | None]  # each input's documents when it is a rerank request
    truncated: list[int]  # inputs with a text or pair cut at max_length


class ClassificationTask:
    name = "text-classification"
    length_buckets = True  # padding changes nothing but the cost: passes may group texts by length

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        self.labels: list[str] = list(m.labels)
        width = model.engine.output_width()
        if width is not None and width != len(self.labels):
            raise field_error(
                str(model.bundle.path),
                "labels",
                f"must name one label per logit: the model's classifier outputs {width}",
                self.labels,
            )
        self.max_length = m.tokenizer.max_length
        multi = m.problem_type == "multi_label_classification" or len(self.labels) == 1
        self.default_function = "sigmoid" if multi else "softmax"

    def check_inputs(self, inputs: list[Any]) -> None:
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                continue
            if not isinstance(x, dict):
                text_only(self.name, [x])  # a chat: the same answer as every encoder task gives
                raise InvalidInputError(
                    f'"inputs"[{i}] must be a text, a pair {{"text", "text_pair"}} or a rerank request '
                    '{"query", "texts"}; chat messages are for text-generation models'
                )
            keys = set(x)
            if keys == PAIR_KEYS and all(isinstance(x[k], str) for k in PAIR_KEYS):
                continue
            if keys == RERANK_KEYS and isinstance(x["query"], str) and isinstance(x["texts"], list):
                if len(self.labels) != 1:
                    raise InvalidInputError(
                        f"rerank needs a cross-encoder (one output score); this model has {len(self.labels)} labels"
                    )
                continue
            raise InvalidInputError(
                f'"inputs"[{i}] has keys {sorted(map(str, keys))}; a pair is {{"text": str, "text_pair": str}} and '
                'a rerank request {"query": str, "texts": [str, ...]}'
            )

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return p.check(
            self.name,
            params,
            {
                "top_k": p.integer(1, len(self.labels)),
                "function_to_apply": p.one_of("softmax", "sigmoid", "none"),
                "truncate": p.boolean,
                "truncation_direction": p.direction,
                "top_n": p.integer(1),  # rerank
                "raw_scores": p.boolean,  # rerank
                "return_text": p.boolean,  # rerank
            },
        )

    def preprocess(self, inputs: list[Any], params: dict[str, Any]) -> ClassificationBatch:
        rows: list[Text] = []
        spans: list[tuple[int, int]] = []
        reranks: list[list[str] | None] = []
        for x in inputs:
            start = len(rows)
            if isinstance(x, str):
                rows.append(x)
                reranks.append(None)
            elif "text_pair" in x:
                rows.append((x["text"], x["text_pair"]))
                reranks.append(None)
            else:
                rows.extend((x["query"], doc) for doc in x["texts"])
                reranks.append(list(x["texts"]))
            spans.append((start, len(rows)))
        encoded = self.tokenizer.encode_checked(rows, direction=params.get("truncation_direction", "right"))
        if encoded.truncated and not params.get("truncate", True):
            row = encoded.truncated[0]
            at = next(i for i, (start, end) in enumerate(spans) if start <= row < end)
            part = f" (text {row - spans[at][0]})" if reranks[at] is not None else ""
            raise InputTooLongError(at, self.tokenizer.count_tokens(rows[row]), self.max_length, part)
        truncated = sorted({i for i, (start, end) in enumerate(spans) for r in encoded.truncated if start <= r < end})
        return ClassificationBatch(encoded.arrays, spans, reranks, truncated)

    def forward(self, batch: ClassificationBatch, params: dict[str, Any]) -> np.ndarray:
        return self.engine.run(batch.arrays)  # (rows, num_labels) logits

    def postprocess(self, logits: np.ndarray, batch: ClassificationBatch, params: dict[str, Any]) -> Chunk:
        out: list[Any] = []
        for (start, end), docs in zip(batch.spans, batch.reranks):
            rows = logits[start:end]
            out.append(self._labels(rows[0], params) if docs is None else self._rerank(rows[:, 0], docs, params))
        return Chunk(out, truncated=batch.truncated, input_tokens=int(batch.arrays["attention_mask"].sum()))

    def _labels(self, row: np.ndarray, params: dict[str, Any]) -> list[dict[str, Any]]:
        fn = params.get("function_to_apply", self.default_function)
        if fn == "softmax":
            shifted = np.exp(row - row.max())
            scores = shifted / shifted.sum()
        elif fn == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-row))
        else:
            scores = row
        top_k = params.get("top_k", len(self.labels))
        ranked = sorted(zip(self.labels, scores.tolist()), key=lambda pair: pair[1], reverse=True)[:top_k]
        return [{"label": label, "score": score} for label, score in ranked]

    def _rerank(self, logits: np.ndarray, docs: list[str], params: dict[str, Any]) -> list[dict[str, Any]]:
        scores = logits if params.get("raw_scores") else 1.0 / (1.0 + np.exp(-logits))
        order = sorted(range(len(docs)), key=lambda i: float(scores[i]), reverse=True)[: params.get("top_n")]
        ranked: list[dict[str, Any]] = []
        for i in order:
            entry: dict[str, Any] = {"index": i, "score": float(scores[i])}
            if params.get("return_text"):
                entry["text"] = docs[i]
            ranked.append(entry)
        return ranked

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return max_label_score_diff(expected, actual, precision)
