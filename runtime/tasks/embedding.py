"""feature-extraction: the sentence embedding, pooled and normalised as sentence-transformers does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.golden import GoldenCheck, min_cosine
from runtime.loader import LoadedModel
from runtime.manifest import Pooling
from runtime.settings import Settings
from runtime.tasks import Chunk, text_only
from runtime.tasks import params as p


class EmbeddingTask:
    name = "feature-extraction"

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.engine = model.engine
        self.tokenizer = model.tokenizer
        pooling = model.manifest.pooling or Pooling()
        self.pooling_mode = pooling.mode
        self.normalize = pooling.normalize

    def check_inputs(self, inputs: list[Any]) -> None:
        text_only(self.name, inputs)

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return p.check(self.name, params, {"normalize": p.boolean})

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.tokenizer.encode(inputs)

    def forward(self, batch: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
        return self.engine.run(batch)  # (B, T, H) last hidden state

    def postprocess(self, hidden: np.ndarray, batch: dict[str, np.ndarray], params: dict[str, Any]) -> Chunk:
        mask = batch["attention_mask"][..., None].astype(hidden.dtype)  # (B, T, 1)
        if self.pooling_mode == "cls":
            emb = hidden[:, 0]
        elif self.pooling_mode == "max":
            emb = np.where(mask > 0, hidden, -np.inf).max(axis=1)
        else:  # mean over real tokens, exactly as sentence-transformers' Pooling
            emb = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if params.get("normalize", self.normalize):  # as torch.nn.functional.normalize(p=2, eps=1e-12)
            emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return Chunk(emb.tolist())

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return min_cosine(expected, actual, precision)
