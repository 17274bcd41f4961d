"""text-classification: every label with its score, sorted, as transformers' pipeline(top_k=None) gives them."""

from __future__ import annotations

from typing import Any

from runtime.tasks import params as p


class ClassificationTask:
    name = "text-classification"

    def __init__(self, loaded: Any) -> None:
        m = loaded.manifest
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.labels: list[str] = list(m["labels"])
        multi = m.get("problem_type") == "multi_label_classification" or len(self.labels) == 1
        self.default_function = "sigmoid" if multi else "softmax"

    def check_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        return p.check(
            self.name,
            params,
            {
                "top_k": p.integer(1, len(self.labels)),
                "function_to_apply": p.one_of("softmax", "sigmoid", "none"),
            },
        )

    def preprocess(self, inputs: list[str], params: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) for k, v in self.tokenizer.encode(inputs).items()}

    def forward(self, batch: dict[str, Any], params: dict[str, Any]) -> Any:
        return self.model(**batch).logits  # (B, num_labels)

    def postprocess(self, logits: Any, batch: dict[str, Any], params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        logits = logits.float()
        fn = params.get("function_to_apply", self.default_function)
        if fn == "softmax":
            scores = logits.softmax(dim=-1)
        elif fn == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        top_k = params.get("top_k", len(self.labels))
        out = []
        for row in scores.cpu().tolist():
            ranked = sorted(zip(self.labels, row), key=lambda pair: pair[1], reverse=True)[:top_k]
            out.append([{"label": label, "score": score} for label, score in ranked])
        return out
