"""feature-extraction: the sentence embedding, pooled and normalised as sentence-transformers does."""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.tasks import params as p


class EmbeddingTask:
    name = "feature-extraction"

    def __init__(self, loaded: Any) -> None:
        self.engine = loaded.engine
        self.tokenizer = loaded.tokenizer
        pooling = loaded.manifest.get("pooling") or {}
        self.pooling_mode: str = pooling.get("mode", "mean")
        self.normalize: bool = bool(pooling.get("normalize", False))

    def check_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        return p.check(self.name, params, {"normalize": p.boolean})

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.tokenizer.encode(inputs)

    def forward(self, batch: dict[str, np.ndarray], params: dict[str, Any]) -> np.ndarray:
        return self.engine.run(batch)  # (B, T, H) last hidden state

    def postprocess(self, hidden: np.ndarray, batch: dict[str, np.ndarray], params: dict[str, Any]) -> list[list[float]]:
        mask = batch["attention_mask"][..., None].astype(hidden.dtype)  # (B, T, 1)
        if self.pooling_mode == "cls":
            emb = hidden[:, 0]
        elif self.pooling_mode == "max":
            emb = np.where(mask > 0, hidden, -np.inf).max(axis=1)
        else:  # mean over real tokens, exactly as sentence-transformers' Pooling
            emb = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if params.get("normalize", self.normalize):  # as torch.nn.functional.normalize(p=2, eps=1e-12)
            emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return emb.tolist()
