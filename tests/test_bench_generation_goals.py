"""make bench-generation's goals table: ratios ours / llama.cpp, and by how much each goal is missed.

The measuring itself (three fresh processes per round, llama-cpp-python built from source) is not part of make test;
these check the arithmetic and wording of its verdicts on fixed figures.
"""

from __future__ import annotations

import pytest

from bench.generation_goals import format_table, goal_rows


def _figures(decode: float, ttft: float, cold: float, rss: float) -> dict[str, float]:
    return {"decode_tokens_per_s": decode, "ttft_ms": ttft, "cold_start_ms": cold, "peak_rss_mib": rss}


LLAMA = _figures(100.0, 40.0, 500.0, 200.0)


@pytest.mark.parametrize(
    ("ours", "verdicts"),
    [
        pytest.param(_figures(100.0, 40.0, 500.0, 240.0), ["met"] * 4, id="every-goal-met-at-its-edge"),
        pytest.param(
            _figures(25.0, 120.0, 1000.0, 480.0),
            [
                "missed by 75%: needs 4.00x",
                "missed by 200%: needs 67% less",
                "missed by 100%: needs 50% less",
                "missed by 100%: needs 50% less",
            ],
            id="every-goal-missed",
        ),
    ],
)
def test_each_goal_says_met_or_by_how_much_it_is_missed(ours: dict[str, float], verdicts: list[str]) -> None:
    rows = goal_rows({"ours": ours, "transformers": ours, "llama-cpp": LLAMA})
    assert [r["verdict"] for r in rows] == verdicts
    assert [r["ratio"] for r in rows] == [
        round(ours[k] / LLAMA[k], 3) for k in ("decode_tokens_per_s", "ttft_ms", "cold_start_ms", "peak_rss_mib")
    ]


def test_without_llama_cpp_no_ratio_is_claimed() -> None:
    ours = _figures(25.0, 120.0, 1000.0, 480.0)
    rows = goal_rows({"ours": ours, "transformers": ours})
    assert {r["verdict"] for r in rows} == {"not measured"} and {r["ratio"] for r in rows} == {None}
    table = format_table(rows)
    assert table.splitlines()[0].split("|")[1:-1] == [
        " figure                        ",
        " this project ",
        " model.generate ",
        " llama.cpp ",
        " ours / llama.cpp ",
        " goal    ",
        " result       ",
    ]
    assert "| decode tokens/s               | 25.0         | 25.0           | -         | -" in table
