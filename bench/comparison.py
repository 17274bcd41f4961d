"""The engine-choice table: every way to serve the model side by side, from one run's results.

Columns: the --bundle as built (for `make bench` the default build, whose engine the builder chose by measurement),
the bundle built with `--engine onnxruntime`, with `--quantize int8`, with `--engine torch`, the naive
`transformers.pipeline("feature-extraction")` and plain `onnxruntime.InferenceSession` fp32. Rows: cold start, warm
p50 and p99, p50 at one thread, peak RSS, model files on disk, runtime install, and the Lambda cost per million
requests at three memory sizes (bench.lambda_cost). Plus the goal rows the issue sets for the engine choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import lambda_cost
from bench.report import Row
from bench.suite import DEFAULT_KEY, INT8_KEY, handler_key

# results key -> column heading (two lines)
COLUMNS: tuple[tuple[str, tuple[str, str]], ...] = (
    (DEFAULT_KEY, ("default build", "")),  # the second line names the engine it holds
    (handler_key("onnxruntime"), ("ONNX fp32", "bundle")),
    (INT8_KEY, ("ONNX int8", "bundle")),
    (handler_key("torch"), ("torch eager", "bundle")),
    ("naive", ("pipeline", "(transformers)")),
    ("ort", ("plain ORT", "fp32")),
)
GOALS = {
    "default_p50": 0.9,  # default build p50 / plain ORT fp32 p50
    "int8_p50": 0.6,  # int8 bundle p50 / plain ORT fp32 p50
    "default_cold": 0.5,  # default build cold start / `import torch`
    "install": 0.2,  # default build's runtime install / the torch runtime install
    "bundle": 1.02,  # default build bundle / (source weights + tokenizer.json)
}


def _default_engine(r: dict[str, Any]) -> str:
    b = r["bundle"]
    return f"{b['engine']} int8" if b["dtype"] == "int8" else str(b["engine"])


def summarize(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per subject present in the results: the table's figures, the Lambda cost per size included (for bench.json).

    Returns:
        {results key: {"label", "cold_start_ms", "p50_ms", "p99_ms", "threads", "p50_ms_by_threads",
        "peak_rss_bytes", "model_bytes", "model_what", "install_bytes", "install_what",
        "lambda": {memory MB: {"duration_ms", "usd_per_million", "fits"}}}}.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, (top, bottom) in COLUMNS:
        e = r["engines"].get(key)
        if e is None:
            continue
        cold = r["cold_start"].get(key)
        by_threads = {int(t): x["summary"]["p50_ms"] for t, x in r.get("threads_p50", {}).get(key, {}).items()}
        peak = e["rss"]["kernel_peak_bytes"]  # VmHWM of the latency process: build, warm-up, timed loop, parity
        fp = r["footprint"][key]
        install = fp["install"]
        costs: dict[int, dict[str, Any]] = {}
        for mb, _ in lambda_cost.SIZES:
            try:
                d = lambda_cost.duration_ms(mb, by_threads)
            except KeyError:
                continue
            fits = peak <= mb * 2**20
            costs[mb] = {
                "duration_ms": round(d, 3),
                "usd_per_million": round(lambda_cost.usd_per_million(mb, d), 4) if fits else None,
                "fits": fits,
            }
        label = f"{top} ({_default_engine(r)})" if key == DEFAULT_KEY else f"{top} {bottom}".strip()
        out[key] = {
            "label": label,
            "cold_start_ms": cold["median_ms"] if cold else None,
            "cold_start_runs": len(cold["runs"]) if cold else 0,
            "p50_ms": e["summary"]["p50_ms"],
            "p99_ms": e["summary"]["p99_ms"],
            "threads": e["info"].get("threads") or r["options"]["threads"],
            "p50_ms_by_threads": by_threads,
            "peak_rss_bytes": peak,
            "model_bytes": fp["model"]["bytes"],
            "model_what": fp["model"]["what"],
            "install_bytes": install["bytes"] if install else None,
            "install_what": install["what"] if install else None,
            "lambda": costs,
        }
    return out


def _mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MB"


def _ms(n: float | None, digits: int = 2) -> str:
    return "n/a" if n is None else f"{n:.{digits}f} ms"


def format_table(r: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    """The subjects as columns, the figures as rows, in one fixed-width text block."""
    keys = [k for k, _ in COLUMNS if k in summary]
    heads = dict(COLUMNS)
    threads = r["options"]["threads"]
    runs = max((s["cold_start_runs"] for s in summary.values()), default=0)
    head1 = ["", *(heads[k][0] for k in keys)]
    head2 = ["", *(f"({_default_engine(r)})" if k == DEFAULT_KEY else heads[k][1] for k in keys)]

    def cost(s: dict[str, Any], mb: int) -> str:
        c = s["lambda"].get(mb)
        if c is None:
            return "n/a"
        return "no fit" if not c["fits"] else f"${c['usd_per_million']:.3f}"

    body: list[list[str]] = [
        [f"cold start (median of {runs})", *(_ms(summary[k]["cold_start_ms"], 0) for k in keys)],
        [f"warm p50 ({threads} threads)", *(_ms(summary[k]["p50_ms"]) for k in keys)],
        [f"warm p99 ({threads} threads)", *(_ms(summary[k]["p99_ms"]) for k in keys)],
        ["warm p50 (1 thread)", *(_ms(summary[k]["p50_ms_by_threads"].get(1)) for k in keys)],
        ["peak RSS", *(_mb(summary[k]["peak_rss_bytes"]) for k in keys)],
        ["model files on disk", *(_mb(summary[k]["model_bytes"]) for k in keys)],
        ["runtime install", *(_mb(summary[k]["install_bytes"]) for k in keys)],
        *([f"$ / 1M requests, {mb} MB", *(cost(summary[k], mb) for k in keys)] for mb, _ in lambda_cost.SIZES),
    ]
    cells = [head1, head2, *body]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head1))]

    def line(row: list[str]) -> str:
        return "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head1), line(head2), sep, *(line(row) for row in body)])


def notes(r: dict[str, Any], summary: dict[str, dict[str, Any]]) -> list[str]:
    """What the table's rows mean, which engine the default build holds and why, and a column left out."""
    b = r["bundle"]
    choice = b.get("engine_choice")
    why = f"chosen at build time: {choice.get('reason')}" if choice else "forced at build time (no engine_choice)"
    out = [f"default build: {b['path']} holds {_default_engine(r)}, {why}"]
    whats = {s["model_what"] for s in summary.values()}
    out.append(
        "model files on disk: "
        + "; ".join(
            f"{', '.join(s['label'] for s in summary.values() if s['model_what'] == w)}: {w}" for w in sorted(whats)
        )
    )
    installs = {s["install_what"] for s in summary.values() if s["install_what"]}
    out.append(
        "runtime install: installed files of these distributions and everything they require: "
        + "; ".join(
            f"{', '.join(s['label'] for s in summary.values() if s['install_what'] == w)}: {w}"
            for w in sorted(installs)
        )
        + ("" if all(s["install_bytes"] for s in summary.values()) else "; n/a: .venv-onnx missing (make setup)")
    )
    out.append(lambda_cost.MODEL)
    int8 = r.get("int8_bundle")
    if int8 and "error" in int8:
        out.append(f"ONNX int8 bundle: left out, it did not build: {int8['error'].splitlines()[0]}")
    elif int8 and int8.get("quantization"):
        q = int8["quantization"]
        kept: dict[str, Any] = next((t for t in q.get("tried", []) if t.get("passed")), {})
        out.append(
            f"ONNX int8 bundle: scheme {q.get('scheme')}, fidelity vs fp32 min cosine {kept.get('min_cosine')}, mean "
            f"{kept.get('mean_cosine')} on {q.get('texts')} texts (floors {q.get('floors')})"
        )
    return out


def goal_rows(r: dict[str, Any], summary: dict[str, dict[str, Any]]) -> list[Row]:
    """The issue's goals for the engine choice: the default build's and the int8 bundle's p50 against plain ORT
    fp32, the default build's cold start against `import torch`, its runtime install against torch's, its bundle
    against the weights and tokenizer it holds."""
    rows: list[Row] = []
    ort = summary.get("ort")
    d = summary.get(DEFAULT_KEY)
    q = summary.get(INT8_KEY)
    torch_install = summary.get(handler_key("torch"), {}).get("install_bytes")
    if d and ort:
        rows.append(_row("p50: default build / ORT fp32", d["p50_ms"], ort["p50_ms"], GOALS["default_p50"], _ms))
    if q and ort:
        rows.append(_row("p50: int8 bundle / ORT fp32", q["p50_ms"], ort["p50_ms"], GOALS["int8_p50"], _ms))
    if d:
        torch_ms = r["cold_start"]["import_torch"]["median_ms"]
        rows.append(
            _row(
                "cold start: default build / import torch",
                d["cold_start_ms"],
                torch_ms,
                GOALS["default_cold"],
                lambda x: _ms(x, 0),
            )
        )
        rows.append(
            _row("runtime install: default build / torch", d["install_bytes"], torch_install, GOALS["install"], _mb)
        )
        wt = r["weights_and_tokenizer"]
        rows.append(
            _row(
                "bundle: default build / (weights + tokenizer)",
                d["model_bytes"],
                wt["weights_bytes"] + wt["tokenizer_bytes"],
                GOALS["bundle"],
                _mb,
            )
        )
    return rows


def _row(check: str, a: float | None, b: float | None, goal: float, fmt: Callable[[float | None], str]) -> Row:
    ratio = round(a / b, 3) if a is not None and b else None
    return Row(check, ratio, f"<= {goal}", f"{fmt(a)} / {fmt(b)}")
