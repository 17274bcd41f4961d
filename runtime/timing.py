"""Stage timing: perf_counter_ns on a CPU; on CUDA, events recorded on the stream and a synchronize before reading."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StageTimer:
    """Times named stages of one request. `as_ms()` -> {stage: ms, ..., "total": ms} where total spans all stages."""

    def __init__(self, *, cuda: bool = False) -> None:
        self._cuda = cuda
        self._start = time.perf_counter_ns()
        self._end = self._start
        self.stages_ns: dict[str, int] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._cuda:
            with self._cuda_stage(name):
                yield
            return
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self._end = time.perf_counter_ns()
            self.stages_ns[name] = self.stages_ns.get(name, 0) + self._end - t0

    @contextmanager
    def _cuda_stage(self, name: str) -> Iterator[None]:
        import torch

        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        try:
            yield
        finally:
            stop.record()
            torch.cuda.synchronize()  # kernels run asynchronously: read no time before they finished
            self._end = time.perf_counter_ns()
            self.stages_ns[name] = self.stages_ns.get(name, 0) + int(start.elapsed_time(stop) * 1e6)

    def as_ms(self) -> dict[str, Any]:
        out = {k: round(v / 1e6, 3) for k, v in self.stages_ns.items()}
        out["total"] = round((self._end - self._start) / 1e6, 3)
        return out
