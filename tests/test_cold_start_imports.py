"""What `import handler` pulls into sys.modules, in a fresh process (a new container's init)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_builder.build import build_bundle
from support import ROOT

# Runs as a new container would: import the handler (init), answer one direct event, list what got imported.
PROBE = """
import json, sys
import handler
response = handler.handler({"inputs": "great product"}, None)
print(json.dumps({"engine": response["model"]["engine"], "modules": sorted(sys.modules)}))
"""
NEVER_AT_RUN_TIME = ("bundle_builder", "sentence_transformers")


@pytest.fixture(scope="module")
def ort_bundle(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imports") / "ort.bundle"
    build_bundle(tiny_model("bert"), out, engine="onnxruntime")
    return out


def imported(bundle: Path, **env: str) -> tuple[str, set[str]]:
    """(engine, top-level package names) after init and one request, in a fresh interpreter."""
    full = {k: v for k, v in os.environ.items() if k not in ("ENGINE", "DEVICE", "CUDA_VISIBLE_DEVICES")}
    full.update(MODEL_BUNDLE=str(bundle), LOG_LEVEL="WARNING", **env)
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, env=full, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["engine"], {name.split(".")[0] for name in out["modules"]}


def test_onnxruntime_bundle_never_imports_torch_or_transformers(ort_bundle: Path) -> None:
    # CUDA_VISIBLE_DEVICES makes DEVICE=auto look for a GPU, which would ask torch; the ORT path must not.
    engine, modules = imported(ort_bundle, CUDA_VISIBLE_DEVICES="0")
    assert engine == "onnxruntime"
    assert "onnxruntime" in modules
    assert not modules & {"torch", "transformers", "onnx", *NEVER_AT_RUN_TIME}


def test_torch_bundle_never_imports_the_builder_or_its_peers(tiny_bundle) -> None:
    engine, modules = imported(tiny_bundle("bert"))
    assert engine == "torch" and "torch" in modules
    assert not modules & {"onnxruntime", *NEVER_AT_RUN_TIME}

