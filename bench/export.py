"""Export the source model to ONNX once (torch.onnx.export, opset 17, dynamic batch and sequence axes) and cache it.

The cache file is named for the model's config + weights hash and the torch/transformers versions, so a new model
or a new exporter re-exports. The export runs in its own process (`python -m bench.export MODEL_DIR OUT`) and proves
its output: ONNX Runtime must reproduce the torch hidden states on a padded batch of a shape it was not traced with.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure import BenchError, child_env, run_child

OPSET = 17
MAX_ABS_DIFF = 1e-4  # fp32 torch vs fp32 ORT on the last hidden state; a wrong trace is off by ~1


def cache_path(model_dir: Path, cache_dir: Path) -> Path:
    """Where the export of `model_dir` lives: <cache_dir>/<name>-opset17-<hash>.onnx."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        f = model_dir / name
        if f.exists():
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    for dist in ("torch", "transformers"):
        digest.update(f"{dist}={metadata.version(dist)}".encode())
    return cache_dir / f"{model_dir.name}-opset{OPSET}-{digest.hexdigest()[:16]}.onnx"


def ensure_onnx(model_dir: Path, cache_dir: Path, *, workdir: Path) -> dict[str, Any]:
    """The cached ONNX export of `model_dir`, exporting it in a subprocess first if missing.

    Returns:
        {"path", "cached": bool, "export_s", "bytes"}.

    Raises:
        BenchError: the export failed or did not reproduce the torch outputs.
    """
    path = cache_path(model_dir, cache_dir)
    if path.exists():
        return {"path": str(path), "cached": True, "export_s": 0.0, "bytes": path.stat().st_size}
    cache_dir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run_child(
        [sys.executable, "-m", "bench.export", str(model_dir), str(path)],
        what="ONNX export",
        env=child_env(),
        stderr_path=workdir / "onnx-export.stderr.txt",
    )
    return {
        "path": str(path),
        "cached": False,
        "export_s": round(time.perf_counter() - t0, 2),
        "bytes": path.stat().st_size,
    }


def export(model_dir: Path, out: Path) -> dict[str, Any]:
    """Export AutoModel(model_dir)'s last_hidden_state to `out` and check it with ONNX Runtime.

    Raises:
        BenchError: ORT's hidden states differ from torch's by more than MAX_ABS_DIFF.
    """
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers

    model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()

    class LastHidden(torch.nn.Module):
        # keyword call: BertModel.forward's positional order is not (ids, mask, types) in transformers 5
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    trace_ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 7592, 2088, 102, 0, 0, 0]])  # (2, 7)
    check_ids = torch.randint(1000, 20000, (3, 19))  # (3, 19): another batch and length than the trace
    check_mask = torch.ones_like(check_ids)
    check_mask[2, 11:] = 0
    with torch.inference_mode():  # reference first: tracing may leave the module patched
        ref = model(
            input_ids=check_ids, attention_mask=check_mask, token_type_ids=torch.zeros_like(check_ids)
        ).last_hidden_state.numpy()

    tmp = out.with_suffix(".part")
    with torch.no_grad():
        torch.onnx.export(
            LastHidden(model),
            (trace_ids, (trace_ids != 0).long(), torch.zeros_like(trace_ids)),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, not installed
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": check_ids.numpy(),
        "attention_mask": check_mask.numpy(),
        "token_type_ids": np.zeros_like(check_ids.numpy()),
    }
    got = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    valid = check_mask.numpy().astype(bool)  # padded positions carry no meaning
    diff = float(np.abs(got - ref)[valid].max())
    if diff > MAX_ABS_DIFF:
        tmp.unlink(missing_ok=True)
        raise BenchError(
            f"the ONNX export of {model_dir} gives hidden states up to {diff:.3g} away from torch's "
            f"(limit {MAX_ABS_DIFF:g}) on a (3, 19) padded batch; the trace baked in a shape or a branch"
        )
    tmp.replace(out)
    return {"max_abs_diff": diff, "opset": OPSET}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.export MODEL_DIR OUT.onnx", file=sys.stderr)
        return 2
    try:
        info = export(Path(argv[0]), Path(argv[1]))
    except BenchError as e:
        print(f"BenchError: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
