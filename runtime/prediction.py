"""What one prediction gave: the outputs, the stage timings, and for generation the token counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    outputs: list[Any]  # one JSON-ready output per input, in input order
    request_ms: dict[str, float]  # stage -> ms ("parse", "preprocess", "inference", "postprocess") and "total"
    time_to_first_token_ms: float | None = None  # generation: prefill + the first decode step
    generated_tokens: int | None = None  # generation: new tokens over all inputs; None for other tasks
    tokens_per_s: float | None = None  # generation: generated_tokens / inference seconds
    truncated_inputs: tuple[int, ...] = ()  # indices of the inputs cut at the model's max length
    input_tokens: int | None = None  # encoder tasks: tokens the model read, over all inputs (OpenAI's usage)
    facts: tuple[dict[str, Any], ...] = ()  # per output, in input order: the task's facts (runtime.tasks.Chunk.facts)

    @property
    def inference_ms(self) -> float:
        return self.request_ms.get("inference", 0.0)

    def timing_fields(self) -> dict[str, Any]:
        """The task's own fields of the response's "timing" (none for encoder tasks)."""
        out: dict[str, Any] = {}
        if self.time_to_first_token_ms is not None:
            out["time_to_first_token_ms"] = self.time_to_first_token_ms
        if self.generated_tokens is not None:
            out["generated_tokens"] = self.generated_tokens
            out["tokens_per_s"] = self.tokens_per_s
        if self.truncated_inputs:
            out["truncated_inputs"] = list(self.truncated_inputs)
        return out
