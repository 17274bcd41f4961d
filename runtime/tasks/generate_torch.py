"""Decoding on the torch engine: transformers' `model.generate` with the runtime's stopping criteria.

generate() calls each stopping criterion right after a step's tokens are chosen, for every decoding strategy and
batch size: the first call marks the first new token, stop strings end a row once its new text holds one, and the
deadline (runtime/tasks/decode_loop.Deadline) ends every row once one more step would not fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.tasks.decode_loop import Deadline


class _FirstTokenClock:
    """A criterion that never stops: its first call marks the first new token (prefill included)."""

    def __init__(self) -> None:
        self.first_token_ns: int | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.first_token_ns is None:
            if input_ids.is_cuda:  # kernels run asynchronously: the token exists once the stream got there
                torch.cuda.synchronize(input_ids.device)
            self.first_token_ns = time.perf_counter_ns()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class _StopOnStrings:
    """Marks a row finished once its new text contains one of the stop strings."""

    def __init__(self, stopped: Callable[[list[int]], bool], start: int) -> None:
        self.stopped, self.start = stopped, start

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = input_ids[:, self.start :].tolist()  # (rows, new tokens so far); rows = batch x beams
        return torch.tensor([self.stopped(row) for row in rows], dtype=torch.bool, device=input_ids.device)


class _TimeLimit:
    """Stops every row once the deadline says one more step would not fit."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.deadline.stop_now()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class TorchGenerated:
    new_tokens: list[list[int]]  # per row, after the prompt (decoder-only) or the decoder start token (seq2seq)
    first_token_ns: int | None
    logprobs: list[list[np.ndarray]] | None  # per row, per step: log_softmax of the processed scores


def generate(
    model: Any,
    device: str,
    batch: dict[str, Any],
    config: Any,
    *,
    deadline: Deadline,
    stopped: Callable[[list[int]], bool] | None,
    new_tokens_start: int,
    seed: int | None,
) -> TorchGenerated:
    """Run model.generate on the (B, T) numpy batch with `config` (a transformers GenerationConfig)."""
    import torch
    from transformers import StoppingCriteriaList

    clock = _FirstTokenClock()
    criteria: list[Any] = [clock, _TimeLimit(deadline)]
    if stopped is not None:
        criteria.append(_StopOnStrings(stopped, new_tokens_start))
    if seed is not None:
        torch.manual_seed(seed)
    details = bool(config.output_scores)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.from_numpy(batch["input_ids"]).to(device),
            attention_mask=torch.from_numpy(batch["attention_mask"]).to(device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList(criteria),
        )
    sequences, scores = (out.sequences, out.scores) if details else (out, None)
    rows = [row[new_tokens_start:] for row in sequences.cpu().tolist()]
    logprobs = None
    if scores is not None:
        steps = [torch.log_softmax(step.float(), dim=-1).cpu().numpy() for step in scores]
        logprobs = [[step[i] for step in steps] for i in range(len(rows))]
    return TorchGenerated(rows, clock.first_token_ns, logprobs)


def prompt_logprobs(model: Any, device: str, prompt: list[int]) -> np.ndarray:
    """(T, V) log-probabilities after each prompt token (row k scores token k + 1)."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([prompt], device=device)
        return torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1).cpu().numpy()
