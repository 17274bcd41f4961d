"""Soak: thousands of warm invocations in one process (one container's life) must not grow its memory.

A Lambda container lives for hours and answers every request in the same process; a few KB kept per request
(a cache keyed by input, a list of timings, a logger that buffers) ends in an out-of-memory kill far from its cause.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from runtime.errors import RequestError
from support import ROOT, FakeContext, load_event

pytestmark = pytest.mark.slow

INVOCATIONS = 5000
WARM_UP = 200
MAX_GROWTH_MB = 10.0
WORDS = "the battery lasts all day but the screen scratches easily and support never answered".split()


def _text(i: int) -> str:
    """Inputs of varying length, so that every padded batch shape comes back again and again."""
    return f"review {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 40))


def _http(template: str, body: str, *, b64: bool = False) -> dict[str, Any]:
    event = load_event(template)
    event.update(body=base64.b64encode(body.encode()).decode() if b64 else body, isBase64Encoded=b64)
    return event


def make_event(i: int) -> tuple[Any, Callable[[Any], bool]]:
    """The i-th event of the mix (good direct/HTTP/SQS and bad requests) and a check of its answer."""
    kind = i % 10
    if kind in (0, 1):
        event = {"inputs": _text(i)} if kind == 0 else {"inputs": [_text(i), _text(i + 7), _text(i + 19)]}
        return event, lambda r: "outputs" in r
    if kind == 2:
        return _http("http_api_v2.json", json.dumps({"inputs": _text(i)}), b64=True), lambda r: r["statusCode"] == 200
    if kind == 3:
        body = json.dumps({"inputs": [_text(i), _text(i + 3)], "parameters": {"top_k": 1 + i % 3}})
        return _http("function_url.json", body), lambda r: r["statusCode"] == 200
    if kind == 4:
        return _http("apigw_rest_v1.json", json.dumps({"inputs": _text(i)})), lambda r: r["statusCode"] == 200
    if kind == 5:
        event = load_event("sqs_batch.json")  # one poison record among three
        event["Records"][0]["body"] = json.dumps({"inputs": _text(i)})
        return event, lambda r: len(r["batchItemFailures"]) == 1
    if kind == 6:
        return {"inputs": [_text(i), 5]}, lambda r: isinstance(r, RequestError)
    if kind == 7:
        bad, want = [
            ('{"inputs": "cut', 400),
            (json.dumps({"inputs": ["x"] * 40}), 413),
            (json.dumps({"inputs": "x", "parameters": {"top_k": 9}}), 422),
        ][i % 3]
        return _http("http_api_v2.json", bad), lambda r: r["statusCode"] == want
    if kind == 8:
        event = load_event("bad_http_wrong_method.json")
        return event, lambda r: r["statusCode"] == 405
    return {"inputs": "x" * 25_000}, lambda r: isinstance(r, RequestError)  # over MAX_INPUT_CHARS


def invoke(fn: Any, event: Any, i: int) -> Any:
    try:
        return fn.handle(event, FakeContext(f"soak-{i}"))
    except RequestError as e:
        return e


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def soak(fn: Any, invocations: int = INVOCATIONS, warm_up: int = WARM_UP) -> tuple[float, list[float]]:
    """Run the mix; returns (RSS growth after warm-up in MB, RSS samples every 1000 invocations)."""
    samples: list[float] = []
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the log lines: not kept in memory
        for i in range(invocations):
            if i == warm_up:
                baseline = rss_mb()
                samples.append(baseline)
            event, ok = make_event(i)
            answer = invoke(fn, event, i)
            assert ok(answer), f"invocation {i}: unexpected answer {str(answer)[:300]}"
            if i and i % 1000 == 0:
                samples.append(rss_mb())
        final = rss_mb()
    return final - baseline, [*samples, final]


CHILD = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import test_soak
from support import new_function
growth, samples = test_soak.soak(new_function(sys.argv[3], NUM_THREADS="1"))
print("SOAK " + json.dumps({"growth": growth, "samples": samples}))
"""


def test_5000_warm_invocations_do_not_grow_memory(tiny_bundle) -> None:
    # In a fresh process, as a container is: in the test process, pytest keeps every captured log record of a
    # test in memory, which would be counted as the function's growth.
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "tests"), str(ROOT), str(tiny_bundle("bert"))],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("SOAK "))[5:])
    growth, samples = result["growth"], result["samples"]
    assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.1f} MB over {INVOCATIONS - WARM_UP} warm invocations: {samples}"
