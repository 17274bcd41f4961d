"""zero-shot-classification: an NLI model scores each candidate label as a hypothesis about the text, as
transformers' ZeroShotClassificationPipeline does.

    text x label -> (text, hypothesis_template.format(label)) pair, cut only_first (the hypothesis is never cut)
                 -> the classifier's logits (contradiction, neutral, entailment, ...)
    multi_label (or one label): per label, softmax over [contradiction, entailment]; the entailment share
    otherwise:                  softmax of the entailment logits over the labels

The answer is {"sequence", "labels", "scores"} with the labels sorted by score (ties in the pipeline's order).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import InputTooLongError, InvalidParametersError, PayloadTooLargeError
from runtime.golden import CLASSIFICATION_MAX_ABS, GoldenCheck
from runtime.loader import LoadedModel
from runtime.manifest import field_error
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p

DEFAULT_TEMPLATE = "This example is {}."  # the pipeline's


@dataclass(frozen=True)
class ZeroShotBatch:
    arrays: dict[str, np.ndarray]  # (inputs x labels, T) int64: the (text, hypothesis) pairs, input by input
    sequences: list[str]  # the inputs, as the answers echo them
    truncated: list[int]  # inputs cut at max_length (with every hypothesis)


class ZeroShotTask:
    name = "zero-shot-classification"
    length_buckets = True  # padding changes nothing but the cost: passes may group texts by length

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        where = str(model.bundle.path)
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        self.labels: list[str] = list(m.labels)
        width = model.engine.output_width()
        if width is not None and width != len(self.labels):
            raise field_error(
                where, "labels", f"must name one label per logit: the model's classifier outputs {width}", self.labels
            )
        entailment = m.task_config.get("entailment_id")
        if isinstance(entailment, bool) or not isinstance(entailment, int) or not 0 <= entailment < len(self.labels):
            raise field_error(
                where,
                "task_config.entailment_id",
                f"must be the index of the model's entailment label among its {len(self.labels)} labels "
                f"{self.labels} (zero-shot needs an NLI model)",
                entailment,
            )
        self.entailment_id = entailment
        self.contradiction_id = -1 if entailment == 0 else 0  # the pipeline's: logit 0, or the last if 0 is entailment
        self.max_length = m.tokenizer.max_length
        self.max_labels = settings.max_candidate_labels
        self.rows_per_pass = settings.max_batch_items  # (text, hypothesis) rows per engine call

    def check_inputs(self, inputs: list[Any]) -> None:
        text_only(self.name, inputs)

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = p.check(
            self.name,
            params,
            {
                "candidate_labels": self._candidate_labels,
                "hypothesis_template": p.text,
                "multi_label": p.boolean,
                "truncate": p.boolean,
            },
        )
        if "candidate_labels" not in out:
            raise InvalidParametersError(
                "parameter 'candidate_labels' is required for zero-shot-classification: send a list of labels "
                '(["sports", "politics"]) or one comma-separated string ("sports, politics")'
            )
        out["hypothesis_template"] = _template(
            out.get("hypothesis_template", DEFAULT_TEMPLATE), out["candidate_labels"]
        )
        return out

    def _candidate_labels(self, name: str, value: Any) -> list[str]:
        if isinstance(value, str):  # the pipeline's split: on commas, stripped, empty pieces dropped
            labels = [label.strip() for label in value.split(",") if label.strip()]
        elif isinstance(value, list) and all(isinstance(label, str) for label in value):
            labels = list(value)
        else:
            raise InvalidParametersError(
                f"parameter {name!r} must be a list of strings or a comma-separated string, got {p.short(value)}"
            )
        if not labels:
            raise InvalidParametersError(f"parameter {name!r} has no label, got {p.short(value)}; send at least one")
        if len(labels) > self.max_labels:
            raise PayloadTooLargeError(
                f"parameter {name!r} has {len(labels)} labels; the limit is {self.max_labels} (MAX_CANDIDATE_LABELS)"
            )
        return labels

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> ZeroShotBatch:
        labels: list[str] = params["candidate_labels"]
        hypotheses = [params["hypothesis_template"].format(label) for label in labels]
        pairs = [(x, h) for x in inputs for h in hypotheses]
        try:
            encoded = self.tokenizer.encode_pairs(pairs, strategy="only_first")
        except ValueError:
            raise self._hypothesis_too_long(labels, hypotheses) from None
        n = len(labels)
        truncated = sorted({row // n for row in encoded.truncated})
        if truncated and not params.get("truncate", True):
            row = encoded.truncated[0]
            part = f" with the hypothesis {pairs[row][1]!r}"
            raise InputTooLongError(row // n, self.tokenizer.count_tokens(pairs[row]), self.max_length, part)
        return ZeroShotBatch(encoded.arrays, list(inputs), truncated)

    def _hypothesis_too_long(self, labels: list[str], hypotheses: list[str]) -> InvalidParametersError:
        """The hypothesis that leaves no room for the text (only_first cannot cut the pair to max_length)."""
        tokens = [self.tokenizer.count_tokens(("", h)) for h in hypotheses]  # with the pair's special tokens
        worst = max(range(len(labels)), key=tokens.__getitem__)
        return InvalidParametersError(
            f"the hypothesis {hypotheses[worst]!r} (candidate label {labels[worst]!r} in 'hypothesis_template') takes "
            f"{tokens[worst]} of the model's {self.max_length} tokens with the special tokens, which leaves no room "
            "for the text; send a shorter label or hypothesis_template"
        )

    def forward(self, batch: ZeroShotBatch, params: dict[str, Any]) -> np.ndarray:
        """(inputs x labels, num_labels) logits. Equal rows (a label or a text sent twice, labels the tokenizer
        normalises alike) run once, so their scores tie exactly as the pipeline's do; the distinct rows run
        `rows_per_pass` at a time (inputs x labels can be many)."""
        arrays, mask = batch.arrays, batch.arrays["attention_mask"]
        stacked = np.concatenate([arrays[k] for k in sorted(arrays)], axis=1)  # (rows, arrays x T)
        first: dict[bytes, int] = {}
        same = [first.setdefault(row.tobytes(), i) for i, row in enumerate(stacked)]  # each row's first equal row
        distinct = sorted(first.values())
        parts = []
        for start in range(0, len(distinct), self.rows_per_pass):
            rows = distinct[start : start + self.rows_per_pass]
            columns = mask[rows].any(axis=0)  # drop the padding no row of this part needs
            parts.append(self.engine.run({k: v[rows][:, columns] for k, v in arrays.items()}))
        logits = np.concatenate(parts)  # (distinct rows, num_labels)
        slot = {row: j for j, row in enumerate(distinct)}
        return logits[[slot[row] for row in same]]

    def postprocess(self, logits: np.ndarray, batch: ZeroShotBatch, params: dict[str, Any]) -> Chunk:
        labels: list[str] = params["candidate_labels"]
        out = []
        n = len(labels)
        for i, sequence in enumerate(batch.sequences):
            scores = self._scores(
                logits[i * n : (i + 1) * n], multi=params.get("multi_label", False) or len(labels) == 1
            )
            top = list(reversed(scores.argsort()))  # the pipeline's order, ties included (same dtype, same sort)
            out.append({"sequence": sequence, "labels": [labels[j] for j in top], "scores": scores[top].tolist()})
        return Chunk(out, truncated=batch.truncated, input_tokens=int(batch.arrays["attention_mask"].sum()))

    def _scores(self, logits: np.ndarray, *, multi: bool) -> np.ndarray:
        """logits (labels, num_labels) float32 -> (labels,) float32 scores, as the pipeline's postprocess computes
        them (softmax shifted by the max: the same values without its overflow past logits of ~88)."""
        if multi:
            pair = logits[:, [self.contradiction_id, self.entailment_id]]  # (labels, 2)
            e = np.exp(pair - pair.max(axis=-1, keepdims=True))
            return (e / e.sum(axis=-1, keepdims=True))[:, 1]
        entail = logits[:, self.entailment_id]  # (labels,)
        e = np.exp(entail - entail.max())
        return e / e.sum()

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return label_scores_diff(expected, actual, precision)

    def maximal_request(self, text: str, items: int) -> tuple[list[str], dict[str, Any]]:
        """`items` texts, each against MAX_CANDIDATE_LABELS labels (the deployment budget's maximal request)."""
        return [text] * items, {"candidate_labels": [f"label {i}" for i in range(self.max_labels)]}


def _template(template: str, labels: list[str]) -> str:
    """The hypothesis template, checked as the pipeline checks it (formatting the first label must change it), and
    with only positional {} / {0} fields: a field like {0.__class__} would read attributes of the label."""
    fields: list[str | None] = []
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
        formatted = template.format(labels[0]) if all(name in ("", "0") for name in fields) else template
    except (ValueError, IndexError, KeyError):
        formatted = template
    if formatted == template or not fields:
        raise InvalidParametersError(
            f"parameter 'hypothesis_template' is {p.short(template)}: it must contain {{}} where the label goes, "
            'as in "This example is {}." (no other {...} fields)'
        )
    return template


def label_scores_diff(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """{"sequence", "labels", "scores"} answers: the largest score difference of a label; a different sequence or set
    of labels is infinitely off. Labels whose scores are within the limit may swap places."""
    worst = 0.0
    for e, a in zip(expected, actual):
        if e["sequence"] != a["sequence"] or sorted(e["labels"]) != sorted(a["labels"]):
            worst = math.inf
            continue
        got: dict[str, list[float]] = {}
        for label, score in zip(a["labels"], a["scores"]):
            got.setdefault(label, []).append(score)
        for label, score in zip(e["labels"], e["scores"]):
            worst = max(worst, abs(score - got[label].pop(0)))
    limit = CLASSIFICATION_MAX_ABS[precision]
    return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)
