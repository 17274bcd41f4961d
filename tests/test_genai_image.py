"""The runtime image of an onnxruntime-genai bundle, without Docker: only requirements/runtime-genai.txt, read-only,
offline.

`make setup` creates `.venv-genai` from requirements/runtime-genai.txt alone (what the Dockerfile's runtime stage
installs for such a bundle: `bundle_builder requirements` names the file). handler.py, runtime/ and the tiny llama's
onnxruntime-genai bundle are copied into a directory made read-only, and the official runtime emulator runs the
handler from that venv: a direct invoke, an HTTP API v2 request and an OpenAI completion are answered as the
builder's own environment answers them, and neither torch nor transformers can be imported there.
"""

from __future__ import annotations

import base64
import compileall
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from bundle_builder.summary import runtime_requirements
from devtools.rie import RieFunction
from support import ROOT, load_event
from test_generation import predictor_for
from test_onnx_image import assert_not_importable, files_of, site_packages_mb

GENAI_PYTHON = ROOT / ".venv-genai" / "bin" / "python"
PROMPT = "once upon a time"
SNAPSHOT: dict[str, Any] = {}


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Path:
    path: Path = tiny_bundle("llama", "text-generation", engine="onnxruntime-genai")
    return path


@pytest.fixture(scope="module")
def task_root(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    assert GENAI_PYTHON.exists(), "no .venv-genai: `make setup` creates it from requirements/runtime-genai.txt"
    root = tmp_path_factory.mktemp("genai-image") / "task"
    root.mkdir()
    shutil.copy2(ROOT / "handler.py", root / "handler.py")
    shutil.copytree(ROOT / "runtime", root / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(bundle, root / "model.bundle")
    compileall.compile_dir(root, quiet=1)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    SNAPSHOT["before"] = files_of(root)
    yield root
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def function(task_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("genai-image-tmp")
    env = {"MODEL_BUNDLE": str(task_root / "model.bundle"), "HOME": str(tmp), "TMPDIR": str(tmp),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    with RieFunction("handler.handler", env=env, cwd=task_root, python=str(GENAI_PYTHON), timeout_s=120) as fn:
        yield fn


def http_event(path: str, body: dict[str, Any]) -> dict[str, Any]:
    event = load_event("http_api_v2.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event.update(body=base64.b64encode(json.dumps(body).encode()).decode(), isBase64Encoded=True)
    return event


def test_the_builder_names_the_genai_requirements_for_the_image(bundle: Path) -> None:
    assert runtime_requirements(bundle) == "requirements/runtime-genai.txt"


def test_torch_and_transformers_are_not_installed_in_the_genai_runtime() -> None:
    assert_not_importable(GENAI_PYTHON, ("torch", "transformers", "onnx", "bundle_builder"))


def test_the_genai_runtime_install_stays_small() -> None:
    size = site_packages_mb(GENAI_PYTHON)
    print(f"requirements/runtime-genai.txt installs {size:.0f} MB")  # the torch runtime installs about 1.3 GB
    assert size < 350


def test_a_direct_invoke_answers_as_the_build_environment(function, bundle: Path) -> None:
    params = {"max_new_tokens": 12, "details": True}
    result = function.invoke({"inputs": PROMPT, "parameters": params})
    assert result.ok, (result.body, function.logs[-3000:])
    want = predictor_for(bundle).predict([PROMPT], params).outputs[0]
    got = result.body["outputs"]
    assert got["generated_text"] == want["generated_text"]
    assert [t["id"] for t in got["details"]["tokens"]] == [t["id"] for t in want["details"]["tokens"]]
    assert result.body["model"]["engine"] == "onnxruntime-genai"


def test_http_and_openai_requests_are_answered(function, bundle: Path) -> None:
    want = predictor_for(bundle).predict([PROMPT], {"max_new_tokens": 8}).outputs[0]["generated_text"]
    result = function.invoke(http_event("/predict", {"inputs": PROMPT, "parameters": {"max_new_tokens": 8}}))
    assert result.ok and result.body["statusCode"] == 200, result.body
    assert json.loads(result.body["body"])["outputs"]["generated_text"] == want
    result = function.invoke(http_event("/v1/completions", {"model": "m", "prompt": PROMPT, "max_tokens": 8}))
    assert result.ok and result.body["statusCode"] == 200, result.body
    completion = json.loads(result.body["body"])
    assert completion["choices"][0]["text"] == want and completion["usage"]["completion_tokens"] == 8


def test_nothing_was_written_into_the_task_root(task_root: Path, function) -> None:
    assert function.invoke({"inputs": "one more"}).ok
    assert files_of(task_root) == SNAPSHOT["before"]
