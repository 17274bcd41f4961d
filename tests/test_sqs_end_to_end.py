"""The SQS path end to end: a moto queue -> the event source mapping (devtools.esm) -> the real handler in the
official RIE -> results in a results queue, poison messages in the dead-letter queue, none lost.

The mapping plays Lambda's SQS trigger with ReportBatchItemFailures; the queue's redrive policy (maxReceiveCount 2)
moves a message to the DLQ on the receive after its second failure.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.esm import EventSourceMapping, queue_depth
from devtools.moto_sqs import Queues, create_queues, drain_queue, function_env
from devtools.rie import RieFunction
from runtime.bundle import read_bundle

MAX_RECEIVE_COUNT = 2
# Must outlast one batch (~0.1-1 s warm on the tiny model) so the deletes are accepted; failed messages come back
# after it, so poison messages reach the DLQ after about two of these.
VISIBILITY_S = 4
LABELS = 3  # the tiny classifier's labels: every output lists all of them unless top_k says otherwise

# Ten ways a message is unusable: not JSON, no usable "inputs", parameters the task refuses.
POISON_BODIES = [
    "not json at all",
    '{"inputs": "this message was cut off',
    "[1, 2",
    "<xml>not json</xml>",
    '{"parameters": {}}',
    '{"input": "typo in the key"}',
    '{"inputs": 42}',
    '{"inputs": "fine text", "parameters": {"top_k": 99}}',
    '{"inputs": "fine text", "parameters": {"top_k": 0}}',
    '{"inputs": ["fine", "text"], "parameters": {"temperature": 0.7}}',
]


def good_body(i: int) -> dict[str, Any]:
    """Three request shapes in turn: one text, a list of two, one text with top_k 1."""
    if i % 3 == 0:
        return {"inputs": f"Review {i}: the delivery was quick and the product works."}
    if i % 3 == 1:
        return {"inputs": [f"Review {i}: it broke after a week.", f"Review {i}: support never answered."]}
    return {"inputs": f"Review {i}: decent value for the price.", "parameters": {"top_k": 1}}


def expected_shape(body: dict[str, Any]) -> list[int]:
    """Labels per output, one entry per input."""
    width = body.get("parameters", {}).get("top_k", LABELS)
    return [width] * (len(body["inputs"]) if isinstance(body["inputs"], list) else 1)


@pytest.fixture
def queues(sqs: Any) -> Queues:
    return create_queues(sqs, prefix=f"e2e{uuid.uuid4().hex[:12]}", max_receive_count=MAX_RECEIVE_COUNT,
                         visibility_timeout_s=VISIBILITY_S)


def send(sqs: Any, queue_url: str, bodies: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start:start + 10])])
        assert not answer.get("Failed")
        ids.extend(e["MessageId"] for e in sorted(answer["Successful"], key=lambda e: int(e["Id"])))
    return ids


def test_100_messages_10_poison_give_90_results_10_dead_letters_and_lose_none(
        endpoint: str, sqs: Any, queues: Queues, tiny_bundle: Callable[..., Path]) -> None:
    bundle = tiny_bundle("bert")
    bodies = [POISON_BODIES[i // 10] if i % 10 == 7 else json.dumps(good_body(i)) for i in range(100)]
    ids = send(sqs, queues.input_url, bodies)
    sent = dict(zip(ids, bodies, strict=True))
    poison = {mid for mid, body in sent.items() if body in POISON_BODIES}
    good = set(ids) - poison
    assert len(poison) == 10 and len(good) == 90

    env = {**function_env(endpoint, results_queue_url=queues.results_url), "MODEL_BUNDLE": str(bundle)}
    with RieFunction("handler.handler", env=env, timeout_s=120) as fn:
        # A warm container, as after Lambda's first batch: init (seconds) would outlast the visibility timeout.
        assert fn.invoke({"inputs": "warm up"}).ok
        assert fn.invoke({"Records": []}).body == {"batchItemFailures": []}  # builds the SQS client
        esm = EventSourceMapping(sqs, queues.input_url, fn.invoke, visibility_timeout_s=VISIBILITY_S)
        report = esm.run_until_drained(timeout_s=90)

    results = [json.loads(m["Body"]) for m in drain_queue(sqs, queues.results_url)]
    result_ids = Counter(r["messageId"] for r in results)
    dead = Counter(m["MessageId"] for m in drain_queue(sqs, queues.dlq_url))

    assert queue_depth(sqs, queues.input_url) == 0
    assert len(results) == 90 and set(result_ids) == good and max(result_ids.values()) == 1  # each exactly once
    assert len(dead) == 10 and set(dead) == poison and max(dead.values()) == 1
    assert set(result_ids) | set(dead) == set(ids)  # 0 lost
    sha256 = read_bundle(bundle).sha256
    for result in results:
        body = json.loads(sent[result["messageId"]])
        outputs = result["outputs"] if isinstance(body["inputs"], list) else [result["outputs"]]
        assert [len(labels) for labels in outputs] == expected_shape(body)
        assert result["model"]["sha256"] == sha256
        assert result["timing"]["cold_start"] is False
    assert report.deleted == good and report.whole_batch_failures == 0  # partial answers only, never a whole batch
    invoked = Counter(mid for outcome in report.outcomes for mid in outcome.message_ids)
    assert {invoked[mid] for mid in poison} == {MAX_RECEIVE_COUNT}  # retried, then dead-lettered
    assert {invoked[mid] for mid in good} == {1}


def test_an_init_error_deletes_nothing_and_every_message_ends_in_the_dlq(
        endpoint: str, sqs: Any, queues: Queues, tiny_bundle: Callable[..., Path], tmp_path: Path) -> None:
    data = bytearray(tiny_bundle("bert").read_bytes())
    data[-100] ^= 0x01  # one data byte: the content check fails at init
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(bytes(data))
    ids = send(sqs, queues.input_url, [json.dumps(good_body(i)) for i in range(10)])

    env = {**function_env(endpoint, results_queue_url=queues.results_url), "MODEL_BUNDLE": str(bad)}
    with RieFunction("handler.handler", env=env, timeout_s=120) as fn:
        esm = EventSourceMapping(sqs, queues.input_url, fn.invoke, visibility_timeout_s=1)
        # Every message once: one batch of 10, or several when a receive returns fewer than asked.
        first = esm.poll_until_delivered(ids, timeout_s=30)
        depth_after_failure = queue_depth(sqs, queues.input_url)
        report = esm.run_until_drained(timeout_s=60)

    for failed in first:
        assert failed.result.status == 502 and failed.result.error_type == "BundleCorruptError"
        assert failed.failure.startswith(
            f"invoke failed (HTTP 502): BundleCorruptError: {bad} failed its content check")
        assert failed.deleted == () and failed.kept == failed.message_ids
    assert depth_after_failure == 10  # nothing deleted: in flight, then visible again
    first_ids = {mid for o in first for mid in o.message_ids}
    came_back = [o for o in report.outcomes if set(o.message_ids) & first_ids]
    assert came_back and all(o.failure is not None and o.deleted == () for o in report.outcomes)

    dead = Counter(m["MessageId"] for m in drain_queue(sqs, queues.dlq_url))
    assert set(dead) == set(ids) and max(dead.values()) == 1  # all in the DLQ, none lost
    assert drain_queue(sqs, queues.results_url) == []
    assert queue_depth(sqs, queues.input_url) == 0
    invoked = Counter(mid for outcome in [*first, *report.outcomes] for mid in outcome.message_ids)
    assert set(invoked.values()) == {MAX_RECEIVE_COUNT}


def test_a_result_too_large_for_the_results_queue_reaches_a_consumer_through_s3(
        endpoint: str, sqs: Any, tiny_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the RIE: the function reads the queue's MaximumMessageSize at init, stores the large result in the
    moto S3 bucket, and a consumer with the SQS Extended Client reads both results whole."""
    import boto3
    from sqs_extended_client import SQSExtendedClientSession

    from devtools.moto_sqs import DUMMY_CREDENTIALS, REGION, receive_until

    prefix = f"big{uuid.uuid4().hex[:12]}"
    results_url = sqs.create_queue(QueueName=f"{prefix}-results", Attributes={"MaximumMessageSize": "2048"})["QueueUrl"]
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **{k.lower(): v for k, v in DUMMY_CREDENTIALS.items()}
                 ).create_bucket(Bucket=prefix)
    env = {**function_env(endpoint, results_queue_url=results_url), "RESULTS_BUCKET": prefix,
           "MODEL_BUNDLE": str(tiny_bundle("bert"))}
    records = [{"messageId": mid, "receiptHandle": "r", "body": json.dumps(body), "attributes": {},
                "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:in"}
               for mid, body in (("small", {"inputs": "one"}), ("large", {"inputs": [f"text {i}" for i in range(12)]}))]
    with RieFunction("handler.handler", env=env, timeout_s=120) as fn:
        answer = fn.invoke({"Records": records})
    assert answer.body == {"batchItemFailures": []}

    for name, value in {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    consumer = SQSExtendedClientSession().client("sqs")
    consumer.large_payload_support = prefix
    got = {json.loads(m["Body"])["messageId"]: json.loads(m["Body"]) for m in receive_until(consumer, results_url, 3, timeout_s=2)}
    assert sorted(got) == ["large", "small"]
    assert len(got["large"]["outputs"]) == 12 and len(json.dumps(got["large"])) > 2048


def test_a_batch_longer_than_the_timeout_returns_unstarted_records_and_computes_none_twice(
        endpoint: str, sqs: Any, tiny_bundle: Callable[..., Path]) -> None:
    """Through the RIE: a 20 s function timeout with DEADLINE_MARGIN_MS 19.88 s leaves each invocation 120 ms for up to
    10 records of 100 generated tokens each (about 50 ms each on a quiet 2-core machine: a batch cannot fit unless the
    machine is over 4x faster; 6 records in 500 ms did fit on a quiet machine. The RIE counts init in the first
    invocation's time, hence not simply a short timeout). Results go out chunk by chunk; before each chunk the
    function checks get_remaining_time_in_millis against the longest chunk + the margin and returns the records it
    cannot start (on a slow machine the decoding of the first is cut at the deadline too, and delivered). No
    invocation times out, every record ends with exactly one result, none in the DLQ."""
    # each return to the queue is a receive: 16 records taken one invocation at a time stay far from the DLQ
    queues = create_queues(sqs, prefix=f"deadline{uuid.uuid4().hex[:12]}", max_receive_count=50,
                           visibility_timeout_s=3)  # outlasts one invocation (about 1 s)
    bodies = [json.dumps({"inputs": f"prompt {i}", "parameters": {"max_new_tokens": 100}}) for i in range(16)]
    ids = send(sqs, queues.input_url, bodies)
    env = {**function_env(endpoint, results_queue_url=queues.results_url),
           "MODEL_BUNDLE": str(tiny_bundle("llama", "text-generation")),
           "MAX_BATCH_ITEMS": "1",  # one record per chunk: the deadline is checked between records
           "DEADLINE_MARGIN_MS": "19880"}
    with RieFunction("handler.handler", env=env, timeout_s=20) as fn:
        assert fn.invoke({"inputs": "warm up", "parameters": {"max_new_tokens": 2}}).ok  # init is not the batch's
        esm = EventSourceMapping(sqs, queues.input_url, fn.invoke)
        report = esm.run_until_drained(timeout_s=240)
        logs = fn.logs

    results = Counter(json.loads(m["Body"])["messageId"] for m in drain_queue(sqs, queues.results_url))
    assert drain_queue(sqs, queues.dlq_url) == []
    assert results == Counter(ids)  # every record, exactly once
    assert report.whole_batch_failures == 0  # no invocation ran past its timeout
    assert any(o.kept for o in report.outcomes), "no batch was cut short: the test did not exercise the deadline"
    assert "records not started" in logs
