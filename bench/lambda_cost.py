"""The Lambda cost model of the engine-choice table: price per million warm requests at a few memory sizes.

Lambda (x86) bills $0.0000166667 per GB-second of duration, rounded up to the millisecond, plus $0.20 per million
requests, and gives CPU in proportion to memory: one full vCPU at 1769 MB, about 0.58 of one at 1024 MB and about 1.7
at 3008 MB. A machine with whole cores cannot give a process 0.58 of one, so the duration at each size is modelled
from p50s measured here:

    1769 MB   p50 with 1 thread
    1024 MB   p50 with 1 thread x 1769 / 1024 (the CPU share; a single-threaded request slows in proportion)
    3008 MB   p50 with 2 threads (two full cores here, 1.7 vCPU on Lambda: optimistic by up to 2 / 1.7)

Warm requests only: init duration, which Lambda also bills for container images, is left out (it depends on how
often containers start).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

USD_PER_GB_S = 0.0000166667  # x86, us-east-1
USD_PER_MILLION_REQUESTS = 0.20
FULL_VCPU_MB = 1769  # the memory size that gets one whole vCPU
# memory size (MB) -> the thread count its p50 is measured with
SIZES: tuple[tuple[int, int], ...] = ((1024, 1), (1769, 1), (3008, 2))

MODEL = (
    "cost per million warm requests, x86: memory GB x duration (rounded up to 1 ms) x $0.0000166667/GB-s + $0.20; "
    "duration = p50 at 1 thread for 1769 MB (1 vCPU), that x 1769/1024 for 1024 MB (~0.58 vCPU), p50 at 2 threads for "
    "3008 MB (~1.7 vCPU; 2 whole cores here, so optimistic); init not included; 'no fit' where the peak RSS "
    "exceeds the memory size"
)


def duration_ms(memory_mb: int, p50_ms_by_threads: Mapping[int, float]) -> float:
    """The modelled duration of one warm request at `memory_mb` from the p50s measured per thread count.

    Raises:
        KeyError: `memory_mb` is not one of SIZES, or its thread count was not measured.
    """
    p50 = p50_ms_by_threads[dict(SIZES)[memory_mb]]
    return p50 * FULL_VCPU_MB / memory_mb if memory_mb < FULL_VCPU_MB else p50


def usd_per_million(memory_mb: int, duration: float) -> float:
    """What a million requests of `duration` ms each cost at `memory_mb`: compute (billed per started ms) + requests."""
    billed_s = math.ceil(duration) / 1000
    return 1_000_000 * memory_mb / 1024 * billed_s * USD_PER_GB_S + USD_PER_MILLION_REQUESTS
