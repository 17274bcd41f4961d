"""Measuring a process: latency summaries, RSS sampling, kernel peak RSS, and running measured child processes.

Everything here is stdlib only (psutil is imported where it is used), so the orchestrator stays light and a
cold-start child pays nothing for it.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
# other processes' CPU (100 = one CPU) during a measurement above this: it carries their noise (retried or flagged)
NOISY_OTHER_CPU_PERCENT = 20.0


class BenchError(Exception):
    """A benchmark step failed; the message names the step and carries the tail of the child's stderr."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks, as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize_latencies(latencies_ms: Sequence[float], total_s: float) -> dict[str, float]:
    """jobs/s, total time and percentiles (ms) of one engine's timed requests.

    Args:
        latencies_ms: one wall-clock latency per request, in milliseconds.
        total_s: wall time of the whole timed loop (includes the loop's own overhead).
    """
    return {
        "requests": len(latencies_ms),
        "total_s": round(total_s, 4),
        "jobs_per_s": round(len(latencies_ms) / total_s, 2) if total_s else math.nan,
        "mean_ms": round(statistics.fmean(latencies_ms), 3),
        "min_ms": round(min(latencies_ms), 3),
        "p50_ms": round(percentile(latencies_ms, 50), 3),
        "p90_ms": round(percentile(latencies_ms, 90), 3),
        "p99_ms": round(percentile(latencies_ms, 99), 3),
        "max_ms": round(max(latencies_ms), 3),
    }


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors (1.0 for identical directions)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float(list(a) == list(b))


def proc_status_bytes(field: str) -> int:
    """A memory line of /proc/self/status in bytes: "VmRSS" (now) or "VmHWM" (the kernel's peak RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"/proc/self/status has no {field} line; this benchmark reads memory the Linux way")


class RssSampler:
    """Samples this process's RSS in a daemon thread every `interval_s` between start() and stop().

    One sample is a /proc read (~20 us) under the GIL; torch and ONNX Runtime release the GIL while they compute,
    so the sampler does not queue behind inference.
    """

    def __init__(self, *, interval_s: float = 0.01) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[int] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop sampling; returns {"samples", "mean_bytes", "peak_bytes"} over the sampled window."""
        self._stop.set()
        self._thread.join()
        self.samples.append(self._proc.memory_info().rss)
        return {
            "samples": len(self.samples),
            "mean_bytes": round(statistics.fmean(self.samples)),
            "peak_bytes": max(self.samples),
        }


def child_env(extra: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment every measured child gets: offline Hugging Face, repo root importable, `extra` on top."""
    env = dict(os.environ)
    for name in drop:
        env.pop(name, None)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")])),
        }
    )
    env.update(extra or {})
    return env


def _stderr_tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no stderr captured)"
    return text[-limit:].strip() or "(stderr empty)"


def run_child(
    argv: Sequence[str], *, what: str, env: Mapping[str, str], stderr_path: Path, timeout_s: float = 600
) -> tuple[int, int]:
    """Run a child with stdout silenced (the handler logs there) and stderr to a file.

    Returns:
        (t0_ns, exit_ns): time.monotonic_ns() just before the spawn and just after the child was reaped.
        CLOCK_MONOTONIC is system-wide on Linux, so a child's own monotonic stamps compare with t0_ns.

    Raises:
        BenchError: the child exited non-zero or ran past timeout_s; the message has its stderr tail.
    """
    with open(stderr_path, "wb") as err:
        t0 = time.monotonic_ns()
        proc = subprocess.Popen(list(argv), cwd=REPO_ROOT, env=dict(env), stdout=subprocess.DEVNULL, stderr=err)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError(
                f"{what}: still running after {timeout_s:.0f} s, killed; stderr: {_stderr_tail(stderr_path)}"
            ) from None
        exit_ns = time.monotonic_ns()
    if rc != 0:
        raise BenchError(f"{what}: child exited with status {rc}; stderr tail:\n{_stderr_tail(stderr_path)}")
    return t0, exit_ns


def run_worker(
    spec: Mapping[str, Any], *, what: str, workdir: Path, env: Mapping[str, str], timeout_s: float = 600
) -> tuple[dict[str, Any], int, int]:
    """Run `python -m bench.worker SPEC RESULT` in a fresh process and read its result.

    Returns:
        (result, t0_ns, exit_ns) as run_child gives them.

    Raises:
        BenchError: the worker failed or wrote no result.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9_.]+", "-", what).strip("-")  # "latency handler (torch)" -> latency-handler-torch
    spec_path, result_path = workdir / f"{tag}.spec.json", workdir / f"{tag}.result.json"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    argv = [sys.executable, "-m", "bench.worker", str(spec_path), str(result_path)]
    t0, exit_ns = run_child(argv, what=what, env=env, stderr_path=workdir / f"{tag}.stderr.txt", timeout_s=timeout_s)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"{what}: the worker exited 0 but left no readable result at {result_path}: {e}") from None
    return result, t0, exit_ns


def wait_for_quiet(*, busy_below_percent: float, max_wait_s: float, sample_s: float = 0.5) -> dict[str, float]:
    """Wait until the machine's CPUs are mostly idle, for at most max_wait_s (a shared box skews every number).

    Returns:
        {"waited_s", "busy_percent"}: how long it waited and the last system-wide CPU busy % (100 = all CPUs).
    """
    import psutil

    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=sample_s)
    while busy >= busy_below_percent and time.monotonic() - t0 < max_wait_s:
        busy = psutil.cpu_percent(interval=sample_s)
    return {"waited_s": round(time.monotonic() - t0, 1), "busy_percent": busy}


class OtherCpu:
    """CPU used by processes other than this one and its children over a window, as % of one CPU.

    Used around each cold-start child: system-wide busy time minus what this process and its reaped children used.
    """

    def __enter__(self) -> Self:
        import resource

        import psutil

        self._psutil, self._resource = psutil, resource
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._own0 = self._own()
        self.percent = 0.0
        return self

    def _busy(self) -> float:
        t = self._psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    def _own(self) -> float:
        me = self._resource.getrusage(self._resource.RUSAGE_SELF)
        kids = self._resource.getrusage(self._resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        other = (self._busy() - self._busy0) - (self._own() - self._own0)
        self.percent = round(max(0.0, other) / wall * 100, 1) if wall > 0 else 0.0
