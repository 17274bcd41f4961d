"""make bench-generation's report: the goals of issue #15 as ratios ours / llama.cpp, the table, and the notes under
it (settings, identical texts and prompts, skips, noise). Figures come from bench.generation_llama's summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUBJECTS = ("ours", "transformers", "llama-cpp")
LABELS = {"ours": "this project", "transformers": "model.generate", "llama-cpp": "llama.cpp"}
# (figure, key, higher is better, goal for ours / llama.cpp)
GOALS = (
    ("decode tokens/s", "decode_tokens_per_s", True, 1.0),
    ("time to first token, ms", "ttft_ms", False, 1.0),
    ("cold start to first token, ms", "cold_start_ms", False, 1.0),
    ("peak RSS, MiB", "peak_rss_mib", False, 1.2),
)
NOISY_OTHER_CPU_PERCENT = 20.0  # other processes' CPU (100 = one CPU) during a child above this: flagged


def goal_rows(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per goal: the three figures, ours / llama.cpp, and the verdict (met, or missed by how much)."""
    rows = []
    llama = summary.get("llama-cpp")
    for figure, key, higher, goal in GOALS:
        ours = summary["ours"][key]
        row: dict[str, Any] = {"figure": figure, "goal": f"{'>=' if higher else '<='} {goal:.1f}x"}
        row |= {s: summary[s][key] if s in summary else None for s in SUBJECTS}
        if llama is None or not ours or not llama[key]:
            row |= {"ratio": None, "verdict": "not measured"}
        else:
            ratio = ours / llama[key]
            row["ratio"] = round(ratio, 3)
            row["verdict"] = _verdict(ratio, goal, higher=higher)
        rows.append(row)
    return rows


def _verdict(ratio: float, goal: float, *, higher: bool) -> str:
    if (ratio >= goal) if higher else (ratio <= goal):
        return "met"
    if higher:  # ours must grow by goal / ratio
        return f"missed by {1 - ratio / goal:.0%}: needs {goal / ratio:.2f}x"
    return f"missed by {ratio / goal - 1:.0%}: needs {1 - goal / ratio:.0%} less"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["figure", *(LABELS[s] for s in SUBJECTS), "ours / llama.cpp", "goal", "result"]
    body = [
        [r["figure"], *(_fmt(r[s]) for s in SUBJECTS), f"{r['ratio']:.2f}x" if r["ratio"] else "-", r["goal"]]
        + [r["verdict"]]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in body]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join(["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |", rule, *lines])


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def notes(results: dict[str, Any]) -> list[str]:
    """The lines under the table: settings, identical texts and prompts, skips, noise."""
    s, c = results["settings"], results["checks"]
    out = [
        f"SmolLM2-135M-Instruct ({Path(results['setup']['gguf']).name}); greedy, {s['max_new_tokens']} new tokens, "
        f"{s['threads']} threads, prompt of {c['prompt_tokens']} tokens (one chat, rendered with the bundle's "
        f"template); {s['rounds']} rounds of one fresh process per subject, order rotated, {s['repeats']} warm runs "
        f"after the cold one; llama.cpp n_ctx {s['n_ctx']}",
    ]
    model = results["rounds"]["ours"][0]["model"]
    out.append(
        f"our bundle: {Path(results['setup']['bundle']).name}, engine {model.get('engine')} "
        f"({model.get('implementation')}); the transformers tokenizer's template renders the same chat text: "
        f"{c['transformers_template_same_text']}"
    )
    same = c["same_text_as_ours"]
    if all(same.values()) and all(c["stable_within_subject"].values()):
        out.append(f"greedy texts: identical in every run of {', '.join(LABELS[x] for x in results['rounds'])}")
    else:
        out.append(f"greedy texts: NOT all identical (same as ours: {same}; stable: {c['stable_within_subject']})")
        out += [
            f"  {LABELS[x]}: the first {n} of our {c['chars_of_ours']} characters are the same"
            for x, n in c["prefix_chars_same_as_ours"].items()
            if not same[x]
        ]
        out += [f"  {LABELS[x]}: {t!r}" for x, t in c["texts"].items()]
        if not same.get("llama-cpp", True):
            out.append(
                "  (llama.cpp computes with the GGUF's quantised weights and 8-bit activations, ours and "
                "model.generate with the fp32 weights dequantised from them: greedy paths may part once two "
                "candidates' scores are close; only ours and model.generate must agree token for token)"
            )
    out.append(f"prompt tokens the same as ours: {c['same_prompt_tokens_as_ours']}")
    if results["llama_skipped"]:
        out.append(f"llama.cpp SKIPPED: {results['llama_skipped']}")
    ours = results["summary"]["ours"]
    out.append(
        f"our cold start: Function.load {ours['init_ms']:.0f} ms (median), of which the canary (one golden "
        f"generation at init) {ours['canary_ms']:.0f} ms"
    )
    for subject, fig in results["summary"].items():
        if fig["other_cpu_percent"] and fig["other_cpu_percent"] > NOISY_OTHER_CPU_PERCENT:
            out.append(
                f"noisy: other processes used {fig['other_cpu_percent']:.0f}% of a CPU (median) while "
                f"{LABELS[subject]} ran; its figures carry their noise"
            )
    return out
