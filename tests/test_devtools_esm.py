"""The SQS event source mapping of devtools.esm against a moto server, with and without the RIE."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from devtools.esm import DrainTimeout, EventSourceMapping, judge_response, queue_depth
from devtools.moto_sqs import Queues, create_queues, drain_queue, function_env
from devtools.rie import InvokeResult, RieFunction

MAX_RECEIVE_COUNT = 2


@pytest.fixture
def queues(sqs: Any) -> Queues:
    # A fresh set per test: tests share one server.
    return create_queues(sqs, prefix=f"t{uuid.uuid4().hex[:12]}", max_receive_count=MAX_RECEIVE_COUNT)


def _send(sqs: Any, queue_url: str, bodies: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])
        assert not answer.get("Failed")
        ids.extend(entry["MessageId"] for entry in sorted(answer["Successful"], key=lambda e: int(e["Id"])))
    return ids


def _answer(body: Any, status: int = 200) -> InvokeResult:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return InvokeResult(status=status, body=body, raw=raw, elapsed_s=0.0)


def test_100_messages_10_poison_give_90_results_10_dead_letters_and_lose_none(
        endpoint: str, sqs: Any, queues: Queues) -> None:
    bodies = [f"not json {i}" if i % 10 == 3 else json.dumps({"inputs": f"text {i}"}) for i in range(100)]
    ids = _send(sqs, queues.input_url, bodies)
    poison = {mid for mid, body in zip(ids, bodies) if body.startswith("not json")}
    good = set(ids) - poison

    env = function_env(endpoint, results_queue_url=queues.results_url)
    with RieFunction("tests.fakes.sqs_batch_handler.handler", env=env, timeout_s=10) as fn:
        esm = EventSourceMapping(sqs, queues.input_url, fn.invoke, visibility_timeout_s=1)
        report = esm.run_until_drained(timeout_s=60)

    results = [json.loads(m["Body"]) for m in drain_queue(sqs, queues.results_url)]
    result_ids = Counter(r["messageId"] for r in results)
    dead = Counter(m["MessageId"] for m in drain_queue(sqs, queues.dlq_url))

    assert queue_depth(sqs, queues.input_url) == 0
    assert set(result_ids) == good and max(result_ids.values()) == 1  # 90 results, each exactly once
    assert set(dead) == poison and max(dead.values()) == 1  # 10 in the DLQ
    assert set(result_ids) | set(dead) == set(ids)  # 0 lost
    assert report.deleted == good and report.whole_batch_failures == 0
    invoked = Counter(mid for outcome in report.outcomes for mid in outcome.message_ids)
    assert {invoked[mid] for mid in poison} == {MAX_RECEIVE_COUNT}  # retried, then dead-lettered
    assert {invoked[mid] for mid in good} == {1}
    assert {r["receiveCount"] for r in results} == {"1"}


def test_records_carry_the_fields_lambda_sends(sqs: Any, queues: Queues) -> None:
    body = '{"inputs": "hello"}'
    message_id = sqs.send_message(QueueUrl=queues.input_url, MessageBody=body, MessageAttributes={
        "color": {"DataType": "String", "StringValue": "red"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})["MessageId"]
    events = []

    def invoke(event: dict[str, Any]) -> InvokeResult:
        events.append(event)
        return _answer(None)

    outcome = EventSourceMapping(sqs, queues.input_url, invoke).poll_once()

    [event] = events
    [record] = event["Records"]
    assert list(record) == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                            "eventSource", "eventSourceARN", "awsRegion"]
    assert record["messageId"] == message_id and record["body"] == body and record["receiptHandle"]
    assert set(record["attributes"]) == {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                         "ApproximateFirstReceiveTimestamp"}
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "color": {"stringValue": "red", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.input_arn
    assert record["awsRegion"] == "us-east-1"
    assert outcome.deleted == (message_id,) and outcome.failure is None
    assert queue_depth(sqs, queues.input_url) == 0


@pytest.mark.parametrize("body", [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}],
                         ids=["null", "empty-object", "null-list", "empty-list"])
def test_responses_that_mean_the_whole_batch_succeeded(body: Any) -> None:
    assert judge_response(_answer(body), ["a", "b"]) == (frozenset(), None)


def test_listed_failures_are_the_only_ones_kept() -> None:
    answer = _answer({"batchItemFailures": [{"itemIdentifier": "b"}]})
    assert judge_response(answer, ["a", "b", "c"]) == (frozenset({"b"}), None)


WHOLE_BATCH_FAILURES = [
    pytest.param(_answer({"errorMessage": "boom", "errorType": "ValueError", "requestId": "r", "stackTrace": []}),
                 "invoke failed (HTTP 200): ValueError: boom", id="handler-exception"),
    pytest.param(_answer({"errorMessage": "bundle missing", "errorType": "BundleError", "requestId": ""}, 502),
                 "invoke failed (HTTP 502): BundleError: bundle missing", id="init-error"),
    pytest.param(_answer("Task timed out after 1.00 seconds"),
                 "invoke timed out: Task timed out after 1.00 seconds", id="timeout"),
    pytest.param(_answer("gateway down", 500), "invoke failed with HTTP 500: b'gateway down'", id="http-500"),
    pytest.param(_answer(["m1"]),
                 "malformed response: expected an object with batchItemFailures, got list \"['m1']\"",
                 id="list-body"),
    pytest.param(_answer({"batchItemFailures": "m1"}),
                 "malformed response: batchItemFailures is str, must be a list", id="failures-not-list"),
    pytest.param(_answer({"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}),
                 "malformed response: batchItemFailures entry {'itemIdentifier': 'not-in-batch'} has no "
                 "itemIdentifier that is a messageId of this batch", id="unknown-identifier"),
    pytest.param(_answer({"batchItemFailures": [{"itemIdentifier": ""}]}),
                 "malformed response: batchItemFailures entry {'itemIdentifier': ''} has no "
                 "itemIdentifier that is a messageId of this batch", id="empty-identifier"),
    pytest.param(_answer({"batchItemFailures": [{"itemId": "x"}]}),
                 "malformed response: batchItemFailures entry {'itemId': 'x'} has no "
                 "itemIdentifier that is a messageId of this batch", id="wrong-key"),
]


@pytest.mark.parametrize(("answer", "failure"), WHOLE_BATCH_FAILURES)
def test_a_failed_invoke_deletes_nothing(sqs: Any, queues: Queues, answer: InvokeResult, failure: str) -> None:
    ids = _send(sqs, queues.input_url, ["{}", "{}", "{}"])
    esm = EventSourceMapping(sqs, queues.input_url, lambda event: answer, visibility_timeout_s=30)

    outcome = esm.poll_once()

    assert set(outcome.message_ids) == set(ids)
    assert outcome.deleted == () and set(outcome.kept) == set(ids)
    assert outcome.failure == failure
    assert queue_depth(sqs, queues.input_url) == 3


def test_a_handler_exception_through_the_rie_deletes_nothing_and_the_batch_comes_back(
        sqs: Any, queues: Queues) -> None:
    ids = _send(sqs, queues.input_url, ["{}", "{}"])
    with RieFunction("tests.fakes.raises_in_handler.handler", timeout_s=5) as fn:
        esm = EventSourceMapping(sqs, queues.input_url, fn.invoke, visibility_timeout_s=1)
        failed = esm.poll_once()
        back = None
        for _ in range(40):  # the batch is in flight for the 1 s visibility timeout
            back = esm.poll_once()
            if back is not None:
                break
            time.sleep(0.1)

    assert failed.result.error_type == "FakeRequestError"
    assert failed.failure.startswith("invoke failed (HTTP 200): FakeRequestError: bad request: {'Records': [")
    assert failed.deleted == ()
    assert back is not None and set(back.message_ids) == set(ids)  # not deleted: delivered again


def test_run_until_drained_is_bounded(sqs: Any, queues: Queues) -> None:
    _send(sqs, queues.input_url, ["{}"])
    esm = EventSourceMapping(sqs, queues.input_url, lambda event: _answer(["bad"]), visibility_timeout_s=30)

    with pytest.raises(DrainTimeout) as caught:
        esm.run_until_drained(timeout_s=0.5)

    assert caught.value.report.whole_batch_failures == 1
    assert str(caught.value).startswith(f"{queues.input_url} still holds 1 messages after ")
