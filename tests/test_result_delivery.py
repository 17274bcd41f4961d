"""SQS results that do not fit where they go: split batches, S3 claim checks, refusals that name the limit.

moto's SQS and S3 (in process) are the peers: they refuse a batch over 1 MiB and a message over the queue's
MaximumMessageSize as SQS does. The S3 claim checks are read back with the Amazon SQS Extended Client, the library a
consumer of the results queue would use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import FakeContext, new_function
from runtime.claim_check import KEY_PREFIX, POINTER_CLASS
from runtime.settings import SettingsError
from runtime.sinks import LOG_RESULT_LIMIT_BYTES


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(sqs, s3) clients of an in-process moto; the function under test reaches the same moto through boto3."""
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client("sqs"), boto3.client("s3")


def sqs_event(bodies: list[Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": json.dumps(body),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def receive_all(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    from devtools.moto_sqs import receive_until

    # one more than expected: a duplicate or an extra message would show up
    return receive_until(sqs, url, expected + 1, timeout_s=1, delete=True)


def failures(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def test_ten_results_over_the_batch_limit_are_all_delivered_in_smaller_batches(aws, many_labels_bundle: Path) -> None:
    sqs, _ = aws
    url = sqs.create_queue(QueueName="results")["QueueUrl"]
    fn = new_function(many_labels_bundle, RESULTS_QUEUE_URL=url)
    event = sqs_event([{"inputs": f"review number {i}"} for i in range(10)])

    response = fn.handle(event, FakeContext())

    results = {json.loads(m["Body"])["messageId"]: json.loads(m["Body"]) for m in receive_all(sqs, url, 10)}
    sizes = [len(m.encode()) for m in (json.dumps(r) for r in results.values())]
    assert sum(sizes) > 1_048_576 > max(sizes)  # together over SendMessageBatch's limit, each under a message's
    assert failures(response) == [] and sorted(results) == [f"m{i}" for i in range(10)]
    assert all(len(r["outputs"]) == 4000 for r in results.values())


def test_a_result_over_the_queue_message_size_goes_to_s3_and_the_extended_client_reads_it_back(
    aws, tiny_bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqs_extended_client import SQSExtendedClientSession

    sqs, s3 = aws
    url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "2048"})["QueueUrl"]
    s3.create_bucket(Bucket="results-bucket")
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url, RESULTS_BUCKET="results-bucket")
    small, big = {"inputs": "short"}, {"inputs": [f"text number {i}" for i in range(12)]}

    response = fn.handle(sqs_event([small, big, small]), FakeContext())

    assert failures(response) == []
    raw = {m["MessageId"]: m for m in receive_all(sqs, url, 3)}
    pointers = [json.loads(m["Body"]) for m in raw.values() if m["Body"].startswith("[")]
    assert pointers == [[POINTER_CLASS, {"s3BucketName": "results-bucket", "s3Key": f"{KEY_PREFIX}m1.json"}]]
    stored = json.loads(s3.get_object(Bucket="results-bucket", Key=f"{KEY_PREFIX}m1.json")["Body"].read())
    assert stored["messageId"] == "m1" and len(stored["outputs"]) == 12
    assert len(json.dumps(stored)) > 2048

    # a consumer with the SQS Extended Client gets the whole result, as if it had been sent inline
    fn.handle(sqs_event([small, big]), FakeContext())
    consumer = SQSExtendedClientSession().client("sqs")
    consumer.large_payload_support = "results-bucket"
    from devtools.moto_sqs import receive_until

    got = receive_until(consumer, url, 3, timeout_s=1)
    bodies = {json.loads(m["Body"])["messageId"]: json.loads(m["Body"]) for m in got}
    assert sorted(bodies) == ["m0", "m1"] and len(bodies["m1"]["outputs"]) == 12
    assert bodies["m1"]["outputs"] == stored["outputs"]


def test_without_a_bucket_an_oversized_result_fails_only_its_record_and_says_why(aws, tiny_bundle, capsys) -> None:
    sqs, _ = aws
    url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "2048"})["QueueUrl"]
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
    capsys.readouterr()

    response = fn.handle(sqs_event([{"inputs": "short"}, {"inputs": [f"text {i}" for i in range(12)]}]), FakeContext())

    assert failures(response) == ["m1"]
    assert [json.loads(m["Body"])["messageId"] for m in receive_all(sqs, url, 1)] == ["m0"]
    why = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"m1"' in line]
    assert any("(2048 bytes)" in w["message"] and "RESULTS_BUCKET" in w["message"] and w["bytes"] > 2048 for w in why)


def test_the_log_sink_never_acknowledges_a_result_cut_by_cloudwatch(many_labels_bundle: Path, capsys) -> None:
    fn = new_function(many_labels_bundle)  # no RESULTS_QUEUE_URL: results go to the log
    capsys.readouterr()

    response = fn.handle(sqs_event([{"inputs": "one"}, {"inputs": ["two", "three"]}]), FakeContext())

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged = {line["messageId"]: line for line in lines if line["message"] == "result"}
    assert len(json.dumps(logged["m0"]).encode()) < LOG_RESULT_LIMIT_BYTES + 1024  # one input fits a log event
    assert failures(response) == ["m1"] and "m1" not in logged  # two do not: not logged cut, not acknowledged
    assert any(line.get("messageId") == "m1" and "RESULTS_BUCKET" in line["message"] for line in lines)


def test_the_log_sink_puts_a_large_result_in_s3_and_logs_where(aws, many_labels_bundle: Path, capsys) -> None:
    _, s3 = aws
    s3.create_bucket(Bucket="big-results")
    fn = new_function(many_labels_bundle, RESULTS_BUCKET="big-results")
    capsys.readouterr()

    response = fn.handle(sqs_event([{"inputs": ["two", "three"]}]), FakeContext())

    assert failures(response) == []
    line = next(json.loads(x) for x in capsys.readouterr().out.splitlines() if '"result_s3"' in x)
    where = line["result_s3"]
    stored = s3.get_object(Bucket=where["s3BucketName"], Key=where["s3Key"])["Body"].read()
    assert where["bytes"] == len(stored) > LOG_RESULT_LIMIT_BYTES
    assert [len(o) for o in json.loads(stored)["outputs"]] == [4000, 4000]


def test_a_results_queue_or_bucket_that_cannot_be_used_stops_init_with_its_name(aws, tiny_bundle) -> None:
    sqs, _ = aws
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    with pytest.raises(SettingsError, match=r"RESULTS_QUEUE_URL='.*no-such-queue' cannot be used"):
        new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=missing)
    with pytest.raises(SettingsError, match="RESULTS_BUCKET='no-such-bucket' cannot be used"):
        new_function(tiny_bundle("bert"), RESULTS_BUCKET="no-such-bucket")


def test_results_the_queue_refuses_after_init_are_reported_as_failures(aws, tiny_bundle) -> None:
    sqs, _ = aws
    url = sqs.create_queue(QueueName="goes-away")["QueueUrl"]
    fn = new_function(tiny_bundle("bert"), RESULTS_QUEUE_URL=url)
    sqs.delete_queue(QueueUrl=url)

    response = fn.handle(sqs_event([{"inputs": "a"}, {"inputs": "b"}, "not an object"]), FakeContext())

    assert failures(response) == ["m0", "m1", "m2"]
