"""events/*.json are shaped exactly as AWS sends them.

The expected key lists below were copied from `sam local generate-event` (aws-sam-cli 1.170.0):
`apigateway aws-proxy`, `apigateway http-api-proxy` and `sqs receive-message`. The Function URL
keys follow the payload documented at
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads (format 2.0, with
`cookies` and `queryStringParameters` left out when the request has none, as Lambda does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from typing import Any

import pytest

from support import EVENTS, load_event

# --- key lists from the generator output ----------------------------------------------------------
REST_V1_KEYS = {
    "body", "resource", "path", "httpMethod", "isBase64Encoded", "queryStringParameters",
    "multiValueQueryStringParameters", "pathParameters", "stageVariables", "headers",
    "multiValueHeaders", "requestContext",
}
REST_V1_CONTEXT_KEYS = {
    "accountId", "resourceId", "stage", "requestId", "requestTime", "requestTimeEpoch", "identity",
    "path", "resourcePath", "httpMethod", "apiId", "protocol",
}
REST_V1_IDENTITY_KEYS = {
    "cognitoIdentityPoolId", "accountId", "cognitoIdentityId", "caller", "accessKey", "sourceIp",
    "cognitoAuthenticationType", "cognitoAuthenticationProvider", "userArn", "userAgent", "user",
}
HTTP_V2_KEYS = {
    "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters",
    "requestContext", "body", "pathParameters", "isBase64Encoded", "stageVariables",
}
HTTP_V2_CONTEXT_KEYS = {
    "accountId", "apiId", "authentication", "authorizer", "domainName", "domainPrefix", "http",
    "requestId", "routeKey", "stage", "time", "timeEpoch",
}
HTTP_V2_HTTP_KEYS = {"method", "path", "protocol", "sourceIp", "userAgent"}
SQS_RECORD_KEYS = {
    "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
    "eventSource", "eventSourceARN", "awsRegion",
}
SQS_ATTRIBUTE_KEYS = {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"}

# --- Function URL (AWS docs) ----------------------------------------------------------------------
FUNCTION_URL_KEYS = HTTP_V2_KEYS - {"cookies", "queryStringParameters"}
FUNCTION_URL_IAM_KEYS = {
    "accessKey", "accountId", "callerId", "cognitoIdentity", "principalOrgId", "userArn", "userId",
}
FUNCTION_URL_DOMAIN = re.compile(r"^(?P<url_id>[a-z0-9]+)\.lambda-url\.[a-z]{2}(-[a-z]+)+-\d\.on\.aws$")

# Every file in events/ and the kind of event it is.
EVENT_KINDS = {
    "direct_single.json": "direct",
    "direct_list.json": "direct",
    "bad_direct_missing_inputs.json": "direct",
    "apigw_rest_v1.json": "rest_v1",
    "bad_http_too_many_inputs.json": "rest_v1",
    "http_api_v2.json": "http_v2",
    "bad_http_invalid_json.json": "http_v2",
    "bad_http_bad_parameters.json": "http_v2",
    "bad_http_wrong_method.json": "http_v2",
    "function_url.json": "function_url",
    "sqs_batch.json": "sqs",
}


def names_of(kind: str) -> list[str]:
    return sorted(name for name, k in EVENT_KINDS.items() if k == kind)


def http_body(event: dict[str, Any]) -> str:
    """The request body as the client sent it (API Gateway / Function URL base64 it when flagged)."""
    body = event["body"]
    return base64.b64decode(body, validate=True).decode("utf-8") if event["isBase64Encoded"] else body


def lower_headers(event: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in event["headers"].items()}


# --- every file -----------------------------------------------------------------------------------
def test_every_event_file_has_a_kind():
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EVENT_KINDS)


@pytest.mark.parametrize("name", sorted(EVENT_KINDS))
def test_file_is_pretty_printed_json(name):
    text = (EVENTS / name).read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


# --- shapes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", names_of("direct"))
def test_direct_event_is_a_bare_request(name):
    event = load_event(name)
    assert set(event) <= {"inputs", "parameters"}
    assert not {"requestContext", "Records", "httpMethod", "version"} & set(event)


@pytest.mark.parametrize("name", names_of("rest_v1"))
def test_rest_v1_shape(name):
    event = load_event(name)
    assert set(event) == REST_V1_KEYS
    assert set(event["requestContext"]) == REST_V1_CONTEXT_KEYS
    assert set(event["requestContext"]["identity"]) == REST_V1_IDENTITY_KEYS
    assert event["httpMethod"] == event["requestContext"]["httpMethod"] == "POST"
    assert event["path"] == "/predict"
    assert event["requestContext"]["path"] == f"/{event['requestContext']['stage']}/predict"
    assert event["resource"] == event["requestContext"]["resourcePath"]
    # REST APIs keep header case, and send every header twice (single and multi-value).
    assert set(event["multiValueHeaders"]) == set(event["headers"])
    assert all(event["multiValueHeaders"][k] == [v] for k, v in event["headers"].items())
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize("name", names_of("http_v2"))
def test_http_v2_shape(name):
    event = load_event(name)
    expected = HTTP_V2_KEYS if "body" in event else HTTP_V2_KEYS - {"body"}
    assert set(event) == expected
    assert event["version"] == "2.0"
    ctx = event["requestContext"]
    assert set(ctx) == HTTP_V2_CONTEXT_KEYS
    assert set(ctx["http"]) == HTTP_V2_HTTP_KEYS
    assert event["routeKey"] == ctx["routeKey"]
    assert event["rawPath"] == ctx["http"]["path"] == "/predict"
    assert ctx["domainName"].endswith(".execute-api.us-east-1.amazonaws.com")
    assert ctx["domainName"].split(".")[0] == ctx["domainPrefix"]
    # HTTP APIs lower-case header names.
    if "body" in event:
        assert event["headers"]["content-type"] == "application/json"


def test_function_url_shape():
    event = load_event("function_url.json")
    assert set(event) == FUNCTION_URL_KEYS
    assert event["version"] == "2.0"
    ctx = event["requestContext"]
    assert set(ctx) == HTTP_V2_CONTEXT_KEYS
    assert set(ctx["http"]) == HTTP_V2_HTTP_KEYS
    # AuthType AWS_IAM: the caller identity is in authorizer.iam; `authentication` is always null.
    assert set(ctx["authorizer"]) == {"iam"}
    assert set(ctx["authorizer"]["iam"]) == FUNCTION_URL_IAM_KEYS
    assert ctx["authentication"] is None
    match = FUNCTION_URL_DOMAIN.match(ctx["domainName"])
    assert match is not None, ctx["domainName"]
    assert match["url_id"] == ctx["domainPrefix"] == ctx["apiId"]
    assert lower_headers(event)["host"] == ctx["domainName"]
    assert event["rawPath"] == ctx["http"]["path"] == "/"
    assert ctx["http"]["method"] == "POST"
    assert event["pathParameters"] is None and event["stageVariables"] is None


def test_function_url_is_told_apart_by_domain_name_not_route_key():
    """Both v2 sources send routeKey "$default"; only the Function URL domain ends in .on.aws."""
    url = load_event("function_url.json")["requestContext"]
    assert url["routeKey"] == "$default"
    for name in names_of("http_v2"):
        api = load_event(name)["requestContext"]
        assert api["routeKey"] == "$default"
        assert FUNCTION_URL_DOMAIN.match(api["domainName"]) is None


def test_sqs_batch_shape():
    event = load_event("sqs_batch.json")
    assert set(event) == {"Records"}
    records = event["Records"]
    assert len(records) == 3
    assert len({r["messageId"] for r in records}) == 3
    assert len({r["receiptHandle"] for r in records}) == 3
    for record in records:
        assert set(record) == SQS_RECORD_KEYS
        assert set(record["attributes"]) == SQS_ATTRIBUTE_KEYS
        assert record["eventSource"] == "aws:sqs"
        arn = record["eventSourceARN"].split(":")
        assert arn[:3] == ["arn", "aws", "sqs"] and len(arn) == 6
        assert arn[3] == record["awsRegion"]
        assert "InputQueue" in arn[5]
        # SQS attribute values are strings, even the numbers.
        assert all(isinstance(v, str) for v in record["attributes"].values())
        assert int(record["attributes"]["ApproximateFirstReceiveTimestamp"]) >= int(
            record["attributes"]["SentTimestamp"]
        )


@pytest.mark.parametrize("index", [0, 1, 2])
def test_sqs_md5_of_body_is_real(index):
    record = load_event("sqs_batch.json")["Records"][index]
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode("utf-8")).hexdigest()


# --- bodies ---------------------------------------------------------------------------------------
def test_direct_single_body():
    assert load_event("direct_single.json") == {"inputs": "I love this new phone, the battery lasts all day."}


def test_direct_list_body():
    inputs = load_event("direct_list.json")["inputs"]
    assert len(inputs) == 3 and len(set(inputs)) == 3
    assert all(isinstance(text, str) and 0 < len(text) < 100 for text in inputs)


def test_rest_v1_body_is_one_input():
    request = json.loads(http_body(load_event("apigw_rest_v1.json")))
    assert set(request) == {"inputs"} and isinstance(request["inputs"], str)


def test_http_v2_body_is_base64_of_two_inputs():
    event = load_event("http_api_v2.json")
    assert event["isBase64Encoded"] is True
    assert event["requestContext"]["http"]["method"] == "POST"
    request = json.loads(http_body(event))
    assert isinstance(request["inputs"], list) and len(request["inputs"]) == 2


def test_function_url_body_is_plain_json_for_any_task():
    event = load_event("function_url.json")
    assert event["isBase64Encoded"] is False
    request = json.loads(event["body"])
    assert isinstance(request["inputs"], str)
    assert "parameters" not in request  # the good events must suit every task


def test_sqs_second_record_is_poison():
    bodies = [r["body"] for r in load_event("sqs_batch.json")["Records"]]
    assert "inputs" in json.loads(bodies[0])
    assert "inputs" in json.loads(bodies[2])
    with pytest.raises(json.JSONDecodeError):
        json.loads(bodies[1])


def test_bad_direct_missing_inputs():
    assert load_event("bad_direct_missing_inputs.json") == {"parameters": {}}


def test_bad_http_invalid_json():
    body = http_body(load_event("bad_http_invalid_json.json"))
    assert body == '{"inputs": "unterminated'
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


def test_bad_http_too_many_inputs():
    inputs = json.loads(http_body(load_event("bad_http_too_many_inputs.json")))["inputs"]
    assert len(inputs) == 1000
    assert all(isinstance(text, str) and 0 < len(text) <= 10 for text in inputs)


def test_bad_http_bad_parameters():
    request = json.loads(http_body(load_event("bad_http_bad_parameters.json")))
    assert isinstance(request["inputs"], str)
    assert request["parameters"] == {"top_k": -3}


def test_bad_http_wrong_method():
    event = load_event("bad_http_wrong_method.json")
    assert event["requestContext"]["http"]["method"] == "GET"
    assert "body" not in event
    assert event["isBase64Encoded"] is False


# --- events/tasks/: a direct invoke and an HTTP API v2 event per task beyond the three of events/ ---------------------
TASK_EVENTS = sorted((EVENTS / "tasks").glob("*.json"))


def test_every_added_task_has_a_direct_and_an_http_sample_event() -> None:
    from runtime.tasks import TASKS

    added = sorted(set(TASKS) - {"feature-extraction", "text-classification", "text-generation"})
    expected = sorted(f"{task.replace('-', '_')}_{kind}.json" for task in added for kind in ("direct", "http"))
    assert sorted(p.name for p in TASK_EVENTS) == expected


@pytest.mark.parametrize("path", TASK_EVENTS, ids=lambda p: p.name)
def test_task_sample_events_are_shaped_as_their_trigger_sends_them(path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    if path.name.endswith("_direct.json"):
        assert set(event) <= {"inputs", "parameters"} and "inputs" in event
        return
    template = load_event("http_api_v2.json")
    # everything as in AWS's HTTP API v2 sample but the body (and its base64 flag): only the request differs
    assert {k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")} == {
        k: v for k, v in template.items() if k not in ("body", "isBase64Encoded")
    }
    assert isinstance(event["isBase64Encoded"], bool)
    assert set(json.loads(http_body(event))) <= {"inputs", "parameters"}
