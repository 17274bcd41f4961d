"""feature-extraction: the sentence embedding, computed after the transformer as sentence-transformers does.

    prompt + text -> tokens -> transformer (the engine) -> Pooling (one or more modes, concatenated)
                  -> Dense layers (activation(x @ W.T + b)) -> Normalize (when the model has it)

Every step mirrors sentence-transformers' modules, left padding (decoder embedders) included. Request parameters
are named as Text Embeddings Inference names them: normalize, truncate, truncation_direction, prompt_name, prompt,
dimensions (Matryoshka: the first N dimensions, re-normalised when the embedding is normalised).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import InputTooLongError, InvalidParametersError
from runtime.golden import GoldenCheck, min_cosine
from runtime.loader import LoadedModel
from runtime.manifest import Pooling, Prompt
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


@dataclass(frozen=True)
class EmbeddingBatch:
    arrays: dict[str, np.ndarray]  # the model inputs, (B, T) int64
    prompt_tokens: int  # tokens of the prompt in front of each text (left out of pooling when include_prompt=False)
    truncated: list[int]  # texts cut at max_length


class EmbeddingTask:
    name = "feature-extraction"
    length_buckets = True  # padding changes nothing but the cost: passes may group texts by length

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        self.pooling = model.manifest.pooling or Pooling()
        self.normalize = self.pooling.normalize
        self.prompt = self.pooling.default_prompt
        self.max_length = model.manifest.tokenizer.max_length
        # (weight (out, in), bias (out,) or None, activation) per Dense layer, as float32 numpy arrays
        self.dense = [
            (model.bundle.array(d.weight), model.bundle.array(d.bias) if d.bias else None, ACTIVATIONS[d.activation])
            for d in self.pooling.dense
        ]
        self.dimensions = _width(model, self.dense)

    def check_inputs(self, inputs: list[Any]) -> None:
        text_only(self.name, inputs)

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = p.check(
            self.name,
            params,
            {
                "normalize": p.boolean,
                "truncate": p.boolean,
                "truncation_direction": p.direction,
                "prompt_name": p.text,
                "prompt": p.text,
                "dimensions": p.integer(1, self.dimensions),
            },
        )
        if "prompt_name" in out and "prompt" in out:
            raise InvalidParametersError('parameters "prompt_name" and "prompt" exclude each other; send one of them')
        if "prompt_name" in out and out["prompt_name"] not in self.pooling.prompts:
            known = ", ".join(repr(k) for k in sorted(self.pooling.prompts)) or "none"
            raise InvalidParametersError(
                f"parameter 'prompt_name' is {out['prompt_name']!r}; this model's prompts are: {known}"
            )
        return out

    def _prompt(self, params: dict[str, Any]) -> Prompt | None:
        if "prompt" in params:
            return Prompt(params["prompt"], self.tokenizer.prompt_tokens(params["prompt"]))
        if "prompt_name" in params:
            return self.pooling.prompts[params["prompt_name"]]
        return self.prompt

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> EmbeddingBatch:
        prompt = self._prompt(params)
        if prompt is not None and prompt.text:
            inputs = [prompt.text + text for text in inputs]
        encoded = self.tokenizer.encode_checked(inputs, direction=params.get("truncation_direction", "right"))
        if encoded.truncated and not params.get("truncate", True):
            at = encoded.truncated[0]
            raise InputTooLongError(at, self.tokenizer.count_tokens(inputs[at]), self.max_length)
        return EmbeddingBatch(encoded.arrays, prompt.tokens if prompt is not None else 0, encoded.truncated)

    def forward(self, batch: EmbeddingBatch, params: dict[str, Any]) -> np.ndarray:
        return self.engine.run(batch.arrays)  # (B, T, H) last hidden state

    def postprocess(self, hidden: np.ndarray, batch: EmbeddingBatch, params: dict[str, Any]) -> Chunk:
        mask = batch.arrays["attention_mask"]  # (B, T)
        prompt_tokens = 0 if self.pooling.include_prompt else batch.prompt_tokens
        emb = np.concatenate([_pool(mode, hidden, mask, prompt_tokens) for mode in self.pooling.modes], axis=-1)
        for weight, bias, activation in self.dense:
            emb = emb @ weight.T
            if bias is not None:
                emb = emb + bias
            emb = activation(emb)
        if "dimensions" in params:  # Matryoshka: the leading dimensions carry the most
            emb = emb[:, : params["dimensions"]]
        if params.get("normalize", self.normalize):  # as torch.nn.functional.normalize(p=2, eps=1e-12)
            emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return Chunk(emb.tolist(), truncated=batch.truncated, input_tokens=int(mask.sum()))

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return min_cosine(expected, actual, precision)


def _pool(mode: str, hidden: np.ndarray, mask: np.ndarray, prompt_tokens: int) -> np.ndarray:
    """sentence-transformers' Pooling for one mode: hidden (B, T, H), mask (B, T) -> (B, H)."""
    leading_pads = mask.argmax(axis=1)  # (B,) left padding before the first real token (0 when padded right)
    pooled_mask = mask
    if prompt_tokens:  # include_prompt=False: the prompt's tokens (after any left padding) are not pooled
        positions = np.arange(mask.shape[1])[None, :]
        pooled_mask = np.where(positions < (leading_pads + prompt_tokens)[:, None], 0, mask)
    m = pooled_mask[..., None].astype(hidden.dtype)  # (B, T, 1)
    rows = np.arange(hidden.shape[0])
    if mode == "cls":  # the first real token
        return hidden[rows, pooled_mask.argmax(axis=1)]
    if mode == "max":
        return np.where(m > 0, hidden, -np.inf).max(axis=1)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        count = np.clip(m.sum(axis=1), 1e-9, None)  # (B, 1)
        return (hidden * m).sum(axis=1) / (count if mode == "mean" else np.sqrt(count))
    if mode == "weightedmean":  # position weights 1, 2, ... counted from the first real token
        weights = np.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None] - leading_pads[:, None, None]
        weighted = m * weights
        return (hidden * weighted).sum(axis=1) / np.clip(weighted.sum(axis=1), 1e-9, None)
    if mode == "lasttoken":  # the last real token
        last = hidden.shape[1] - 1 - pooled_mask[:, ::-1].argmax(axis=1)
        last = np.where(pooled_mask.max(axis=1) == 0, 0, last)  # no real token: a zero vector either way
        return (hidden * m)[rows, last]
    raise ValueError(f"pooling mode {mode!r}")


def _width(model: LoadedModel, dense: list[Any]) -> int:
    """The embedding's width: a golden output's length, else the last Dense layer's or the encoder's hidden size
    (a bundle built with --no-golden has no golden output)."""
    if model.manifest.golden:
        return len(model.manifest.golden[0].output)
    if dense:
        return int(dense[-1][0].shape[0])
    config = json.loads(model.bundle.read_file("config.json"))
    return next((config[k] for k in ("hidden_size", "d_model", "dim", "n_embd") if isinstance(config.get(k), int)), 0)
