"""make bench-generation's report: the goals as ratios ours / llama.cpp for each of our bundles (the default build and
the int8 one), by how much each goal is missed, and the notes (engine, dtype, int8 fidelity, identical texts).

The measuring itself (fresh processes per subject per round, llama-cpp-python built from source) is not part of make
test; these check the arithmetic and wording of its verdicts and notes on fixed figures.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.generation_goals import format_figures, format_goals, goal_rows, notes

KEYS = ("decode_tokens_per_s", "ttft_ms", "cold_start_ms", "peak_rss_mib")


def _figures(decode: float, ttft: float, cold: float, rss: float) -> dict[str, float]:
    return {"decode_tokens_per_s": decode, "ttft_ms": ttft, "cold_start_ms": cold, "peak_rss_mib": rss}


LLAMA = _figures(100.0, 40.0, 500.0, 200.0)
MISSED = [
    "missed by 75%: needs 4.00x",
    "missed by 200%: needs 67% less",
    "missed by 100%: needs 50% less",
    "missed by 100%: needs 50% less",
]


@pytest.mark.parametrize(
    ("ours", "verdicts"),
    [
        pytest.param(_figures(100.0, 40.0, 500.0, 240.0), ["met"] * 4, id="every-goal-met-at-its-edge"),
        pytest.param(_figures(25.0, 120.0, 1000.0, 480.0), MISSED, id="every-goal-missed"),
    ],
)
def test_each_goal_says_met_or_by_how_much_it_is_missed(ours: dict[str, float], verdicts: list[str]) -> None:
    rows = goal_rows({"ours": ours, "transformers": ours, "llama-cpp": LLAMA})
    assert [r["subject"] for r in rows] == ["ours"] * 4
    assert [r["verdict"] for r in rows] == verdicts
    assert [r["ratio"] for r in rows] == [round(ours[k] / LLAMA[k], 3) for k in KEYS]


def test_each_of_our_bundles_gets_its_own_goal_rows() -> None:
    exact, int8 = _figures(100.0, 40.0, 500.0, 240.0), _figures(25.0, 120.0, 1000.0, 480.0)
    rows = goal_rows({"ours": exact, "ours-int8": int8, "transformers": exact, "llama-cpp": LLAMA})
    assert [r["subject"] for r in rows] == ["ours"] * 4 + ["ours-int8"] * 4
    assert [r["verdict"] for r in rows] == ["met"] * 4 + MISSED
    assert [r["ours"] for r in rows[4:]] == [int8[k] for k in KEYS]
    table = format_goals(rows).splitlines()
    assert [c.strip() for c in table[0].split("|")[1:-1]] == [
        "goal: ours / llama.cpp",
        "this project",
        "result",
        "this project int8",
        "result",
    ]
    assert [c.strip() for c in table[2].split("|")[1:-1]] == [
        "decode tokens/s >= 1.0x",
        "1.00x",
        "met",
        "0.25x",
        "missed by 75%: needs 4.00x",
    ]
    assert [c.strip() for c in table[5].split("|")[1:-1]][:1] == ["peak RSS, MiB <= 1.2x"]


def test_without_llama_cpp_no_ratio_is_claimed() -> None:
    ours = _figures(25.0, 120.0, 1000.0, 480.0)
    rows = goal_rows({"ours": ours, "transformers": ours})
    assert {r["verdict"] for r in rows} == {"not measured"} and {r["ratio"] for r in rows} == {None}
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in format_goals(rows).splitlines()[2:]]
    assert body[0] == ["decode tokens/s >= 1.0x", "-", "not measured"] and len(body) == 4
    table = format_figures({"ours": ours, "transformers": ours})
    assert table.splitlines()[0].split("|")[1:-1] == [
        " figure                        ",
        " this project ",
        " this project int8 ",
        " model.generate ",
        " llama.cpp ",
    ]
    assert "| decode tokens/s               | 25.0         | -                 | 25.0           | -         |" in table


QUANTIZATION = {
    "scheme": "onnxruntime-genai int8",
    "prompts": 7,
    "new_tokens": 32,
    "teacher_forced_top1": 0.9821,
    "greedy_prefix": {"mean": 27.4, "min": 9},
    "greedy_equal": 4,
    "floor": {"teacher_forced_top1": 0.95},
}


def _results(int8_text: str, *, transformers_text: str = "The sky is blue.") -> dict[str, Any]:
    texts = {"ours": "The sky is blue.", "ours-int8": int8_text, "transformers": transformers_text}
    run = {"init_ms": {"total": 900.0, "canary": 300.0}, "dtype": "float32"}
    rounds = {
        "ours": [run | {"model": {"engine": "onnxruntime-genai", "implementation": "genai"}}],
        "ours-int8": [run | {"dtype": "int8", "model": {"engine": "onnxruntime-genai", "implementation": "genai"}}],
        "transformers": [{}],
    }
    fig = _figures(50.0, 30.0, 800.0, 300.0) | {"other_cpu_percent": 0.0, "init_ms": 900.0, "canary_ms": 300.0}
    bundle = {"gguf": "/c/SmolLM2.gguf", "bundle": "/c/SmolLM2-abc.bundle", "engine": "onnxruntime-genai"}
    return {
        "setup": bundle | {"dtype": "float32", "quantization": None},
        "setup_int8": bundle | {"bundle": "/c/SmolLM2-int8-abc.bundle", "dtype": "int8", "quantization": QUANTIZATION},
        "int8_skipped": None,
        "llama_skipped": "no interpreter at .venv-llama",
        "settings": {"max_new_tokens": 16, "threads": 2, "repeats": 1, "n_ctx": 2048, "rounds": 1},
        "summary": {s: dict(fig) for s in rounds},
        "rounds": rounds,
        "checks": {
            "texts": {s: [t] for s, t in texts.items()},
            "stable_within_subject": {s: True for s in texts},
            "same_text_as_ours": {s: t == texts["ours"] for s, t in texts.items() if s != "ours"},
            "prefix_chars_same_as_ours": {s: 8 for s in texts if s != "ours"},
            "chars_of_ours": len(texts["ours"]),
            "same_prompt_tokens_as_ours": {"ours-int8": True, "transformers": True},
            "transformers_template_same_text": True,
            "prompt_tokens": 37,
        },
    }


def test_notes_name_each_bundles_engine_dtype_and_the_int8_fidelity_record() -> None:
    lines = notes(_results("The sky is blue."))
    bundles = [line for line in lines if " bundle: " in line]
    assert bundles[0].startswith("this project bundle: SmolLM2-abc.bundle (manifest: engine onnxruntime-genai, dtype")
    assert "dtype float32" in bundles[0] and "Function.load 900 ms" in bundles[0]
    assert bundles[1].startswith("this project int8 bundle: SmolLM2-int8-abc.bundle")
    assert "dtype int8); served by engine onnxruntime-genai (genai), dtype int8" in bundles[1]
    fidelity = next(line for line in lines if "int8 fidelity" in line)
    assert "teacher-forced top-1 0.9821 of fp32's next tokens (floor 0.95)" in fidelity
    assert "27.4 tokens on average, 9 at least, of 32 new tokens" in fidelity and "on 4 of 7 prompts" in fidelity
    assert "greedy texts: identical in every run of this project, model.generate" in lines
    assert "int8 greedy text: identical to ours (the same in every run)" in lines
    assert "llama.cpp SKIPPED: no interpreter at .venv-llama" in lines


def test_an_int8_text_that_differs_is_reported_not_failed() -> None:
    lines = notes(_results("The sky is bright."))
    assert "greedy texts: identical in every run of this project, model.generate" in lines
    assert not any("NOT all identical" in line for line in lines)
    int8 = next(line for line in lines if line.startswith("int8 greedy text"))
    assert "differs from ours after 8 of our 16 characters" in int8 and "not a failure" in int8
    assert int8.endswith("'The sky is bright.'")


def test_an_exact_subjects_text_that_differs_is_flagged() -> None:
    lines = notes(_results("The sky is blue.", transformers_text="The sky is grey."))
    flagged = next(line for line in lines if "NOT all identical" in line)
    assert "'transformers': False" in flagged and "ours-int8" not in flagged
    assert "  model.generate: the first 8 of our 16 characters are the same" in lines


def test_a_skipped_int8_build_says_why() -> None:
    results = _results("The sky is blue.")
    for part in ("rounds", "summary"):
        del results[part]["ours-int8"]
    for check in ("texts", "stable_within_subject", "same_text_as_ours", "prefix_chars_same_as_ours"):
        del results["checks"][check]["ours-int8"]
    results |= {"setup_int8": None, "int8_skipped": "int8 keeps 0.912 of the fp32 model's next tokens"}
    lines = notes(results)
    assert "this project int8 SKIPPED: int8 keeps 0.912 of the fp32 model's next tokens" in lines
    assert not any(line.startswith(("this project int8 bundle", "int8 greedy text")) for line in lines)
