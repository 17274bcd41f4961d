"""The one log line per invocation and its EMF metrics carry the real values on every event kind and outcome."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.errors import RequestError
from support import EXPECTED, FakeContext, load_event, new_function


@pytest.fixture(scope="module")
def fn(tiny_bundle):
    return new_function(tiny_bundle("bert"), NUM_THREADS="1")


def invoke(fn: Any, event: Any, capsys: pytest.CaptureFixture[str], request_id: str = "req-metrics") -> tuple[Any, dict, list]:
    """(response or the raised error, the invocation line, every other line) of one invocation."""
    capsys.readouterr()
    try:
        response: Any = fn.handle(event, FakeContext(request_id))
    except RequestError as e:
        response = e
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    invocations = [line for line in lines if line["message"] == "invocation"]
    assert len(invocations) == 1, lines
    return response, invocations[0], [line for line in lines if line["message"] != "invocation"]


def metric_names(line: dict) -> set[str]:
    block = line["_aws"]["CloudWatchMetrics"]
    assert len(block) == 1 and block[0]["Namespace"] == "HfLambda" and block[0]["Dimensions"] == [["function_name"]]
    return {m["Name"] for m in block[0]["Metrics"]}


def forward_pass_inference_ms(results: list[dict]) -> float:
    """Sum of inference time over the distinct forward passes behind SQS results (records of one pass share it)."""
    passes = {json.dumps(r["timing"]["request_ms"], sort_keys=True): r["timing"]["request_ms"]["inference"] for r in results}
    return round(sum(passes.values()), 3)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_event_kind_logs_true_metrics(fn, capsys, name: str) -> None:
    how, want = EXPECTED[name]
    response, line, others = invoke(fn, load_event(name), capsys)
    names = metric_names(line)
    assert {"ColdStart", "RequestMs", "Errors"} <= names
    assert line["RequestMs"] > 0 and line["request_id"] == "req-metrics"
    if how == "direct":
        assert names == {"ColdStart", "RequestMs", "Errors", "InferenceMs"} | ({"InitMs"} if line["ColdStart"] else set())
        assert line["InferenceMs"] == response["timing"]["request_ms"]["inference"] > 0
        assert line["Errors"] == 0 and line["timing"] == response["timing"]
    elif how == "http" and want == 200:
        body = json.loads(response["body"])
        assert line["InferenceMs"] == body["timing"]["request_ms"]["inference"] > 0
        assert line["Errors"] == 0 and line["status"] == "200"
    elif how == "sqs":
        results = [o["result"] for o in others if o["message"] == "result"]
        assert results, "the batch has good records"
        assert line["InferenceMs"] == forward_pass_inference_ms(results) > 0  # was 0 on every SQS invocation
        assert line["Records"] == len(load_event(name)["Records"])
        assert line["Errors"] == len(response["batchItemFailures"]) == len(want)
    else:  # an error answer: the model never ran, so there is no inference time to report (not a 0 that skews it)
        assert "InferenceMs" not in names and "InferenceMs" not in line
        assert line["Errors"] == 1
        status = str(want) if how == "http" else want
        assert line["status"] == status and line["error"].startswith(("InvalidInputError", "PayloadTooLargeError",
                                                                        "InvalidParametersError", "MethodNotAllowedError"))
    assert line["RequestMs"] >= line.get("InferenceMs", 0)


def test_cold_start_and_init_ms_only_on_the_first_invocation(tiny_bundle, capsys) -> None:
    fn = new_function(tiny_bundle("bert"), NUM_THREADS="1")
    _, first, _ = invoke(fn, {"inputs": "first"}, capsys)
    _, second, _ = invoke(fn, load_event("sqs_batch.json"), capsys)
    assert first["ColdStart"] == 1.0 and first["InitMs"] == fn.init_ms["total"] > 0
    assert second["ColdStart"] == 0.0 and "InitMs" not in metric_names(second) and "InitMs" not in second


def test_an_error_after_the_forward_pass_reports_the_inference_it_spent(tiny_bundle, capsys, monkeypatch) -> None:
    fn = new_function(tiny_bundle("bert"), NUM_THREADS="1")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("postprocess broke")

    monkeypatch.setattr(fn.predictor.task, "postprocess", broken)
    response, line, _ = invoke(fn, load_event("function_url.json"), capsys)
    assert response["statusCode"] == 500 and line["Errors"] == 1 and line["status"] == "500"
    assert line["InferenceMs"] == line["timing"]["request_ms"]["inference"] > 0
    assert set(line["timing"]["request_ms"]) == {"parse", "preprocess", "inference", "postprocess", "total"}


def test_namespace_and_function_name_come_from_the_settings(tiny_bundle, capsys) -> None:
    fn = new_function(tiny_bundle("bert"), NUM_THREADS="1", METRICS_NAMESPACE="Team/Models",
                      AWS_LAMBDA_FUNCTION_NAME="sentiment-prod")
    _, line, _ = invoke(fn, {"inputs": "hello"}, capsys)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Team/Models"
    assert line["function_name"] == "sentiment-prod"
