"""On a CUDA machine: half-precision compute, CUDA-event stage timing, and the canary's drift limits.

Skipped where no GPU is visible (CI and the development machine have none); run on a lent GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from runtime.timing import StageTimer
from support import FakeContext, new_function

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("cuda_dtype", ["float16", "bfloat16"])
def test_handler_computes_in_half_precision_on_cuda_and_matches_the_cpu_pipeline(
    monkeypatch, tiny_model, tiny_bundle, cuda_dtype: str
) -> None:
    from transformers import pipeline

    fn = new_function(tiny_bundle("bert"), DEVICE="cuda", CUDA_DTYPE=cuda_dtype)
    assert next(fn.predictor.model.model.parameters()).dtype == getattr(torch, cuda_dtype)
    envelope = fn.handle({"inputs": "great product, terrible delivery"}, FakeContext())
    timing = envelope["timing"]
    assert timing["device"] == "cuda" and timing["dtype"] == cuda_dtype
    stages = timing["request_ms"]
    assert 0.95 <= sum(v for k, v in stages.items() if k != "total") / stages["total"] <= 1.0 + 1e-9
    expected = pipeline("text-classification", model=str(tiny_model("bert")), device="cpu")(
        "great product, terrible delivery", top_k=None
    )
    got = {d["label"]: d["score"] for d in envelope["outputs"]}
    assert max(abs(got[d["label"]] - d["score"]) for d in expected) <= 3e-2


def test_cuda_stage_time_waits_for_the_kernels_to_finish() -> None:
    khz = getattr(torch.cuda.get_device_properties(0), "clock_rate", 0) or 2_000_000
    cycles = int(khz * 1e3 * 0.2)  # ~200 ms of GPU sleep
    torch.cuda._sleep(1000)  # CUDA context up before timing
    torch.cuda.synchronize()
    timer = StageTimer(cuda=True)
    with timer.stage("inference"):
        torch.cuda._sleep(cycles)  # returns at once on the host; the kernel runs ~200 ms
    ms = timer.as_ms()
    assert ms["inference"] >= 100, ms  # a host clock read without a synchronize would say ~0 ms
    assert ms["total"] >= ms["inference"] * 0.9
