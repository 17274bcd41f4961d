"""The deployment budget the build measures and records: memory, timeout, SQS batch size, and the warnings.

The rules are tested on measurements chosen to cross each threshold; the default bundle's record is checked against
its own measurements and against template.yaml's allowed values.
"""

from __future__ import annotations

import re
from pathlib import Path

from bundle_builder.budget import MEMORY_SIZES_MB, TIMEOUTS_S, describe, plan
from bundle_builder.summary import render, summarize
from runtime.bundle import read_bundle
from support import ROOT

SMALL = {"init_ms": 800, "rss_init_mb": 250, "rss_peak_mb": 700, "typical_p50_ms": 10, "maximal_p50_ms": 4000}


def test_memory_is_the_smallest_size_over_peak_rss_with_headroom() -> None:
    t = plan(SMALL)
    assert t["MemorySize"] == 1024  # 700 x 1.25 + 64 = 939 MB
    assert plan({**SMALL, "rss_peak_mb": 800})["MemorySize"] == 1536  # 1064 MB
    assert t["MemorySize"] in MEMORY_SIZES_MB and not t["warnings"]


def test_timeout_covers_a_batch_of_maximal_records_at_that_size_s_cpu_share() -> None:
    t = plan(SMALL)
    per_record = 4.0 * 1769 / 1024  # one thread measured; 1024 MB gets 0.58 of a vCPU
    assert t["BatchSize"] == 10 and t["Timeout"] >= 2 * 10 * per_record and t["Timeout"] in TIMEOUTS_S
    assert t["VisibilityTimeout"] == 6 * t["Timeout"]


def test_a_slow_model_gets_a_smaller_batch_and_the_longest_timeout() -> None:
    t = plan({**SMALL, "maximal_p50_ms": 60_000})
    assert t["Timeout"] == 900 and t["BatchSize"] < 10
    assert 2 * t["BatchSize"] * 60 * 1769 / 1024 <= 900


def test_an_init_over_ten_seconds_and_a_model_over_10240_mb_are_warned() -> None:
    warnings = plan({**SMALL, "init_ms": 7000})["warnings"]  # 7 s x 1769/1024 = 12 s at 1024 MB
    assert len(warnings) == 1 and "over Lambda's 10 s init limit" in warnings[0]
    huge = plan({**SMALL, "rss_peak_mb": 9000})
    assert huge["MemorySize"] == 10240 and any("over Lambda's 10,240 MB" in w for w in huge["warnings"])


def test_the_default_bundle_records_its_budget_and_inspect_shows_it(minilm_bundle: Path) -> None:
    record = read_bundle(minilm_bundle).manifest["budget"]
    m, t = record["measured"], record["template"]
    assert 0 < m["rss_init_mb"] <= m["rss_peak_mb"] and m["init_ms"] > 0
    assert 0 < m["typical_p50_ms"] < m["maximal_p50_ms"] and m["maximal_request"] == "32 inputs of 256 tokens"
    assert t == plan(m)
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    allowed = re.search(r"AllowedValues: \[([0-9, ]+)\]", template)
    assert allowed and t["Timeout"] in [int(v) for v in allowed.group(1).split(",")]
    assert all(f"  budget        {line}" in render(summarize(minilm_bundle)) for line in describe(record))
