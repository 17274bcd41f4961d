"""SQS batches at their edges: FIFO group order, FIFO results deduplicated, duplicate and missing messageIds, and
error results for records that can never succeed.

Peers: Powertools' SqsFifoPartialProcessor(skip_group_on_error=True) decides which FIFO records fail on the same
event; moto's FIFO queue keeps the results (and deduplicates them as SQS does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from support import FakeContext, new_function
from runtime.batch import InvalidSqsEventError

POISON = "not json at all"


def record(message_id: str, body: Any, group: str | None = None) -> dict[str, Any]:
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000", "SenderId": "AIDA",
                  "ApproximateFirstReceiveTimestamp": "1700000000001"}
    if group is not None:
        attributes |= {"MessageGroupId": group, "MessageDeduplicationId": message_id, "SequenceNumber": "1"}
    source = "arn:aws:sqs:us-east-1:123456789012:in" + (".fifo" if group else "")
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}",
            "body": body if isinstance(body, str) else json.dumps(body), "attributes": attributes,
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": source,
            "awsRegion": "us-east-1"}


def failures(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client("sqs")


def received(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    from devtools.moto_sqs import receive_until

    return receive_until(sqs, url, expected + 1, timeout_s=1, delete=True)


# A FIFO event: group A has a poison record in the middle, group B is clean, C's first record is poison. The
# parameters differ between neighbours so that chunks break inside a group too.
FIFO_EVENT = [
    ("a1", {"inputs": "a one"}, "A"),
    ("b1", {"inputs": "b one"}, "B"),
    ("a2", POISON, "A"),
    ("c1", POISON, "C"),
    ("b2", {"inputs": "b two", "parameters": {"top_k": 1}}, "B"),
    ("a3", {"inputs": "a three"}, "A"),
    ("c2", {"inputs": "c two"}, "C"),
    ("a4", {"inputs": "a four", "parameters": {"top_k": 2}}, "A"),
    ("b3", {"inputs": "b three"}, "B"),
]


def test_a_fifo_group_stops_at_its_first_failure_as_powertools_decides(tiny_bundle, monkeypatch) -> None:
    from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response

    event = {"Records": [record(mid, body, group) for mid, body, group in FIFO_EVENT]}

    def handle_like_us(record: Any) -> None:
        if record.body == POISON:
            raise ValueError("poison")

    peer = process_partial_response(event=event, record_handler=handle_like_us,
                                    processor=SqsFifoPartialProcessor(skip_group_on_error=True), context=FakeContext())

    fn = new_function(tiny_bundle("bert"))
    ran: list[str] = []
    predict = fn.predictor.predict
    monkeypatch.setattr(fn.predictor, "predict", lambda inputs, *a, **k: ran.extend(inputs) or predict(inputs, *a, **k))
    ours = fn.handle(event, FakeContext())

    assert failures(ours) == failures(peer) == ["a2", "c1", "a3", "c2", "a4"]
    assert sorted(ran) == sorted(["a one", "b one", "b two", "b three"])  # skipped records never reach the model


def test_a_model_failure_inside_a_fifo_chunk_drops_the_later_records_of_its_group(tiny_bundle) -> None:
    long = " ".join(["word"] * 400)  # over the tiny model's 128 tokens, refused with "truncate": false
    params = {"truncate": False}
    event = {"Records": [record("a1", {"inputs": "fine", "parameters": params}, "A"),
                         record("a2", {"inputs": long, "parameters": params}, "A"),
                         record("b1", {"inputs": "fine too", "parameters": params}, "B"),
                         record("a3", {"inputs": "after", "parameters": params}, "A")]}
    fn = new_function(tiny_bundle("bert"))
    assert failures(fn.handle(event, FakeContext())) == ["a2", "a3"]


def test_fifo_results_keep_the_group_and_a_redelivered_record_gives_one_result(aws, tiny_bundle) -> None:
    sqs = aws
    url = sqs.create_queue(QueueName="results.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
    event = {"Records": [record("m1", {"inputs": "one"}, "G1"), record("m2", {"inputs": "two"}, "G2"),
                         record("m3", {"inputs": "three"}, "G1")]}

    assert failures(fn.handle(event, FakeContext())) == []
    assert failures(fn.handle(event, FakeContext())) == []  # redelivered: computed again, deduplicated by SQS

    got = received(sqs, url, 3)
    assert [(json.loads(m["Body"])["messageId"], m["Attributes"]["MessageGroupId"]) for m in got] == [
        ("m1", "G1"), ("m2", "G2"), ("m3", "G1")]


def test_a_standard_source_writes_to_a_fifo_results_queue_one_group_per_message(aws, tiny_bundle) -> None:
    sqs = aws
    url = sqs.create_queue(QueueName="out.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
    assert failures(fn.handle({"Records": [record("s1", {"inputs": "x"}), record("s2", {"inputs": "y"})]},
                              FakeContext())) == []
    assert sorted(m["Attributes"]["MessageGroupId"] for m in received(sqs, url, 2)) == ["s1", "s2"]


def test_a_message_delivered_twice_in_one_event_is_answered_once(aws, tiny_bundle) -> None:
    sqs = aws
    url = sqs.create_queue(QueueName="results")["QueueUrl"]
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
    twice = record("d1", {"inputs": "same"})
    event = {"Records": [twice, record("d2", POISON), twice, record("d2", POISON)]}

    assert failures(fn.handle(event, FakeContext())) == ["d2"]
    assert [json.loads(m["Body"])["messageId"] for m in received(sqs, url, 1)] == ["d1"]


def test_a_record_without_a_message_id_fails_the_batch_with_a_reason(tiny_bundle) -> None:
    fn = new_function(tiny_bundle("bert"))
    event = {"Records": [record("ok", {"inputs": "x"}), {**record("", {"inputs": "y"}), "messageId": ""}]}
    with pytest.raises(InvalidSqsEventError, match="SQS record 1 has no messageId"):
        fn.handle(event, FakeContext())
    assert "outputs" in fn.handle({"inputs": "still serving"}, FakeContext())


def test_records_that_can_never_succeed_are_answered_with_an_error_result_when_asked(aws, tiny_bundle, capsys) -> None:
    sqs = aws
    url = sqs.create_queue(QueueName="results")["QueueUrl"]
    event = {"Records": [record("good", {"inputs": "fine"}), record("bad-json", POISON),
                         record("bad-param", {"inputs": "x", "parameters": {"top_k": 0}})]}

    failing = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)  # SQS_ERROR_RESULTS=fail, the default
    capsys.readouterr()
    assert failures(failing.handle(event, FakeContext())) == ["bad-json", "bad-param"]
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reasons = {line["messageId"]: line for line in logged if line.get("errorType")}
    assert reasons["bad-json"]["errorType"] == "InvalidInputError"
    assert reasons["bad-param"]["errorType"] == "InvalidParametersError" and "top_k" in reasons["bad-param"]["errorMessage"]
    received(sqs, url, 1)

    delivering = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url, SQS_ERROR_RESULTS="deliver")
    assert failures(delivering.handle(event, FakeContext())) == []
    results = {json.loads(m["Body"])["messageId"]: json.loads(m["Body"]) for m in received(sqs, url, 3)}
    assert sorted(results) == ["bad-json", "bad-param", "good"]
    assert "outputs" in results["good"]
    assert results["bad-json"]["error"]["type"] == "InvalidInputError"
    assert results["bad-param"]["error"]["type"] == "InvalidParametersError"
    assert "top_k" in results["bad-param"]["error"]["message"]
