"""token-classification (NER): each token's label, or entities grouped from them, as transformers 5.24's
TokenClassificationPipeline answers.

    text -> windows of max_length tokens (one, cut at max_length; or, with a stride, overlapping ones covering the
    whole text) -> logits (rows, T, labels) -> softmax per token -> entities (runtime/tasks/entities.py)
    -> with several windows, overlapping entities merged as the pipeline merges them

Parameters are the pipeline's: aggregation_strategy ("none", "simple", "first", "average", "max"), ignore_labels
(default ["O"]) and stride. The bundle's tokenizer is always a fast one, so the pipeline's refusals for slow
tokenizers never apply; its others are 422s here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import BundleCorruptError, InvalidParametersError
from runtime.golden import GoldenCheck, max_nested_diff
from runtime.loader import LoadedModel
from runtime.manifest import field_error
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p
from runtime.tasks.entities import STRATEGIES, Vocabulary, find_entities

DEFAULT_IGNORE_LABELS = ["O"]


@dataclass(frozen=True)
class TokenBatch:
    texts: list[str]
    windows: list[list[Any]]  # each text's tokenizers.Encodings, one per row of `arrays`, in order
    arrays: dict[str, np.ndarray]  # the model inputs, (rows, T) int64
    truncated: list[int]  # texts cut at max_length (never with a stride)


class TokenClassificationTask:
    name = "token-classification"
    length_buckets = True  # padding changes nothing but the cost: passes may group texts by length

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        where = str(model.bundle.path)
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        self.labels: list[str] = list(m.labels)
        if not self.labels:
            raise field_error(where, "labels", "must name the model's labels (id2label order)", self.labels)
        # the torch engine knows its head's width; the ONNX engine's 3-D output does not say, so postprocess checks too
        width = model.engine.output_width()
        if width is not None and width != len(self.labels):
            raise field_error(
                where, "labels", f"must name one label per logit: the model's classifier outputs {width}", self.labels
            )
        unk = m.task_config.get("unk_token_id", -1)
        if not (unk is None or (isinstance(unk, int) and not isinstance(unk, bool) and unk >= 0)):
            raise field_error(where, "task_config", 'must hold "unk_token_id" (an id, or null)', dict(m.task_config))
        self.vocab = Vocabulary.of(self.tokenizer.backend, unk)
        self.max_length = m.tokenizer.max_length
        self.max_rows = settings.max_batch_items  # windows per forward pass: a long text with a stride has many
        # tokenizers refuses (panics on) a stride that leaves a window no new token
        self.special_tokens = self.tokenizer.backend.num_special_tokens_to_add(False)
        self.max_stride = self.max_length - self.special_tokens - 1

    def check_inputs(self, inputs: list[Any]) -> None:
        text_only(self.name, inputs)

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        why = f"windows hold {self.max_length} tokens, {self.special_tokens} of them special"
        out = p.check(
            self.name,
            params,
            {
                "aggregation_strategy": _strategy,
                "ignore_labels": p.strings,
                "stride": p.integer(0, max(self.max_stride, 0), why=why),
            },
        )
        # the pipeline refuses a stride with an explicit "none", yet takes one when no strategy is sent (then "none")
        if "stride" in out and out.get("aggregation_strategy") == "none":
            raise InvalidParametersError(
                "parameter 'stride' cannot go with aggregation_strategy 'none' (transformers' pipeline refuses the "
                "pair); send aggregation_strategy 'simple', 'first', 'average' or 'max'"
            )
        return out

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> TokenBatch:
        windows, arrays = self.tokenizer.encode_windows(inputs, stride=params.get("stride"))
        truncated = [i for i, w in enumerate(windows) if "stride" not in params and w[0].overflowing]
        return TokenBatch(inputs, windows, arrays, truncated)

    def forward(self, batch: TokenBatch, params: dict[str, Any]) -> np.ndarray:
        rows = len(batch.arrays["input_ids"])
        parts = [
            self.engine.run({k: v[s : s + self.max_rows] for k, v in batch.arrays.items()})  # (rows, T, labels)
            for s in range(0, rows, self.max_rows)
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def postprocess(self, logits: np.ndarray, batch: TokenBatch, params: dict[str, Any]) -> Chunk:
        if logits.ndim != 3 or logits.shape[-1] != len(self.labels):
            raise BundleCorruptError(
                f"the model gives logits of shape {logits.shape} where (rows, tokens, {len(self.labels)} labels) "
                "was expected; rebuild the bundle with bundle_builder"
            )
        strategy = params.get("aggregation_strategy", "none")
        ignore = params.get("ignore_labels", DEFAULT_IGNORE_LABELS)
        outputs: list[Any] = []
        row = 0
        for text, windows in zip(batch.texts, batch.windows):
            found = find_entities(
                text, windows, logits[row : row + len(windows)], self.vocab, self.labels, strategy, ignore
            )
            outputs.append(found)
            row += len(windows)
        return Chunk(outputs, truncated=batch.truncated, input_tokens=int(batch.arrays["attention_mask"].sum()))

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return max_nested_diff(expected, actual, precision)


def _strategy(name: str, value: Any) -> str:
    """One of STRATEGIES, in any case (the pipeline looks the name up upper-cased)."""
    if not isinstance(value, str) or value.lower() not in STRATEGIES:
        p.one_of(*STRATEGIES)(name, value)  # raises, naming the value and the choices
    return str(value).lower()
