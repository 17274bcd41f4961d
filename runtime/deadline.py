"""Will the next chunk of work finish before Lambda stops the invocation?

Lambda kills an invocation at its timeout: work in flight is lost and an SQS batch comes back whole. Before each
chunk the caller asks `allows_next()`: the time left (`context.get_remaining_time_in_millis()`) must cover the
longest chunk so far plus DEADLINE_MARGIN_MS (time to deliver results and return). A context without the method (a
local call) has no deadline.

Work deeper down (a decoding loop) reads the invocation's time left through `invocation_remaining_ms()`: the function
sets it for the whole invocation with `invocation(context)`, so no task signature carries the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_remaining: ContextVar[Callable[[], int] | None] = ContextVar("invocation_remaining_ms", default=None)


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Make `context.get_remaining_time_in_millis` what invocation_remaining_ms() reads, for this invocation."""
    method = getattr(context, "get_remaining_time_in_millis", None)
    token = _remaining.set(method if callable(method) else None)
    try:
        yield
    finally:
        _remaining.reset(token)


def invocation_remaining_ms() -> float | None:
    """Milliseconds left in the current invocation; None outside one, or when its context has no deadline."""
    method = _remaining.get()
    return float(method()) if method is not None else None


class Deadline:
    def __init__(self, context: Any, margin_ms: int) -> None:
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)
        self.margin_ms = margin_ms
        self.longest_ms = 0.0
        self._left_ms: float | None = None

    def remaining_ms(self) -> float | None:
        return float(self._remaining()) if callable(self._remaining) else None

    def allows_next(self) -> bool:
        self._left_ms = self.remaining_ms()
        return self._left_ms is None or self._left_ms - self.margin_ms >= self.longest_ms

    @contextmanager
    def chunk(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - started) * 1000)

    def fields(self) -> dict[str, Any]:
        return {
            "remaining_ms": self._left_ms,
            "margin_ms": self.margin_ms,
            "longest_chunk_ms": round(self.longest_ms, 1),
        }

    def describe(self) -> str:
        return (
            f"not started: {self._left_ms:.0f} ms of the invocation left, less than the longest chunk so far "
            f"({self.longest_ms:.0f} ms) plus DEADLINE_MARGIN_MS ({self.margin_ms} ms)"
        )
