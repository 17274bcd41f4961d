"""make bench-generation's report: the goals of issue #15 as ratios ours / llama.cpp for each of our bundles (the
default build, exact, and the `--quantize int8` one), the figures and goals tables, and the notes under them
(settings, each bundle's engine, dtype and int8 fidelity record, identical texts and prompts, skips, noise). Figures
come from bench.generation_llama's summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBJECTS = ("ours", "ours-int8", "transformers", "llama-cpp")
OURS = ("ours", "ours-int8")  # this project's bundles: the default build, and the int8 one (its text may differ)
LABELS = {
    "ours": "this project",
    "ours-int8": "this project int8",
    "transformers": "model.generate",
    "llama-cpp": "llama.cpp",
}
# (figure, key, higher is better, goal for ours / llama.cpp)
GOALS = (
    ("decode tokens/s", "decode_tokens_per_s", True, 1.0),
    ("time to first token, ms", "ttft_ms", False, 1.0),
    ("cold start to first token, ms", "cold_start_ms", False, 1.0),
    ("peak RSS, MiB", "peak_rss_mib", False, 1.2),
)
NOISY_OTHER_CPU_PERCENT = 20.0  # other processes' CPU (100 = one CPU) during a child above this: flagged


def goal_rows(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per subject of ours measured and goal: its figure, llama.cpp's, ours / llama.cpp and the verdict
    (met, or missed by how much)."""
    llama = summary.get("llama-cpp")
    rows = []
    for subject in (s for s in OURS if s in summary):
        for figure, key, higher, goal in GOALS:
            ours, theirs = summary[subject][key], llama[key] if llama else None
            row: dict[str, Any] = {
                "subject": subject,
                "figure": figure,
                "goal": f"{'>=' if higher else '<='} {goal:.1f}x",
            }
            row |= {"ours": ours, "llama-cpp": theirs}
            if not ours or not theirs:
                row |= {"ratio": None, "verdict": "not measured"}
            else:
                row |= {"ratio": round(ours / theirs, 3), "verdict": _verdict(ours / theirs, goal, higher=higher)}
            rows.append(row)
    return rows


def _verdict(ratio: float, goal: float, *, higher: bool) -> str:
    if (ratio >= goal) if higher else (ratio <= goal):
        return "met"
    if higher:  # ours must grow by goal / ratio
        return f"missed by {1 - ratio / goal:.0%}: needs {goal / ratio:.2f}x"
    return f"missed by {ratio / goal - 1:.0%}: needs {1 - goal / ratio:.0%} less"


def format_figures(summary: dict[str, dict[str, Any]]) -> str:
    """The figures table: one row per goal's figure, one column per subject ("-" where not measured)."""
    body = [
        [figure, *(_fmt(summary[s][key]) if s in summary else "-" for s in SUBJECTS)] for figure, key, _, _ in GOALS
    ]
    return _table(["figure", *(LABELS[s] for s in SUBJECTS)], body)


def format_goals(rows: list[dict[str, Any]]) -> str:
    """The goals table: one row per goal, a ratio and a verdict column per subject of ours in `rows`."""
    subjects = list(dict.fromkeys(r["subject"] for r in rows))
    by = {(r["subject"], r["figure"]): r for r in rows}
    head = ["goal: ours / llama.cpp"] + [h for s in subjects for h in (LABELS[s], "result")]
    body = []
    for figure, *_ in GOALS:
        cells = [f"{figure} {by[subjects[0], figure]['goal']}"] if subjects else [figure]
        for s in subjects:
            r = by[s, figure]
            cells += [f"{r['ratio']:.2f}x" if r["ratio"] else "-", r["verdict"]]
        body.append(cells)
    return _table(head, body)


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def notes(results: dict[str, Any]) -> list[str]:
    """The lines under the tables: settings, our bundles, identical texts and prompts, skips, noise."""
    s, c = results["settings"], results["checks"]
    out = [
        f"SmolLM2-135M-Instruct ({Path(results['setup']['gguf']).name}); greedy, {s['max_new_tokens']} new tokens, "
        f"{s['threads']} threads, prompt of {c['prompt_tokens']} tokens (one chat, rendered with the bundle's "
        f"template); {s['rounds']} rounds of one fresh process per subject, order rotated, {s['repeats']} warm runs "
        f"after the cold one; llama.cpp n_ctx {s['n_ctx']}",
    ]
    out += _bundle_notes(results)
    out.append(
        f"the transformers tokenizer's template renders the same chat text: {c['transformers_template_same_text']}"
    )
    out += _text_notes(results)
    out.append(f"prompt tokens the same as ours: {c['same_prompt_tokens_as_ours']}")
    if results.get("int8_skipped"):
        out.append(f"{LABELS['ours-int8']} SKIPPED: {results['int8_skipped']}")
    if results["llama_skipped"]:
        out.append(f"llama.cpp SKIPPED: {results['llama_skipped']}")
    out += _noise_notes(results["summary"])
    return out


def _bundle_notes(results: dict[str, Any]) -> list[str]:
    """Per bundle of ours measured: its file, engine and dtype (the manifest's, and as served), int8 fidelity, init."""
    setups = {"ours": results["setup"], "ours-int8": results.get("setup_int8")}
    out = []
    for subject in (x for x in OURS if x in results["rounds"]):
        setup, first = setups[subject] or {}, results["rounds"][subject][0]
        model, fig = first["model"], results["summary"][subject]
        out.append(
            f"{LABELS[subject]} bundle: {Path(setup.get('bundle', '?')).name} (manifest: engine {setup.get('engine')}, "
            f"dtype {setup.get('dtype')}); served by engine {model.get('engine')} ({model.get('implementation')}), "
            f"dtype {first.get('dtype')}; Function.load {fig['init_ms']:.0f} ms (median), of which the canary (one "
            f"golden generation at init) {fig['canary_ms']:.0f} ms"
        )
        if setup.get("quantization"):
            out.append(f"  int8 fidelity measured by its build: {_fidelity(setup['quantization'])}")
    return out


def _fidelity(q: dict[str, Any]) -> str:
    """The manifest's "quantization" record of an onnxruntime-genai int8 build, in words."""
    prefix, floor = q.get("greedy_prefix") or {}, (q.get("floor") or {}).get("teacher_forced_top1")
    return (
        f"teacher-forced top-1 {q.get('teacher_forced_top1')} of fp32's next tokens (floor {floor}); greedy prefix "
        f"equal to fp32's for {prefix.get('mean')} tokens on average, {prefix.get('min')} at least, of "
        f"{q.get('new_tokens')} new tokens; whole greedy text equal on {q.get('greedy_equal')} of {q.get('prompts')} "
        "prompts"
    )


def _text_notes(results: dict[str, Any]) -> list[str]:
    """Whether the exact subjects (all but int8) gave one greedy text, and how the int8 text compares (reported
    only: int8 weights may part from the fp32 greedy path)."""
    c = results["checks"]
    same, stable = c["same_text_as_ours"], c["stable_within_subject"]
    exact = [x for x in results["rounds"] if x != "ours-int8"]
    out = []
    if all(same.get(x, True) for x in exact) and all(stable[x] for x in exact):
        out.append(f"greedy texts: identical in every run of {', '.join(LABELS[x] for x in exact)}")
    else:
        out.append(
            f"greedy texts: NOT all identical (same as ours: {_pick(same, exact)}; stable: {_pick(stable, exact)})"
        )
        out += [
            f"  {LABELS[x]}: the first {n} of our {c['chars_of_ours']} characters are the same"
            for x, n in c["prefix_chars_same_as_ours"].items()
            if x in exact and not same[x]
        ]
        out += [f"  {LABELS[x]}: {t!r}" for x, t in c["texts"].items() if x in exact]
        if not same.get("llama-cpp", True):
            out.append(
                "  (llama.cpp computes with the GGUF's quantised weights and 8-bit activations, ours and "
                "model.generate with the fp32 weights dequantised from them: greedy paths may part once two "
                "candidates' scores are close; only ours and model.generate must agree token for token)"
            )
    if "ours-int8" in same:
        out.append(_int8_text_note(c))
    return out


def _int8_text_note(c: dict[str, Any]) -> str:
    stable = "the same in every run" if c["stable_within_subject"]["ours-int8"] else "NOT the same in every run"
    texts = c["texts"]["ours-int8"]
    if c["same_text_as_ours"]["ours-int8"]:
        return f"int8 greedy text: identical to ours ({stable})"
    return (
        f"int8 greedy text: differs from ours after {c['prefix_chars_same_as_ours']['ours-int8']} of our "
        f"{c['chars_of_ours']} characters ({stable}; int8 weights may part from the fp32 greedy path: reported, not "
        f"a failure): {texts[0] if len(texts) == 1 else texts!r}"
    )


def _pick(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k in keys}


def _noise_notes(summary: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"noisy: other processes used {fig['other_cpu_percent']:.0f}% of a CPU (median) while {LABELS[subject]} ran; "
        "its figures carry their noise"
        for subject, fig in summary.items()
        if fig["other_cpu_percent"] and fig["other_cpu_percent"] > NOISY_OTHER_CPU_PERCENT
    ]
