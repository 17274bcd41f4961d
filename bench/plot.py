"""latency_cdf.png: one empirical CDF of single-sample latency per engine, from the results of bench.suite.run."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
