"""A moto SQS server on 127.0.0.1 and the three queues of the SQS path: input (with a DLQ) and results.

    with moto_server() as endpoint:
        sqs = sqs_client(endpoint)
        queues = create_queues(sqs, prefix="t1", max_receive_count=2)
        env = function_env(endpoint, results_queue_url=queues.results_url)   # for RieFunction(env=...)

moto moves a message to the DLQ during a ReceiveMessage that finds it visible with ApproximateReceiveCount
>= maxReceiveCount, so something has to keep receiving (the event source mapping does) for poison messages
to land there. Credentials are dummies; nothing here can reach AWS.

A ReceiveMessage may return fewer messages than asked for (SQS and moto both do), so a reader that expects n
messages receives until it has them or a deadline passes: receive_until(sqs, url, n), drain_queue(sqs, url).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"
# Dummy credentials: botocore needs some; moto accepts any.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class MotoServerError(RuntimeError):
    """moto_server could not be started."""


@contextmanager
def moto_server(*, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``python -m moto.server`` on 127.0.0.1 and a free port; yield its endpoint URL.

    The server is stopped by PID (its process group) on exit, also when the body raised.

    Raises:
        MotoServerError: the server exited or did not answer within ``startup_timeout_s``.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, **DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": REGION}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, endpoint, startup_timeout_s, log)
            yield endpoint
        finally:
            _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, timeout_s: float, log: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise MotoServerError(
                f"moto.server exited with code {proc.returncode} before answering; "
                f"output:\n{log.read().decode(errors='replace')[-4000:]}"
            )
        try:
            # moto's own API: answers once the app is loaded, whatever services are used.
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise MotoServerError(f"moto.server did not answer at {endpoint} within {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqs_client(endpoint_url: str) -> Any:
    """A boto3 SQS client for the moto server, with dummy credentials passed explicitly (env untouched)."""
    import boto3  # heavy: only for the SQS tools

    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def function_env(endpoint_url: str, *, results_queue_url: str | None = None) -> dict[str, str]:
    """Environment for a function that calls SQS (and S3) through boto3: dummy credentials, region, endpoint.

    The RIE forces the AWS_* credential variables to "" unless they are given, so they must be here.
    """
    env = {
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_SQS": endpoint_url,
        "AWS_ENDPOINT_URL_S3": endpoint_url,  # moto serves S3 on the same port (RESULTS_BUCKET)
    }
    if results_queue_url is not None:
        env["RESULTS_QUEUE_URL"] = results_queue_url
    return env


@dataclass(frozen=True)
class Queues:
    input_url: str
    input_arn: str
    dlq_url: str
    results_url: str


def create_queues(sqs: Any, *, prefix: str, max_receive_count: int = 3, visibility_timeout_s: int = 30) -> Queues:
    """Create ``<prefix>-input`` (redrive to ``<prefix>-dlq`` after ``max_receive_count`` receives) and
    ``<prefix>-results``.

    Args:
        sqs: a client from :func:`sqs_client`.
        prefix: queue name prefix; unique per test so tests sharing a server do not see each other.
        max_receive_count: the RedrivePolicy's maxReceiveCount.
        visibility_timeout_s: the input queue's default VisibilityTimeout.
    """
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    dlq_arn = queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    input_url = sqs.create_queue(
        QueueName=f"{prefix}-input",
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": str(visibility_timeout_s)},
    )["QueueUrl"]
    results_url = sqs.create_queue(QueueName=f"{prefix}-results")["QueueUrl"]
    return Queues(input_url=input_url, input_arn=queue_arn(sqs, input_url), dlq_url=dlq_url, results_url=results_url)


def queue_arn(sqs: Any, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages still in the queue: visible + in flight + delayed."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def receive_until(
    sqs: Any,
    queue_url: str,
    count: int,
    *,
    timeout_s: float = 10.0,
    delete: bool = False,
    visibility_timeout_s: int | None = None,
    idle_sleep_s: float = 0.05,
) -> list[dict[str, Any]]:
    """Receive until ``count`` distinct messages have arrived or ``timeout_s`` has passed; return them, in order.

    A ReceiveMessage may return fewer messages than it asks for, and none at all while messages wait (SQS samples
    its servers; moto returns only those visible at that instant, and the messages of one batch become visible
    again at slightly different instants). So a consumer that needs n messages receives until it has them.
    The caller asserts on what came back: at the deadline this returns what it has, which may be fewer.

    Args:
        sqs: a client from :func:`sqs_client`.
        queue_url: the queue to read.
        count: how many distinct messages (by ``MessageId``) to wait for.
        timeout_s: the deadline; receives use WaitTimeSeconds=0 and sleep ``idle_sleep_s`` after an empty one.
        delete: delete each batch once received (else the messages stay in flight for their visibility timeout).
        visibility_timeout_s: VisibilityTimeout for each receive; None uses the queue's. Without ``delete``, keep
            it longer than ``timeout_s`` so a message is not received twice (a second receive is not counted).
    """
    messages: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        got = _receive(sqs, queue_url, min(10, count - len(messages)), visibility_timeout_s)
        if not got:
            time.sleep(idle_sleep_s)
            continue
        for m in got:
            messages.setdefault(m["MessageId"], m)
        if delete:
            _delete(sqs, queue_url, got)
    return list(messages.values())


def drain_queue(
    sqs: Any, queue_url: str, *, timeout_s: float = 10.0, idle_sleep_s: float = 0.05
) -> list[dict[str, Any]]:
    """Receive and delete until the queue holds no message; return them (``MessageId``, ``Body``, ``Attributes``).

    For reading the results queue and the DLQ in tests. An empty receive alone does not mean the queue is empty
    (see :func:`receive_until`): this stops once an empty receive finds :func:`queue_depth` 0, which, as every
    message received is deleted, means every message has been read.

    Raises:
        TimeoutError: messages are still in the queue after ``timeout_s`` (in flight elsewhere, or arriving).
    """
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        got = _receive(sqs, queue_url, 10, None)
        if got:
            messages.extend(got)
            _delete(sqs, queue_url, got)
            continue
        left = queue_depth(sqs, queue_url)
        if left == 0:
            return messages
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{queue_url} still holds {left} messages after {timeout_s} s of draining ({len(messages)} read)"
            )
        time.sleep(idle_sleep_s)


def _receive(sqs: Any, queue_url: str, max_messages: int, visibility_timeout_s: int | None) -> list[dict[str, Any]]:
    receive: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max_messages,
        "WaitTimeSeconds": 0,
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }
    if visibility_timeout_s is not None:
        receive["VisibilityTimeout"] = visibility_timeout_s
    return sqs.receive_message(**receive).get("Messages", [])


def _delete(sqs: Any, queue_url: str, messages: list[dict[str, Any]]) -> None:
    answer = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
    )
    if answer.get("Failed"):
        raise RuntimeError(f"SQS refused to delete {answer['Failed']!r} from {queue_url}")
