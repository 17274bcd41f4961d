"""feature-extraction: the sentence embedding, pooled and normalised as sentence-transformers does."""

from __future__ import annotations

from typing import Any

from runtime.tasks import params as p


class EmbeddingTask:
    name = "feature-extraction"

    def __init__(self, loaded: Any) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        pooling = loaded.manifest.get("pooling") or {}
        self.pooling_mode: str = pooling.get("mode", "mean")
        self.normalize: bool = bool(pooling.get("normalize", False))

    def check_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        return p.check(self.name, params, {"normalize": p.boolean})

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) for k, v in self.tokenizer.encode(inputs).items()}

    def forward(self, batch: dict[str, Any], params: dict[str, Any]) -> Any:
        return self.model(**batch).last_hidden_state  # (B, T, H)

    def postprocess(self, hidden: Any, batch: dict[str, Any], params: dict[str, Any]) -> list[list[float]]:
        import torch

        hidden = hidden.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        if self.pooling_mode == "cls":
            emb = hidden[:, 0]
        elif self.pooling_mode == "max":
            emb = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:  # mean over real tokens, exactly as sentence-transformers' Pooling
            emb = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if params.get("normalize", self.normalize):
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.cpu().tolist()
