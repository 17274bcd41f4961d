"""fill-mask: the likeliest tokens at each mask token of a text, as transformers' FillMaskPipeline gives them.

    text with mask tokens -> masked LM logits (B, T, V), read at the mask positions only -> softmax over the vocab
        (or the requested targets) -> top_k -> {"score", "token", "token_str", "sequence"}

One mask gives a list of top_k answers; several give a list per mask (the pipeline's "experimental" multi-mask mode:
each mask scored on its own, the others left as mask tokens in the sequence). Text is decoded as transformers'
tokenizer.decode does: the bundled tokenizer's decoder, then clean_up_tokenization where the source tokenizer applies it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import (
    BundleCorruptError,
    InputTooLongError,
    InvalidParametersError,
    PayloadTooLargeError,
    UnprocessableInputError,
)
from runtime.golden import CLASSIFICATION_MAX_ABS, GoldenCheck
from runtime.loader import LoadedModel
from runtime.manifest import field_error
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p
from runtime.tasks.generation import clean_up_tokenization

DEFAULT_TOP_K = 5  # the pipeline's
LOGITS_BYTES = 256 * 2**20  # (rows, T, V) float32 logits per engine call: rows run a few at a time past this
logger = logging.getLogger("hf_lambda.fill_mask")


@dataclass(frozen=True)
class FillMaskBatch:
    arrays: dict[str, np.ndarray]  # the model inputs, (B, T) int64
    truncated: list[int]  # inputs cut at max_length (their masks all kept)


class FillMaskTask:
    name = "fill-mask"
    length_buckets = True  # padding changes nothing but the cost: passes may group texts by length

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        where = str(model.bundle.path)
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        config = m.task_config
        mask_token, mask_id = config.get("mask_token"), config.get("mask_token_id")
        if not isinstance(mask_token, str) or isinstance(mask_id, bool) or not isinstance(mask_id, int):
            raise field_error(
                where, "task_config", "must name the tokenizer's mask_token (text) and mask_token_id", dict(config)
            )
        if self.tokenizer.token_to_id(mask_token) != mask_id:
            raise field_error(
                where, "task_config.mask_token_id", f"is not the id of {mask_token!r} in tokenizer.json", mask_id
            )
        self.mask_token, self.mask_id = mask_token, mask_id
        self.cleanup = bool(config.get("clean_up_tokenization_spaces", False))
        self.pad_id = m.tokenizer.pad_id
        self.max_length = m.tokenizer.max_length
        self.max_masks = settings.max_mask_tokens
        self.vocab_size = _vocab_size(model)

    def check_inputs(self, inputs: list[Any]) -> None:
        """Each text has from 1 to MAX_MASK_TOKENS mask tokens, all within the model's max length."""
        text_only(self.name, inputs)
        arrays = self.tokenizer.encode(inputs, truncate=False)  # (B, T) untruncated
        counts = (arrays["input_ids"] == self.mask_id).sum(axis=1)
        for i, n in enumerate(counts.tolist()):
            if n == 0:
                raise UnprocessableInputError(
                    f'"inputs"[{i}] has no mask token: put {self.mask_token} where the model should fill in a '
                    f'token, as in "Paris is the {self.mask_token} of France."'
                )
            if n > self.max_masks:
                raise UnprocessableInputError(
                    f'"inputs"[{i}] has {n} mask tokens {self.mask_token}; the limit is {self.max_masks} '
                    "(MAX_MASK_TOKENS)"
                )
        long = [i for i, n in enumerate(arrays["attention_mask"].sum(axis=1).tolist()) if n > self.max_length]
        if long:
            kept = (self.tokenizer.encode([inputs[i] for i in long])["input_ids"] == self.mask_id).sum(axis=1)
            for i, n in zip(long, kept.tolist()):
                if n < counts[i]:
                    raise PayloadTooLargeError(
                        f'"inputs"[{i}] has a mask token {self.mask_token} past the model\'s max length of '
                        f"{self.max_length} tokens, where the text is cut; shorten the text before it"
                    )

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return p.check(
            self.name,
            params,
            {
                "top_k": p.integer(1, self.vocab_size, why="the model's vocabulary"),
                "targets": self._targets,
                "truncate": p.boolean,
            },
        )

    def _targets(self, name: str, value: Any) -> np.ndarray:
        """The target tokens' ids as the pipeline's get_target_ids finds them: a vocabulary entry, else the first token
        of the target's encoding (with its warnings), duplicates dropped in the order of a Python set."""
        targets = [value] if isinstance(value, str) else value
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise InvalidParametersError(
                f"parameter {name!r} must be a string or a list of strings, got {p.short(value)}"
            )
        ids: list[int] = []
        for target in targets:
            token_id = self.tokenizer.token_to_id(target)
            if token_id is None:
                first = self.tokenizer.encode([target], add_special_tokens=False, truncate=False)["input_ids"][0]
                if not first.size:
                    logger.warning(
                        f"The specified target token `{target}` does not exist in the model vocabulary. "
                        "We cannot replace it with anything meaningful, ignoring it"
                    )
                    continue
                token_id = int(first[0])
                logger.warning(
                    f"The specified target token `{target}` does not exist in the model vocabulary. "
                    f"Replacing with `{self.tokenizer.id_to_token(token_id)}`."
                )
            ids.append(token_id)
        ids = list(set(ids))  # the pipeline's order: it decides which of two equal scores comes first
        if not ids:
            raise InvalidParametersError(
                f"parameter {name!r} is {p.short(value)}: at least one target token must be given (an empty list, or "
                "targets that encode to no token, leave nothing to score)"
            )
        return np.asarray(ids, dtype=np.int64)

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> FillMaskBatch:
        encoded = self.tokenizer.encode_checked(inputs)
        if encoded.truncated and not params.get("truncate", True):
            at = encoded.truncated[0]
            raise InputTooLongError(at, self.tokenizer.count_tokens(inputs[at]), self.max_length)
        return FillMaskBatch(encoded.arrays, encoded.truncated)

    def forward(self, batch: FillMaskBatch, params: dict[str, Any]) -> np.ndarray:
        """(masks, V) logits at the mask positions, in input order. The engine gives logits at every position
        (B, T, V), so rows run a few at a time and only their mask positions are kept."""
        mask = batch.arrays["attention_mask"]
        B, T = mask.shape
        step = max(1, LOGITS_BYTES // (T * self.vocab_size * 4))
        parts = []
        for start in range(0, B, step):
            rows = slice(start, start + step)
            columns = mask[rows].any(axis=0)  # drop the padding no row of this part needs
            logits = self.engine.run({k: v[rows][:, columns] for k, v in batch.arrays.items()})  # (b, t, V)
            at = batch.arrays["input_ids"][rows][:, columns] == self.mask_id  # (b, t)
            parts.append(logits[at])  # (masks of these rows, V), row by row, positions ascending
        return np.concatenate(parts)

    def postprocess(self, logits: np.ndarray, batch: FillMaskBatch, params: dict[str, Any]) -> Chunk:
        targets: np.ndarray | None = params.get("targets")
        top_k = params.get("top_k", DEFAULT_TOP_K)
        if targets is not None:
            top_k = min(top_k, len(targets))
        ids, attention = batch.arrays["input_ids"], batch.arrays["attention_mask"]
        out: list[Any] = []
        first = 0
        for row in range(ids.shape[0]):
            tokens = ids[row][attention[row] == 1]  # the text's own tokens, as the pipeline encodes it alone
            positions = np.flatnonzero(tokens == self.mask_id)  # in the order forward kept their logits
            single = len(positions) == 1
            answers = []
            for k, position in enumerate(positions):
                probs = _softmax(logits[first + k])  # (V,) float32, as torch's softmax
                if targets is not None:
                    probs = probs[targets]
                answers.append(self._answers(probs, targets, top_k, tokens, int(position), single))
            first += len(positions)
            out.append(answers[0] if single else answers)
        return Chunk(out, truncated=batch.truncated, input_tokens=int(attention.sum()))

    def _answers(
        self, probs: np.ndarray, targets: np.ndarray | None, top_k: int, tokens: np.ndarray, position: int, single: bool
    ) -> list[dict[str, Any]]:
        """The top_k tokens at one mask: score, token id, the token decoded, the text with the token in place."""
        best = _top(probs, top_k)
        answers = []
        for i in best.tolist():
            token = int(targets[i]) if targets is not None else i
            filled = tokens.copy()
            filled[position] = token
            filled = filled[filled != self.pad_id] if self.pad_id is not None else filled  # the pipeline drops pads
            # one mask: special tokens skipped for readable text; several: kept, so the other masks still show
            sequence = self._decode(filled.tolist(), skip_special_tokens=single)
            answers.append(
                {
                    "score": float(probs[i]),
                    "token": token,
                    "token_str": self._decode([token], skip_special_tokens=False),
                    "sequence": sequence,
                }
            )
        return answers

    def _decode(self, ids: list[int], *, skip_special_tokens: bool) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if self.cleanup else text

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return top_tokens_diff(expected, actual, precision)

    def maximal_request(self, text: str, items: int) -> tuple[list[str], dict[str, Any]]:
        """`items` texts with MAX_MASK_TOKENS masks each (the deployment budget's maximal request)."""
        return [" ".join([self.mask_token] * self.max_masks) + " " + text] * items, {}


def top_tokens_diff(expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
    """fill-mask answers: the largest score difference of a token at the same mask. Tokens whose scores are within the
    limit may swap places, or swap the last place with a token just outside the top_k (half-precision storage moves
    scores that much); a different token_str or sequence for the same token is infinitely off."""
    limit = CLASSIFICATION_MAX_ABS[precision]
    worst = 0.0
    for e, a in zip(expected, actual):
        masks = zip(e, a) if e and isinstance(e[0], list) else [(e, a)]  # several masks: a list per mask
        for want, got in masks:
            worst = max(worst, _mask_diff(want, got))
    return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)


def _mask_diff(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> float:
    if len(expected) != len(actual):
        return math.inf
    got = {d["token"]: d for d in actual}
    lowest = min((d["score"] for d in actual), default=0.0)
    worst = 0.0
    for d in expected:
        other = got.get(d["token"])
        if other is None:  # fell out of the top_k: only a token at its edge may
            worst = max(worst, abs(d["score"] - lowest))
        elif (other["token_str"], other["sequence"]) != (d["token_str"], d["sequence"]):
            return math.inf
        else:
            worst = max(worst, abs(d["score"] - other["score"]))
    return worst


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _top(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest, largest first; equal scores by index (torch.topk's order on a CPU)."""
    if k < len(probs):
        candidates = np.argpartition(-probs, k - 1)[:k]
    else:
        candidates = np.arange(len(probs))
    return candidates[np.lexsort((candidates, -probs[candidates]))]


def _vocab_size(model: LoadedModel) -> int:
    """The logits' width V: config.json's vocab_size (it may exceed the tokenizer's: embeddings padded for speed)."""
    size = json.loads(model.bundle.read_file("config.json")).get("vocab_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BundleCorruptError(
            f"{model.bundle.path}: config.json has vocab_size={size!r}; a masked LM needs its vocabulary size (the "
            "width of its logits). Rebuild the bundle from a source whose config.json has it"
        )
    return size
