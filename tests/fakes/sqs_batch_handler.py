"""Behaves like handler.py on an SQS event: a body that is not a JSON object is a failed item; for each
good record one result message (JSON with the source "messageId") goes to env RESULTS_QUEUE_URL.

boto3 finds the moto endpoint in AWS_ENDPOINT_URL_SQS and the dummy credentials in the environment.
"""

from __future__ import annotations

import json
import os

import boto3

_sqs = boto3.client("sqs")  # built once per runtime, like the real handler's clients
_RESULTS_QUEUE_URL = os.environ["RESULTS_QUEUE_URL"]


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            request = json.loads(record["body"])
        except ValueError:
            request = None
        if not isinstance(request, dict):  # not JSON, or JSON but not an object
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        result = {"messageId": record["messageId"], "echo": request,
                  "receiveCount": record["attributes"]["ApproximateReceiveCount"]}
        _sqs.send_message(QueueUrl=_RESULTS_QUEUE_URL, MessageBody=json.dumps(result))
    return {"batchItemFailures": failures}
