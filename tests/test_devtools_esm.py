"""The SQS event source mapping of devtools.esm against a moto server, with and without the RIE."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from devtools.esm import DrainTimeout, EventSourceMapping, judge_response, queue_depth
from devtools.moto_sqs import Queues, create_queues, drain_queue, function_env, receive_until
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

    [outcome] = EventSourceMapping(sqs, queues.input_url, invoke).poll_until_delivered([message_id])

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

    outcomes = esm.poll_until_delivered(ids)  # one batch, or several if a receive returns fewer than asked

    assert Counter(mid for o in outcomes for mid in o.message_ids) == Counter(ids)  # each once: in flight after
    for outcome in outcomes:
        assert outcome.deleted == () and outcome.kept == outcome.message_ids
        assert outcome.failure == failure
    assert queue_depth(sqs, queues.input_url) == 3


def test_a_handler_exception_through_the_rie_deletes_nothing_and_the_batch_comes_back(sqs: Any) -> None:
    # No redrive within the test: every failed message must stay in the input queue, however the polls split.
    queues = create_queues(sqs, prefix=f"t{uuid.uuid4().hex[:12]}", max_receive_count=100)
    ids = _send(sqs, queues.input_url, ["{}", "{}"])
    events: list[dict[str, Any]] = []
    with RieFunction("tests.fakes.raises_in_handler.handler", timeout_s=5) as fn:
        def invoke(event: dict[str, Any]) -> InvokeResult:
            events.append(event)
            return fn.invoke(event)

        esm = EventSourceMapping(sqs, queues.input_url, invoke, visibility_timeout_s=1)
        # Delivered, failed, then (1 s visibility timeout later) delivered again; a receive may return 1 of the
        # 2 messages (moto makes them visible again microseconds apart), so poll until each came twice.
        outcomes = esm.poll_until_delivered(ids, times=2, timeout_s=10)

    for outcome in outcomes:
        assert outcome.result.error_type == "FakeRequestError"
        assert outcome.failure.startswith("invoke failed (HTTP 200): FakeRequestError: bad request: {'Records': [")
        assert outcome.deleted == () and outcome.kept == outcome.message_ids
    receive_counts: dict[str, list[int]] = {mid: [] for mid in ids}
    for event in events:
        for record in event["Records"]:
            receive_counts[record["messageId"]].append(int(record["attributes"]["ApproximateReceiveCount"]))
    for mid in ids:  # not deleted: the same message delivered again, its receive count going up
        assert receive_counts[mid][:2] == [1, 2], receive_counts
    assert queue_depth(sqs, queues.input_url) == 2  # nothing deleted
    assert queue_depth(sqs, queues.dlq_url) == 0


def test_receive_until_and_drain_queue_read_every_message_over_several_receives(sqs: Any, queues: Queues) -> None:
    ids = _send(sqs, queues.input_url, [f"m{i}" for i in range(25)])  # more than one receive (10 at most) holds

    got = receive_until(sqs, queues.input_url, 25, visibility_timeout_s=60)

    assert sorted(m["MessageId"] for m in got) == sorted(ids)
    assert queue_depth(sqs, queues.input_url) == 25  # received, not deleted: in flight
    assert receive_until(sqs, queues.input_url, 1, timeout_s=0.3) == []  # bounded: all in flight, none arrive

    dead = _send(sqs, queues.dlq_url, [f"d{i}" for i in range(25)])
    drained = drain_queue(sqs, queues.dlq_url)
    assert sorted(m["MessageId"] for m in drained) == sorted(dead) and len(drained) == 25
    assert queue_depth(sqs, queues.dlq_url) == 0


def test_run_until_drained_is_bounded(sqs: Any, queues: Queues) -> None:
    _send(sqs, queues.input_url, ["{}"])
    esm = EventSourceMapping(sqs, queues.input_url, lambda event: _answer(["bad"]), visibility_timeout_s=30)

    with pytest.raises(DrainTimeout) as caught:
        esm.run_until_drained(timeout_s=0.5)

    assert caught.value.report.whole_batch_failures == 1
    assert str(caught.value).startswith(f"{queues.input_url} still holds 1 messages after ")
