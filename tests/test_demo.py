"""python -m devtools.demo: the CLI in a subprocess (as `make demo` runs it), its views and its judge without one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.demo import DemoReport, answer_line, view_output, view_timing
from devtools.expectations import mismatch
from devtools.rie import InvokeResult
from support import EVENTS, EXPECTED, POISON_MESSAGE_ID, ROOT


def run_demo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devtools.demo", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_demo_answers_every_event_as_documented(tiny_bundle: Callable[..., Path]) -> None:
    done = run_demo_cli("--bundle", str(tiny_bundle("bert")))

    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert names == sorted(EXPECTED)
    for index, name in enumerate(names, start=1):
        assert f"[{index}/{len(names)}] {name}: " in done.stdout
    assert done.stdout.count("    as documented\n") == len(names)
    assert "timing: cold start; init " in done.stdout and "timing: warm; request " in done.stdout
    assert f"batchItemFailures ['{POISON_MESSAGE_ID}']" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1] == f"{len(names)} events, all answered as documented"


def test_demo_exits_1_when_the_function_cannot_start(tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.bundle"
    data = bytearray(tiny_bundle("bert").read_bytes())
    data[-100] ^= 0x01
    bad.write_bytes(bytes(data))

    done = run_demo_cli("--bundle", str(bad))

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"init error, errorType BundleCorruptError: {bad} failed its content check" in done.stdout
    assert "| [ERROR] BundleCorruptError: " in done.stdout and "INIT RTDONE(status: error)" in done.stdout
    last = done.stdout.rstrip().splitlines()[-1]
    assert last.startswith(f"{len(EXPECTED)} events, none answered: the function failed to start (BundleCorruptError: ")


def _result(body: Any, status: int = 200) -> InvokeResult:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return InvokeResult(status=status, body=body, raw=raw, elapsed_s=0.0)


def _http(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload),
            "isBase64Encoded": False}


ENVELOPE = {"outputs": [0.1, 0.2], "model": {"task": "feature-extraction"}, "timing": {}}
ERROR = {"errorMessage": "no inputs", "errorType": "InvalidInputError", "requestId": "r-1", "stackTrace": []}


@pytest.mark.parametrize(("name", "result", "problem"), [
    ("direct_single.json", _result(ENVELOPE), None),
    ("http_api_v2.json", _result(_http(200, ENVELOPE)), None),
    ("bad_http_wrong_method.json", _result(_http(405, {"error": {"type": "MethodNotAllowedError"}})), None),
    ("sqs_batch.json", _result({"batchItemFailures": [{"itemIdentifier": POISON_MESSAGE_ID}]}), None),
    ("bad_direct_missing_inputs.json", _result(ERROR), None),
    ("direct_single.json", _result(ERROR), "expected an answer, got HTTP 200 InvalidInputError: no inputs"),
    ("direct_single.json", _result([0.1]), "expected an envelope with ['model', 'outputs', 'timing'], got [0.1]"),
    ("direct_single.json", _result("Task timed out after 3.00 seconds"),
     "timed out: Task timed out after 3.00 seconds"),
    ("bad_direct_missing_inputs.json", _result(ENVELOPE),
     ('expected errorType InvalidInputError, got HTTP 200 {"outputs": [0.1, 0.2], "model": {"task": '
      '"feature-extraction"}, "timing": {}}')),
    ("bad_http_wrong_method.json", _result(_http(400, {"error": {}})), "expected statusCode 405, got 400"),
    ("http_api_v2.json", _result(_http(200, {"error": {}})),
     "expected a body with ['model', 'outputs', 'timing'], got {\"error\": {}}"),
    ("http_api_v2.json", _result({**_http(200, ENVELOPE), "body": "not json"}), "expected a JSON body, got 'not json'"),
    ("sqs_batch.json", _result({"batchItemFailures": []}),
     (f"expected {{'batchItemFailures': [{{'itemIdentifier': '{POISON_MESSAGE_ID}'}}]}}, got "
      '{"batchItemFailures": []}')),
], ids=["direct", "http-200", "http-405", "sqs", "raises", "direct-raised", "direct-bare-list", "timeout",
        "raises-answered", "http-wrong-status", "http-error-for-200", "http-body-not-json", "sqs-poison-missing"])
def test_the_judge_of_documented_answers(name: str, result: InvokeResult, problem: str | None) -> None:
    assert mismatch(name, result) == problem


@pytest.mark.parametrize(("task", "output", "view"), [
    ("feature-extraction", [0.12345, -1.0, 0.5, 0.25, 9.0],
     "embedding of 5 floats [0.1235, -1.0000, 0.5000, 0.2500, ...]"),
    ("text-classification", [{"label": "positive", "score": 0.91234}, {"label": "negative", "score": 0.08766}],
     "positive 0.912, negative 0.088"),
    ("text-generation", {"generated_text": " and then it rained."}, "generated ' and then it rained.'"),
], ids=["embedding", "classification", "generation"])
def test_output_views(task: str, output: Any, view: str) -> None:
    assert view_output(task, output) == view


def test_timing_view_shows_init_only_when_cold() -> None:
    cold = {"cold_start": True, "init_ms": {"import_torch": 1234.56, "canary": 3.21, "total": 1300.0},
            "request_ms": {"parse": 0.02, "inference": 12.345, "total": 12.5}}
    assert view_timing(cold) == ("timing: cold start; init 1300.0 ms (import_torch 1234.6, canary 3.21); "
                                 "request 12.5 ms (parse 0.02, inference 12.3)")
    assert view_timing({**cold, "cold_start": False}) == "timing: warm; request 12.5 ms (parse 0.02, inference 12.3)"


def test_answer_line_tells_init_errors_from_request_errors() -> None:
    init = {**ERROR, "errorType": "BundleCorruptError", "errorMessage": "bad", "requestId": ""}
    assert answer_line(_result(init, 502)) == "init error, errorType BundleCorruptError: bad"
    assert answer_line(_result(ERROR)) == "raised, errorType InvalidInputError: no inputs"
    assert answer_line(_result(_http(413, {"error": {"type": "PayloadTooLargeError", "message": "too many"}}))) == (
        "HTTP 413 PayloadTooLargeError: too many")


def test_summary_names_each_event_not_answered_as_documented() -> None:
    report = DemoReport(events=["a.json", "b.json"], problems={"b.json": "expected statusCode 200, got 500"})
    assert not report.ok
    assert report.summary() == "2 events, 1 not answered as documented: b.json: expected statusCode 200, got 500"
