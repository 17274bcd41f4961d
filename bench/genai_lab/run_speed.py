"""Alternating speed runs: each subject is a fresh process per round (so every round also gives a cold start),
and the order rotates between rounds. Stdlib only; run with any python from the repository root.

  python bench/genai_lab/run_speed.py ROUNDS SUBJECT... > results.json
  SUBJECT: hf | ort:<model dir under .cache/genai-models> | ov:<model dir under .cache/ov-models>
"""

import json
import statistics
import subprocess
import sys
import time

REF = ".cache/genai-lab/hf_ref.json"
FOLDER = ".cache/smollm2-folder"
THREADS = "2"


def command(subject):
    kind, _, name = subject.partition(":")
    if kind == "hf":
        return [".venv/bin/python", "bench/genai_lab/hf_ref.py", "speed", FOLDER, THREADS]
    if kind == "ort":
        return [
            ".venv-genai/bin/python",
            "bench/genai_lab/ort_genai_lab.py",
            "speed",
            f".cache/genai-models/{name}",
            THREADS,
            REF,
        ]
    if kind == "ov":
        return [
            ".venv-ov/bin/python",
            "bench/genai_lab/ov_genai_lab.py",
            "speed",
            f".cache/ov-models/{name}",
            THREADS,
            REF,
        ]
    raise SystemExit(f"unknown subject {subject}")


def main():
    rounds, subjects = int(sys.argv[1]), sys.argv[2:]
    results = {s: [] for s in subjects}
    for r in range(rounds):
        order = subjects[r % len(subjects) :] + subjects[: r % len(subjects)]
        for s in order:
            t_spawn = time.time()
            p = subprocess.run(["nice", "-n", "19", *command(s)], capture_output=True, text=True, check=False)
            if p.returncode != 0:
                print(f"{s} failed: {p.stderr[-2000:]}", file=sys.stderr)
                continue
            d = json.loads(p.stdout.strip().splitlines()[-1])
            d["cold_start_s"] = d["first_token_wall"] - t_spawn
            results[s].append(d)
            warm = d["runs"][1:]
            print(
                f"round {r} {s}: cold {d['cold_start_s']:.2f}s, warm decode "
                f"{statistics.median(x['decode_tps'] for x in warm):.1f} tok/s, ttft "
                f"{1000 * statistics.median(x['ttft_s'] for x in warm):.0f} ms, rss {d['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    summary = {}
    for s, ds in results.items():
        if not ds:
            continue
        warm = [x for d in ds for x in d["runs"][1:]]
        summary[s] = {
            "processes": len(ds),
            "decode_tps_median": statistics.median(x["decode_tps"] for x in warm),
            "ttft_ms_median": 1000 * statistics.median(x["ttft_s"] for x in warm),
            "cold_start_s_median": statistics.median(d["cold_start_s"] for d in ds),
            "peak_rss_mb_max": max(d["peak_rss_mb"] for d in ds),
            "tokens": ds[0]["runs"][0]["tokens"],
            "input_tokens": ds[0]["input_tokens"],
            "greedy": ds[0]["greedy"],
        }
    print(json.dumps({"subjects": subjects, "rounds": rounds, "summary": summary, "raw": results}))


if __name__ == "__main__":
    main()
