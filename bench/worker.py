"""Subprocess entry: `python -m bench.worker SPEC.json RESULT.json` measures one engine in one fresh process.

Modes (spec["mode"]):
    import-torch  import torch only; stamp the time, report RSS (the cold-start and memory baselines)
    cold          build the engine, answer one request, stamp the time, exit (fresh process -> first response)
    latency       build, warm up, time `requests` single-sample calls while sampling CPU and RSS, then embed
                  the golden inputs for the parity check
    sqs           the handler only: records/s through handler.handler for events of `batch` records each
    generation    bench.generation.bench_generation: our predictor vs model.generate, interleaved in this process
    rerank        bench.rerank.bench_rerank: our predictor (each engine's bundle) vs CrossEncoder.rank, interleaved

Stamps are time.monotonic_ns() (CLOCK_MONOTONIC, system-wide), compared by the parent with its own spawn time.
Only the stdlib is imported at module level, so a cold child pays for nothing but its engine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _import_torch(spec: dict[str, Any]) -> dict[str, Any]:
    import torch  # noqa: F401 - the import is the measurement

    stamp = time.monotonic_ns()
    from bench.measure import proc_status_bytes

    return {"ready_ns": stamp, "rss_bytes": proc_status_bytes("VmRSS"), "peak_rss_bytes": proc_status_bytes("VmHWM")}


def _cold(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.engines import build_engine

    engine = build_engine(spec["engine"], spec)
    engine.embed(spec["sentence"])
    stamp = time.monotonic_ns()
    return {"ready_ns": stamp, "info": engine.describe(), "torch_imported": "torch" in sys.modules}


def _cpu_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


def _latency(spec: dict[str, Any]) -> dict[str, Any]:
    import psutil

    from bench.engines import build_engine
    from bench.measure import RssSampler, proc_status_bytes, summarize_latencies

    t = time.perf_counter()
    engine = build_engine(spec["engine"], spec)
    text = spec["sentence"]
    first = engine.embed(text)
    init_s = time.perf_counter() - t
    for _ in range(spec["warmup"]):
        engine.embed(text)

    proc = psutil.Process()
    latencies: list[float] = []
    sampler = RssSampler(interval_s=spec.get("rss_interval_s", 0.01)).start()
    proc.cpu_percent(None)  # starts psutil's interval: the next call gives the mean over the timed loop
    busy0 = _cpu_busy_s()
    start = time.perf_counter_ns()
    for _ in range(spec["requests"]):
        t0 = time.perf_counter_ns()
        engine.embed(text)
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
    total_s = (time.perf_counter_ns() - start) / 1e9
    cpu_percent = proc.cpu_percent(None)
    machine_busy = (_cpu_busy_s() - busy0) / total_s * 100  # all CPUs, all processes
    rss = sampler.stop()

    golden = [engine.embed(g["input"], g.get("parameters") or None) for g in spec["golden"]]
    out: dict[str, Any] = {
        "info": engine.describe(),
        "init_s": round(init_s, 3),
        "summary": summarize_latencies(latencies, total_s),
        "latencies_ms": [round(x, 4) for x in latencies],
        "cpu_percent": round(cpu_percent, 1),
        "machine_busy_percent": round(machine_busy, 1),
        "other_processes_cpu_percent": round(max(0.0, machine_busy - cpu_percent), 1),
        "rss": {**rss, "kernel_peak_bytes": proc_status_bytes("VmHWM"), "end_bytes": proc_status_bytes("VmRSS")},
        "dims": len(first),
        "golden_embeddings": golden,
    }
    if hasattr(engine, "token_count"):
        out["sentence_tokens"] = engine.token_count(text)
    return out


def _sqs(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.engines import HandlerEngine
    from bench.measure import proc_status_bytes

    engine = HandlerEngine(spec["bundle"], threads=int(spec["threads"]), expect_engine=spec.get("expect_engine"))
    body = json.dumps({"inputs": spec["sentence"]})
    records, sizes = int(spec["records"]), [int(b) for b in spec["batch_sizes"]]
    engine.embed(spec["sentence"])  # one direct invoke, so describe() can say which engine answered
    for size in sizes:  # warm-up: each event shape a few times
        for i in range(3):
            engine.sqs([body] * size, batch_index=-1 - i)
    # rounds alternate the shapes so drift in machine load hits both alike
    rounds = max(1, int(spec.get("rounds", 2)))
    elapsed = {size: 0.0 for size in sizes}
    done = {size: 0 for size in sizes}
    failures = {size: 0 for size in sizes}
    per_round = max(*sizes, records // rounds)
    for r in range(rounds):
        for size in sizes:
            events = max(1, per_round // size)
            t0 = time.perf_counter_ns()
            for e in range(events):
                failures[size] += engine.sqs([body] * size, batch_index=r * 100_000 + e)
            elapsed[size] += (time.perf_counter_ns() - t0) / 1e9
            done[size] += events * size
    return {
        "info": engine.describe(),
        "by_batch": {
            str(size): {
                "records": done[size],
                "events": done[size] // size,
                "total_s": round(elapsed[size], 4),
                "records_per_s": round(done[size] / elapsed[size], 2),
                "batch_item_failures": failures[size],
            }
            for size in sizes
        },
        "kernel_peak_rss_bytes": proc_status_bytes("VmHWM"),
    }


def _generation(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.generation import bench_generation
    from bench.measure import proc_status_bytes

    result = bench_generation(
        spec["bundle"],
        spec["source"],
        spec["prompt"],
        int(spec["max_new_tokens"]),
        repeats=int(spec["repeats"]),
        threads=int(spec["threads"]),
    )
    return {**result, "kernel_peak_rss_bytes": proc_status_bytes("VmHWM")}


def _rerank(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.measure import proc_status_bytes
    from bench.rerank import bench_rerank

    result = bench_rerank(
        spec["bundles"],
        spec["source"],
        warmup=int(spec["warmup"]),
        repeats=int(spec["repeats"]),
        threads=int(spec["threads"]),
    )
    return {**result, "kernel_peak_rss_bytes": proc_status_bytes("VmHWM")}


MODES = {
    "import-torch": _import_torch,
    "cold": _cold,
    "latency": _latency,
    "sqs": _sqs,
    "generation": _generation,
    "rerank": _rerank,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    mode = MODES.get(spec.get("mode", ""))
    if mode is None:
        print(f"ValueError: spec mode {spec.get('mode')!r} is not one of {sorted(MODES)}", file=sys.stderr)
        return 2
    result = mode(spec)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
