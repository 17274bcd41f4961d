"""The runtime's own decoding loop, for engines that run one step at a time (onnxruntime-genai). numpy only.

Each step scores the next token as transformers' generate() does for the same settings, in its order:
repetition_penalty, then, when sampling, temperature, top_k and top_p; greedy takes the first highest score
(torch.argmax's choice), sampling draws from the softmax with numpy's PCG64 seeded by the request's seed, so a
seed gives the same answer again on the same engine (not the same draw as torch's generator).

A sequence ends at an eos token, at max_new_tokens, when its new text contains a stop string, or when the
invocation's time left no longer covers the slowest step so far plus the margin (runtime/deadline.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.deadline import invocation_remaining_ms

# Settings the loop implements; any other generation setting a model's generation_config holds makes the builder
# keep that model on the torch engine (bundle_builder.genai_export.unsupported_settings).
LOOP_SETTINGS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "num_beams")
# transformers' values when a generation_config leaves them out
DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0}


@dataclass(frozen=True)
class Decoded:
    """One prompt's new tokens (up to and with its eos), when its first token existed, whether the time limit cut it,
    and each step's log-probabilities of the processed scores when asked for."""

    tokens: list[int]
    first_token_ns: int | None
    time_limited: bool
    logprobs: list[np.ndarray] | None


class Deadline:
    """Whether one more step fits in the invocation's time left: the slowest step so far plus the margin must."""

    def __init__(self, margin_ms: int) -> None:
        self.margin_ms = margin_ms
        self.fired = False
        self._last: float | None = None
        self._slowest_ms = 0.0

    def stop_now(self) -> bool:
        now = time.perf_counter()
        if self._last is not None:
            self._slowest_ms = max(self._slowest_ms, (now - self._last) * 1000)
        self._last = now
        left = invocation_remaining_ms()
        stop = left is not None and left - self.margin_ms < self._slowest_ms
        self.fired = self.fired or stop
        return stop


def decode(
    engine: Any,
    prompt: list[int],
    settings: dict[str, Any],
    *,
    eos: set[int],
    deadline: Deadline,
    rng: np.random.Generator | None,
    stopped: Callable[[list[int]], bool] | None = None,
    keep_logprobs: bool = False,
) -> Decoded:
    """Decode one prompt on a step engine (`engine.start(prompt, max_new_tokens)` -> sequence with logits()/append()).

    Args:
        settings: max_new_tokens, do_sample and the scoring settings (DEFAULTS for those left out).
        rng: the seeded generator when sampling, else None.
        stopped: called with the new tokens after each step: True ends the sequence (stop strings).
    """
    max_new = settings["max_new_tokens"]
    sampling = bool(settings.get("do_sample"))
    penalty = float(settings.get("repetition_penalty") or DEFAULTS["repetition_penalty"])
    sequence = engine.start(prompt, max_new)
    seen = np.zeros(0, dtype=np.int64) if penalty == 1.0 else np.unique(np.asarray(prompt, dtype=np.int64))
    tokens: list[int] = []
    logprobs: list[np.ndarray] | None = [] if keep_logprobs else None
    first_ns = None
    while True:
        scores = sequence.logits()
        if penalty != 1.0:
            scores = _penalised(scores, seen, penalty)
        if sampling:
            scores = _warped(scores, settings)
            token = _sample(scores, rng)
        else:
            token = int(np.argmax(scores))
        if logprobs is not None:
            logprobs.append(log_softmax(scores))
        tokens.append(token)
        if first_ns is None:
            first_ns = time.perf_counter_ns()
        if penalty != 1.0 and token not in seen:
            seen = np.append(seen, token)
        if token in eos or len(tokens) >= max_new or (stopped is not None and stopped(tokens)) or deadline.stop_now():
            break
        sequence.append(token)
    return Decoded(tokens, first_ns, deadline.fired and len(tokens) < max_new, logprobs)


def prompt_logprobs(engine: Any, prompt: list[int]) -> np.ndarray:
    """(T, V) log-probabilities after each prompt token (row k scores token k + 1)."""
    return log_softmax(engine.start(prompt, 1).all_logits())


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis in float64 then float32, as torch's log_softmax of float32 gives it (-inf stays)."""
    x = scores.astype(np.float64)
    top = np.max(x, axis=-1, keepdims=True)
    shifted = x - top
    return (shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))).astype(np.float32)


def _penalised(scores: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """RepetitionPenaltyLogitsProcessor: each token already in the sequence has its score divided by the penalty
    (multiplied when negative)."""
    if not len(seen):
        return scores
    out = scores.copy()
    picked = out[seen]
    out[seen] = np.where(picked < 0, picked * np.float32(penalty), picked / np.float32(penalty))
    return out


def _warped(scores: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, in that order; removed tokens get -inf."""
    temperature = float(settings.get("temperature") or DEFAULTS["temperature"])
    top_k = settings.get("top_k", DEFAULTS["top_k"])
    top_p = float(settings.get("top_p") or DEFAULTS["top_p"])
    out = scores / np.float32(temperature) if temperature != 1.0 else scores.copy()
    if top_k:
        k = min(int(top_k), out.shape[-1])
        kth = np.partition(out, -k)[-k]
        out[out < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(out, kind="stable")  # ascending, as torch.sort(descending=False)
        probs = _softmax(out[order])
        remove = np.cumsum(probs) <= 1 - top_p
        remove[-1] = False  # min_tokens_to_keep = 1
        out[order[remove]] = -np.inf
    return out


def _sample(scores: np.ndarray, rng: np.random.Generator | None) -> int:
    if rng is None:
        raise ValueError("sampling needs a seeded generator")
    probs = _softmax(scores).astype(np.float64)
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - np.max(x))
    return e / e.sum()
