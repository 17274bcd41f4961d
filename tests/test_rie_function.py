"""handler.handler as the image runs it: the official RIE in front of ``python -m awslambdaric handler.handler``.

One function (one RIE, one runtime process) per bundle, started once for the module: the tiny random classifier,
and (slow) the real all-MiniLM-L6-v2. Every file in events/ is invoked once, in sorted order, and each answer is
checked against its documented one (devtools.expectations) down to the output shapes, the bundle hash and the
cold-start flag. Then the ways it must fail, and where: a wrong handler name, a bundle that fails init (before
any request), answers of the wrong shape (the checks reject them), and a request slower than the function timeout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.expectations import mismatch
from devtools.rie import InvokeResult, RieFunction
from runtime.bundle import read_bundle
from support import EXPECTED, event_inputs, load_event

ORDER = sorted(EXPECTED)  # invoke order; ORDER[0] is the process's first invoke, so the only cold one
GOOD_DIRECT = {"inputs": "The battery lasts all day."}
FUNCTION_TIMEOUT_S = 120  # init bound too: MiniLM's init takes ~5-15 s on two busy cores
HTTP_ERROR_TYPES = {400: "InvalidInputError", 405: "MethodNotAllowedError", 413: "PayloadTooLargeError",
                    422: "InvalidParametersError"}
STAGES = {"preprocess", "inference", "postprocess", "total"}  # + "parse" for direct and HTTP requests


@dataclass(frozen=True)
class Kind:
    task: str
    width: int  # floats per embedding, or labels per classification


KINDS = {"tiny": Kind("text-classification", 3), "minilm": Kind("feature-extraction", 384)}


@dataclass
class Served:
    """One running function and its answers to every event (invoked in ORDER), then to GOOD_DIRECT."""

    kind: Kind
    bundle: Path
    sha256: str
    fn: RieFunction
    answers: dict[str, InvokeResult]
    after: InvokeResult

    @property
    def log_lines(self) -> list[dict[str, Any]]:
        """The handler's JSON log lines (the RIE's own lines and tracebacks are skipped)."""
        lines = []
        for text in self.fn.logs.splitlines():
            if text.startswith('{"level"'):
                lines.append(json.loads(text))
        return lines


def _serve(kind: str, bundle: Path) -> Iterator[Served]:
    with RieFunction("handler.handler", env={"MODEL_BUNDLE": str(bundle)}, timeout_s=FUNCTION_TIMEOUT_S) as fn:
        answers = {name: fn.invoke(load_event(name)) for name in ORDER}
        after = fn.invoke(GOOD_DIRECT)
        assert after.ok, (after.body, fn.logs[-4000:])
        fn.wait_for_log(f"END RequestId: {after.body['timing']['request_id']}")  # every log line is written
        yield Served(KINDS[kind], bundle, read_bundle(bundle).sha256, fn, answers, after)


@pytest.fixture(scope="module")
def tiny_served(tiny_bundle: Callable[..., Path]) -> Iterator[Served]:
    yield from _serve("tiny", tiny_bundle("bert"))


@pytest.fixture(scope="module")
def minilm_served(minilm_bundle: Path) -> Iterator[Served]:
    yield from _serve("minilm", minilm_bundle)


@pytest.fixture(scope="module", params=["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def served(request: pytest.FixtureRequest) -> Served:
    return request.getfixturevalue(f"{request.param}_served")


# -- the checks -------------------------------------------------------------------------------------------------


def check_output(kind: Kind, output: Any) -> None:
    """One input's output: an embedding of kind.width floats, or every label once with softmax scores."""
    assert isinstance(output, list) and len(output) == kind.width, output
    if kind.task == "feature-extraction":
        assert all(isinstance(x, float) and math.isfinite(x) for x in output)
        return
    assert all(set(d) == {"label", "score"} for d in output)
    assert len({d["label"] for d in output}) == kind.width  # each label once
    scores = [d["score"] for d in output]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1.0) < 1e-4


def check_envelope(served: Served, envelope: Any, inputs: Any, *, cold: bool, stages: set[str]) -> None:
    """{"outputs", "model", "timing"}: one output per input (a bare one for a bare input), this bundle, this process."""
    assert isinstance(envelope, dict) and set(envelope) == {"outputs", "model", "timing"}, envelope
    outputs = [envelope["outputs"]] if isinstance(inputs, str) else envelope["outputs"]
    assert len(outputs) == (1 if isinstance(inputs, str) else len(inputs))
    for output in outputs:
        check_output(served.kind, output)
    assert envelope["model"]["sha256"] == served.sha256
    assert envelope["model"]["task"] == served.kind.task
    timing = envelope["timing"]
    assert timing["cold_start"] is cold
    assert set(timing["request_ms"]) == stages and all(v >= 0 for v in timing["request_ms"].values())
    assert timing["init_ms"]["total"] > 0 and timing["device"] == "cpu"
    uuid.UUID(timing["request_id"])  # the LambdaContext's aws_request_id, which the RIE logs:
    assert f"START RequestId: {timing['request_id']}" in served.fn.logs


def check_answer(served: Served, name: str, result: InvokeResult) -> None:
    """``result`` is the documented answer to events/``name``, as the process's first invoke iff it is ORDER[0]."""
    how, want = EXPECTED[name]
    event = load_event(name)
    cold = name == ORDER[0]
    assert not result.timed_out, result.body
    if how == "raises":
        assert result.status == 200 and result.error_type == want, result.body
        assert result.body["requestId"], "a request error carries its request id; an init error has none"
        return
    assert result.ok, (result.status, result.body)
    body = result.body
    if how == "direct":
        check_envelope(served, body, event["inputs"], cold=cold, stages=STAGES | {"parse"})
    elif how == "sqs":
        assert body == {"batchItemFailures": [{"itemIdentifier": mid} for mid in want]}
        # No RESULTS_QUEUE_URL: each good record's result is one log line; each failed one is explained.
        results = {line["messageId"]: line["result"] for line in served.log_lines if line["message"] == "result"}
        good = {r["messageId"]: json.loads(r["body"])["inputs"] for r in event["Records"] if r["messageId"] not in want}
        assert set(results) == set(good)
        for message_id, inputs in good.items():
            check_envelope(served, results[message_id], inputs, cold=cold, stages=STAGES)
        rejected = {line["messageId"]: line["errorType"] for line in served.log_lines
                    if line["message"] == "rejected record"}
        assert rejected == {mid: "InvalidInputError" for mid in want}
    else:
        assert set(body) == {"statusCode", "headers", "body", "isBase64Encoded"}, body
        assert body["statusCode"] == want and body["isBase64Encoded"] is False
        assert body["headers"]["Content-Type"] == "application/json"
        payload = json.loads(body["body"])
        if want == 200:
            check_envelope(served, payload, event_inputs(event), cold=cold, stages=STAGES | {"parse"})
            assert body["headers"]["X-Request-Id"] == payload["timing"]["request_id"]
        else:
            assert set(payload) == {"error"} and payload["error"]["type"] == HTTP_ERROR_TYPES[want]
            assert payload["error"]["request_id"] == body["headers"]["X-Request-Id"]
            assert payload["error"]["message"] and "Traceback" not in body["body"]
    assert mismatch(name, result) is None  # the demo's judge agrees


# -- every event, every bundle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ORDER)
def test_every_event_gets_its_documented_answer_through_the_rie(served: Served, name: str) -> None:
    check_answer(served, name, served.answers[name])


def test_one_init_per_process_and_cold_start_only_on_its_first_invoke(served: Served) -> None:
    first = json.loads(served.answers[ORDER[0]].body["body"])["timing"]  # ORDER[0] is an HTTP 200 event
    assert first["cold_start"] is True
    assert served.after.ok and served.after.body["timing"]["cold_start"] is False  # still serving after the bad ones
    assert served.after.body["timing"]["init_ms"] == first["init_ms"]  # the same init served every request
    [init_ms] = served.fn.init_durations_ms()  # no re-init after request errors
    assert init_ms >= first["init_ms"]["total"]  # the RIE's INIT REPORT spans the handler's own init timing
    assert "INIT RTDONE(status: success)" in served.fn.logs


def test_one_invocation_log_line_per_invoke(served: Served) -> None:
    lines = [line for line in served.log_lines if line["message"] == "invocation"]
    assert len(lines) == len(ORDER) + 1  # one per invoke, bad ones included
    assert [line["ColdStart"] for line in lines] == [1.0] + [0.0] * len(ORDER)
    by_kind = {line["event_kind"] for line in lines}
    assert by_kind == {"direct", "apigateway-rest", "apigateway-http", "function-url", "sqs"}


# -- the checks reject wrong answers ----------------------------------------------------------------------------


def _envelope_of(body: dict[str, Any]) -> dict[str, Any]:
    return json.loads(body["body"]) if "body" in body else body


def _mutate(name: str, change: Callable[[Any], Any]) -> Callable[[Served], InvokeResult]:
    def make(served: Served) -> InvokeResult:
        body = change(copy.deepcopy(served.answers[name].body))
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return InvokeResult(status=200, body=body, raw=raw, elapsed_s=0.0)

    return make


def _in_http_body(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def apply(body: Any) -> Any:
        payload = json.loads(body["body"])
        change(payload)
        body["body"] = json.dumps(payload)
        return body

    return apply


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(d: dict[str, Any]) -> dict[str, Any]:
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return d

    return apply


WRONG_ANSWERS = [
    pytest.param("direct_single.json", _mutate("direct_single.json", lambda b: {**b, "outputs": b["outputs"][:-1]}),
                 id="output-one-short"),
    pytest.param("direct_list.json", _mutate("direct_list.json", lambda b: {**b, "outputs": b["outputs"][:2]}),
                 id="one-output-missing"),
    pytest.param("direct_list.json", _mutate("direct_list.json", lambda b: {**b, "outputs": b["outputs"][0]}),
                 id="bare-output-for-a-list"),
    pytest.param("direct_single.json", _mutate("direct_single.json", _set(("model", "sha256"), "0" * 64)),
                 id="another-bundle"),
    pytest.param("direct_single.json", _mutate("direct_single.json", _set(("timing", "cold_start"), True)),
                 id="cold-start-on-a-warm-invoke"),
    pytest.param("direct_single.json", _mutate("direct_single.json", _set(("timing", "request_id"), str(uuid.uuid4()))),
                 id="request-id-not-the-lambda-one"),
    pytest.param("direct_single.json", _mutate("direct_single.json", lambda b: b["outputs"]), id="bare-outputs"),
    pytest.param("http_api_v2.json", _mutate("http_api_v2.json", lambda b: json.loads(b["body"])),
                 id="http-envelope-not-wrapped"),
    pytest.param("http_api_v2.json", _mutate("http_api_v2.json", _in_http_body(lambda p: p.pop("model"))),
                 id="http-no-model"),
    pytest.param("bad_http_wrong_method.json", _mutate("bad_http_wrong_method.json", _set(("statusCode",), 400)),
                 id="http-wrong-status"),
    pytest.param("bad_http_bad_parameters.json",
                 _mutate("bad_http_bad_parameters.json", _in_http_body(_set(("error", "type"), "InvalidInputError"))),
                 id="http-wrong-error-type"),
    pytest.param("sqs_batch.json", _mutate("sqs_batch.json", lambda b: {"batchItemFailures": []}),
                 id="sqs-poison-not-listed"),
    pytest.param("sqs_batch.json",
                 _mutate("sqs_batch.json", lambda b: {"batchItemFailures": b["batchItemFailures"] * 2}),
                 id="sqs-poison-twice"),
    pytest.param("bad_direct_missing_inputs.json",
                 lambda served: served.answers["direct_single.json"], id="answered-instead-of-raising"),
    pytest.param("bad_direct_missing_inputs.json",
                 _mutate("bad_direct_missing_inputs.json", lambda b: {**b, "requestId": ""}),
                 id="raised-as-an-init-error"),
    pytest.param("direct_single.json", _mutate("direct_single.json", lambda b: "Task timed out after 120.00 seconds"),
                 id="timed-out"),
]


@pytest.mark.parametrize(("name", "wrong"), WRONG_ANSWERS)
def test_the_checks_reject_an_answer_of_the_wrong_shape(served: Served, name: str,
                                                        wrong: Callable[[Served], InvokeResult]) -> None:
    with pytest.raises(AssertionError):
        check_answer(served, name, wrong(served))


# -- what must fail, and where ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("handler", "error_type", "message", "imported"), [
    ("handler.nothing", "Runtime.HandlerNotFound", "Handler 'nothing' missing on module 'handler'", True),
    ("handlers.handler", "Runtime.ImportModuleError", "Unable to import module 'handlers': No module named 'handlers'",
     False),
], ids=["wrong-function", "wrong-module"])
def test_a_wrong_handler_name_is_an_init_error_of_the_runtime(tiny_bundle: Callable[..., Path], handler: str,
                                                             error_type: str, message: str, imported: bool) -> None:
    with RieFunction(handler, env={"MODEL_BUNDLE": str(tiny_bundle("bert"))}, timeout_s=FUNCTION_TIMEOUT_S) as fn:
        result = fn.invoke(GOOD_DIRECT)
        logs = fn.logs

    assert result.status == 502 and result.error_type == error_type and result.error_message == message
    assert result.body["requestId"] == ""
    assert "INIT RTDONE(status: error)" in logs
    assert ('"message": "init"' in logs) is imported  # handler.py's import (the model load) ran, or not


def _corrupt_copy(bundle: Path, out: Path) -> tuple[Path, str]:
    """A copy of ``bundle`` with one data byte flipped; returns it and the SHA-256 its content now has."""
    data = bytearray(bundle.read_bytes())
    data[-100] ^= 0x01  # inside the data section: the last 32 bytes are the stored digest
    out.write_bytes(bytes(data))
    return out, hashlib.sha256(data[:-32]).hexdigest()


def test_a_corrupt_bundle_is_an_init_error_before_any_request(tiny_bundle: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    good = tiny_bundle("bert")
    bad, actual = _corrupt_copy(good, tmp_path / "bad.bundle")
    with RieFunction("handler.handler", env={"MODEL_BUNDLE": str(bad)}, timeout_s=FUNCTION_TIMEOUT_S) as fn:
        first = fn.invoke(load_event("direct_single.json"))
        second = fn.invoke(load_event("http_api_v2.json"))
        logs = fn.logs

    message = (f"{bad} failed its content check: SHA-256 {actual[:16]}... but the bundle records "
               f"{read_bundle(good).sha256[:16]}...; bytes changed after the build. Copy the file again or rebuild it")
    for result in (first, second):  # every invoke re-runs init, which fails the same way
        assert result.status == 502 and result.error_type == "BundleCorruptError"
        assert result.error_message == message
        assert result.body["requestId"] == ""  # no request was being answered
    assert logs.count(f"[ERROR] BundleCorruptError: {message}") == 2
    assert logs.count("INIT RTDONE(status: error)") == 2
    assert logs.index("INIT RTDONE(status: error)") < logs.index("INVOKE START")  # failed in init, not in a request
    assert '"message": "invocation"' not in logs  # the handler never ran


def test_a_request_over_the_timeout_is_cut_and_the_next_one_reinits(tiny_served: Served) -> None:
    # Init runs under the same budget as each invoke, so the timeout must clear the real init (~4 s idle, 3x that
    # on two busy cores): take three times what this module's tiny function measured, at least 5 s.
    timeout_s = max(5, math.ceil(3 * tiny_served.fn.init_durations_ms()[0] / 1000))
    env = {"MODEL_BUNDLE": str(tiny_served.bundle)}
    with RieFunction("tests.fakes.slow_model_handler.handler", env=env, timeout_s=timeout_s) as fn:
        before = fn.invoke(load_event("direct_single.json"))
        cut = fn.invoke({"sleep_s": timeout_s + 60})
        after = fn.invoke(load_event("direct_single.json"))
        logs = fn.logs

    assert before.ok, (before.body, logs[-4000:])
    assert before.body["timing"]["cold_start"] is True
    assert before.body["timing"]["init_ms"]["total"] < timeout_s * 1000
    assert cut.status == 200 and cut.timed_out and cut.body == f"Task timed out after {timeout_s}.00 seconds"
    assert cut.elapsed_s < timeout_s + 5
    assert "Reset initiated: Timeout" in logs
    assert after.ok, (after.body, logs[-4000:])
    assert after.body["timing"]["cold_start"] is True  # a fresh process: init ran again
    assert after.body["model"] == before.body["model"]
    assert [d["label"] for d in after.body["outputs"]] == [d["label"] for d in before.body["outputs"]]
    assert [d["score"] for d in after.body["outputs"]] == pytest.approx([d["score"] for d in before.body["outputs"]])
    assert len(fn.init_durations_ms()) == 2
