"""template.yaml: translated offline the way `sam validate` does, linted, then checked for its wiring."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import intrinsics_multi_constructor

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
REGION = "us-east-1"
# What `sam validate` puts in place of the image `sam build` will push (SamTemplateValidator._replace_local_image).
PLACEHOLDER_IMAGE = "111111111111.dkr.ecr.region.amazonaws.com/repository"
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SQS_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
DEFAULT_SQS_RETENTION = 345_600  # 4 days, what SQS uses when MessageRetentionPeriod is unset


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads !Ref, !GetAtt, ... as their long forms, without touching yaml.SafeLoader."""


_CfnLoader.add_multi_constructor("!", intrinsics_multi_constructor)


class OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which lists every AWS policy through IAM."""

    def load(self) -> dict[str, str]:
        return {"AWSLambdaBasicExecutionRole": BASIC_EXECUTION, "AWSLambdaSQSQueueExecutionRole": SQS_EXECUTION}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)


@pytest.fixture(scope="module")
def cfn(sam) -> dict[str, Any]:
    fragment = copy.deepcopy(sam)
    for resource in fragment["Resources"].values():
        props = resource.get("Properties", {})
        if (
            resource["Type"] == "AWS::Serverless::Function"
            and props.get("PackageType") == "Image"
            and "Dockerfile" in resource.get("Metadata", {})
        ):
            props.setdefault("ImageUri", PLACEHOLDER_IMAGE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # the translator reads the region from a boto3 session
        return transform(fragment, {}, OfflinePolicyLoader())


def resources_of_type(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in cfn["Resources"].items() if res["Type"] == type_}


def only(cfn: dict[str, Any], type_: str) -> dict[str, Any]:
    found = resources_of_type(cfn, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def referenced_ids(node: Any) -> set[str]:
    """Logical ids that an intrinsic expression points at (Ref, Fn::GetAtt, Fn::Sub variables)."""
    if isinstance(node, list):
        return set().union(*(referenced_ids(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    ids: set[str] = set()
    for key, value in node.items():
        if key == "Ref":
            ids.add(value)
        elif key == "Fn::GetAtt":
            ids.add(value[0] if isinstance(value, list) else value.split(".")[0])
        elif key == "Fn::Sub" and isinstance(value, str):
            ids |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", value)}
        else:
            ids |= referenced_ids(value)
    return ids


def statement_actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


# --- validity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["translated", "source"])
def test_cfn_lint_finds_nothing(which, cfn):
    text = json.dumps(cfn) if which == "translated" else TEMPLATE.read_text(encoding="utf-8")
    matches = lint(text, config=ManualArgs(regions=[REGION]))
    assert [f"{m.rule.id} {m.linenumber}: {m.message}" for m in matches] == []


def test_translation_yields_the_expected_resources(cfn):
    assert sorted(res["Type"] for res in cfn["Resources"].values()) == sorted([
        "AWS::Lambda::Function", "AWS::Lambda::Url", "AWS::IAM::Role", "AWS::Lambda::EventSourceMapping",
        "AWS::SQS::Queue", "AWS::SQS::Queue", "AWS::SQS::Queue", "AWS::S3::Bucket",
    ])


# --- function -------------------------------------------------------------------------------------
def test_function_is_an_image_built_from_the_dockerfile(sam, cfn):
    function = sam["Resources"]["ModelFunction"]
    assert function["Metadata"]["Dockerfile"] == "Dockerfile"
    assert function["Metadata"]["DockerContext"] == "."
    assert function["Metadata"]["DockerTag"]
    assert "ImageUri" not in function["Properties"]  # `sam build` fills it in
    props = only(cfn, "AWS::Lambda::Function")
    assert props["PackageType"] == "Image"
    assert props["Architectures"] == ["x86_64"]


@pytest.mark.parametrize(("prop", "parameter", "default"), [("MemorySize", "MemorySize", 3008), ("Timeout", "Timeout", 30)])
def test_size_and_timeout_are_parameters(cfn, prop, parameter, default):
    assert only(cfn, "AWS::Lambda::Function")[prop] == {"Ref": parameter}
    assert cfn["Parameters"][parameter]["Default"] == default


def test_environment(cfn):
    variables = only(cfn, "AWS::Lambda::Function")["Environment"]["Variables"]
    assert variables == {
        "MODEL_BUNDLE": "/var/task/model.bundle",
        "RESULTS_QUEUE_URL": {"Ref": "ResultsQueue"},
        "RESULTS_BUCKET": {"Ref": "ResultsBucket"},
        "LOG_LEVEL": {"Ref": "LogLevel"},
        "MODEL_BUNDLE_SHA256": {"Ref": "ModelBundleSha256"},
    }


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("", True),
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 4, True),
        ("0" * 63, False),
        ("g" * 64, False),
        ("sha256:" + "0" * 64, False),
    ],
    ids=["empty", "lower", "upper", "63", "not-hex", "prefixed"],
)
def test_bundle_pin_is_a_parameter_unpinned_by_default(cfn, value, allowed):
    """What CloudFormation lets through is what runtime/settings.py accepts (a SHA-256, any case, or nothing)."""
    import re

    from runtime.settings import Settings, SettingsError

    parameter = cfn["Parameters"]["ModelBundleSha256"]
    assert parameter["Type"] == "String" and parameter["Default"] == ""
    assert bool(re.fullmatch(parameter["AllowedPattern"].strip("^$"), value)) is allowed
    try:
        Settings.from_env({"MODEL_BUNDLE": "m.bundle", "MODEL_BUNDLE_SHA256": value})
    except SettingsError:
        assert not allowed
    else:
        assert allowed


def test_function_url_requires_iam(cfn):
    url = only(cfn, "AWS::Lambda::Url")
    assert url["AuthType"] == "AWS_IAM"
    assert url["TargetFunctionArn"] == {"Ref": "ModelFunction"}
    # An AuthType NONE URL would come with a public lambda:InvokeFunctionUrl permission.
    assert resources_of_type(cfn, "AWS::Lambda::Permission") == {}


# --- queues ---------------------------------------------------------------------------------------
def test_sqs_event_reports_partial_batch_failures(cfn):
    mapping = only(cfn, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["InputQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "ModelFunction"}
    assert mapping["BatchSize"] == 10
    assert 0 < mapping["MaximumBatchingWindowInSeconds"] <= 5
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_visibility_timeout_is_six_function_timeouts_for_every_allowed_timeout(cfn):
    """CloudFormation cannot multiply, so the template maps each allowed Timeout to a visibility."""
    assert only(cfn, "AWS::Lambda::Function")["Timeout"] == {"Ref": "Timeout"}
    visibility = cfn["Resources"]["InputQueue"]["Properties"]["VisibilityTimeout"]
    map_name, key, attribute = visibility["Fn::FindInMap"]
    assert key == {"Ref": "Timeout"}
    allowed = cfn["Parameters"]["Timeout"]["AllowedValues"]
    assert cfn["Parameters"]["Timeout"]["Default"] in allowed
    for timeout in allowed:
        assert cfn["Mappings"][map_name][str(timeout)][attribute] >= 6 * timeout, timeout


def test_poison_messages_go_to_a_long_lived_dlq(cfn):
    queue = cfn["Resources"]["InputQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    dlq_retention = cfn["Resources"]["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    assert dlq_retention == 14 * 24 * 3600
    # Messages keep their enqueue time in the DLQ, so it must outlive the input queue.
    assert dlq_retention > queue.get("MessageRetentionPeriod", DEFAULT_SQS_RETENTION)


def test_write_permissions_are_scoped_to_the_results_queue_and_bucket(cfn):
    role = only(cfn, "AWS::IAM::Role")
    # Neither managed policy grants sqs:SendMessage (Basic: logs; SQS execution: receive/delete/attributes).
    assert sorted(role["ManagedPolicyArns"]) == sorted([BASIC_EXECUTION, SQS_EXECUTION])
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    sqs_statements = [s for s in statements if any(a.lower().startswith("sqs:") for a in statement_actions(s))]
    assert sqs_statements, "no inline SQS statement: the function could not write results"
    sqs_actions = set()
    for statement in sqs_statements:
        assert statement["Effect"] == "Allow"
        sqs_actions |= {a.lower() for a in statement_actions(statement)}
        assert statement["Resource"] != "*"
        assert referenced_ids(statement["Resource"]) == {"ResultsQueue"}, statement["Resource"]
    # sends results; reads the queue's MaximumMessageSize and FifoQueue once at init
    assert sqs_actions == {"sqs:sendmessage*", "sqs:getqueueattributes"}
    s3_statements = [s for s in statements if any(a.lower().startswith("s3:") for a in statement_actions(s))]
    assert {a for s in s3_statements for a in statement_actions(s)} == {"s3:PutObject", "s3:ListBucket"}
    for statement in s3_statements:
        assert referenced_ids(statement["Resource"]) == {"ResultsBucket"}, statement["Resource"]
    put = next(s for s in s3_statements if "s3:PutObject" in statement_actions(s))
    assert "/hf-lambda-results/*" in json.dumps(put["Resource"])  # only the claim-check prefix


def test_results_bucket_is_private_and_expires_objects(cfn):
    bucket = cfn["Resources"]["ResultsBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert [r["ExpirationInDays"] for r in bucket["LifecycleConfiguration"]["Rules"]] == [14]


# --- outputs --------------------------------------------------------------------------------------
def test_outputs(cfn):
    values = {name: output["Value"] for name, output in cfn["Outputs"].items()}
    assert values == {
        "FunctionArn": {"Fn::GetAtt": ["ModelFunction", "Arn"]},
        "FunctionUrl": {"Fn::GetAtt": ["ModelFunctionUrl", "FunctionUrl"]},
        "InputQueueUrl": {"Ref": "InputQueue"},
        "ResultsQueueUrl": {"Ref": "ResultsQueue"},
        "ResultsBucketName": {"Ref": "ResultsBucket"},
        "DeadLetterQueueUrl": {"Ref": "DeadLetterQueue"},
    }
    assert resources_of_type(cfn, "AWS::Lambda::Url") == {"ModelFunctionUrl": cfn["Resources"]["ModelFunctionUrl"]}
