"""The runtime image of an onnxruntime bundle, without Docker: only requirements/runtime-onnx.txt, read-only, offline.

`make setup` creates `.venv-onnx` from requirements/runtime-onnx.txt alone (what the Dockerfile's runtime stage
installs for such a bundle). Here handler.py, runtime/ and the bundle are copied into a directory made read-only
(chmod a-w, compiled first, as the image does), and the official runtime emulator runs `python -m awslambdaric
handler.handler` from that venv: every event in events/ gets its documented answer, the route events theirs, and
neither torch nor transformers can even be imported there.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.expectations import mismatch
from devtools.rie import RieFunction
from support import EVENTS, EXPECTED, ROOT, load_event

ONNX_PYTHON = ROOT / ".venv-onnx" / "bin" / "python"
SNAPSHOT: dict[str, Any] = {}  # the task root's files before the function first ran


def site_packages_mb(python: Path) -> float:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )
    root = Path(out.stdout.strip())
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


@pytest.fixture(scope="module")
def task_root(minilm_ort_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """/var/task as the image lays it out, read-only."""
    assert ONNX_PYTHON.exists(), "no .venv-onnx: `make setup` creates it from requirements/runtime-onnx.txt"
    root = tmp_path_factory.mktemp("image") / "task"
    root.mkdir()
    shutil.copy2(ROOT / "handler.py", root / "handler.py")
    shutil.copytree(ROOT / "runtime", root / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(minilm_ort_bundle, root / "model.bundle")
    compileall.compile_dir(root, quiet=1)  # the image compiles at build time: nothing can write .pyc at run time
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    SNAPSHOT["before"] = files_of(root)
    yield root
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)  # so pytest can clean up


@pytest.fixture(scope="module")
def function(task_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("image-tmp")
    env = {"MODEL_BUNDLE": str(task_root / "model.bundle"), "HOME": str(tmp), "TMPDIR": str(tmp),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    with RieFunction("handler.handler", env=env, cwd=task_root, python=str(ONNX_PYTHON), timeout_s=120) as fn:
        yield fn


def assert_not_importable(python: Path, modules: tuple[str, ...]) -> None:
    for module in modules:
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True,
                               cwd="/", env={"PATH": os.environ.get("PATH", "")})
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module


def test_torch_and_transformers_are_not_installed_in_the_onnx_runtime() -> None:
    assert_not_importable(ONNX_PYTHON, ("torch", "transformers", "sentence_transformers", "onnx", "bundle_builder"))


def test_the_onnx_runtime_install_stays_small() -> None:
    size = site_packages_mb(ONNX_PYTHON)
    print(f"requirements/runtime-onnx.txt installs {size:.0f} MB")  # the torch runtime installs about 1.3 GB
    assert size < 300


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_event_gets_its_documented_answer_from_the_torch_free_image(function, name: str) -> None:
    result = function.invoke(load_event(name))
    assert mismatch(name, result) is None, (result.body, function.logs[-3000:])
    if name == "direct_single.json":
        assert result.body["model"]["engine"] == "onnxruntime"


@pytest.mark.parametrize("name", ["function_url_embed.json", "function_url_openai_embeddings.json"])
def test_route_events_are_answered_by_the_torch_free_image(function, name: str) -> None:
    result = function.invoke(load_event(f"routes/{name}"))
    assert result.ok and result.body["statusCode"] == 200, result.body
    assert json.loads(result.body["body"])


def test_nothing_was_written_into_the_task_root(task_root: Path, function) -> None:
    assert function.invoke({"inputs": "one more"}).ok  # after every event above (tests run in file order)
    assert files_of(task_root) == SNAPSHOT["before"]  # root ignores permission bits: compare what is there
    assert sorted(p.name for p in task_root.iterdir()) == ["__pycache__", "handler.py", "model.bundle", "runtime"]


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}
