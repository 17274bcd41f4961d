"""Every setting is checked once, at init: a value the function cannot use stops it with an error that names the
variable, the value and what is allowed, instead of a raw exception, a silent default, or a 500 on every request."""

from __future__ import annotations

import pytest

from support import FakeContext, new_function
from runtime.errors import BundleError
from runtime.settings import Settings, SettingsError, usable_cpus

BAD = [
    ("LOG_LEVEL", "LOUD", "DEBUG or INFO or WARNING or ERROR or CRITICAL"),
    ("DEVICE", "meta", "auto, cpu, cuda or cuda:N"),
    ("DEVICE", "cuda:x", "auto, cpu, cuda or cuda:N"),
    ("NUM_THREADS", "1000", f"a whole number from 0 to {usable_cpus()}"),
    ("NUM_THREADS", "-1", "a whole number from 0 to"),
    ("MAX_BODY_BYTES", "0", "a whole number from 1 to 6291456"),
    ("MAX_BODY_BYTES", "7000000", "a whole number from 1 to 6291456"),
    ("MAX_BATCH_ITEMS", "0", "a whole number from 1 to"),
    ("MAX_INPUT_CHARS", "0", "a whole number from 1 to"),
    ("MAX_NEW_TOKENS", "0", "a whole number from 1 to"),
    ("MAX_GENERATION_TOKENS", "0", "a whole number from 1 to"),
    ("MAX_INPUT_TOKENS", "lots", "a whole number from 0 to"),
    ("DEADLINE_MARGIN_MS", "2.5", "a whole number from 0 to 900000"),
    ("VERIFY_BUNDLE_HASH", "maybe", "true or false"),
    ("CANARY", "on", "true or false"),
    ("ENGINE", "tensorrt", "auto or torch or onnxruntime"),
    ("CUDA_DTYPE", "float8", "float16 or bfloat16 or float32"),
    ("TORCH_IMPLEMENTATION", "native", "auto or transformers"),
    ("SQS_ERROR_RESULTS", "drop", "fail or deliver"),
    ("MODEL_BUNDLE_SHA256", "abc", "64 hex digits"),
    ("METRICS_NAMESPACE", "has space", "a CloudWatch namespace"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(name: str, value: str, allowed: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"MODEL_BUNDLE": "m.bundle", name: value})
    assert str(info.value).startswith(f"environment variable {name}={value!r} is not allowed: use ")
    assert allowed in str(info.value)


def test_defaults_and_good_values_are_accepted() -> None:
    assert Settings.from_env({}) == Settings(model_bundle="/var/task/model.bundle")
    s = Settings.from_env({"MODEL_BUNDLE": "m", "LOG_LEVEL": "debug", "NUM_THREADS": str(usable_cpus()),
                           "DEVICE": "cuda:1", "MAX_INPUT_TOKENS": "0", "DEADLINE_MARGIN_MS": "0"})
    assert (s.log_level, s.num_threads, s.device, s.max_input_tokens) == ("DEBUG", usable_cpus(), "cuda:1", 0)


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_device_cuda_without_a_gpu_stops_init_with_the_reason(tiny_bundle, device: str) -> None:
    with pytest.raises(BundleError, match=rf"DEVICE='{device}' but torch sees 0 CUDA device\(s\).*set DEVICE=auto"):
        new_function(tiny_bundle("bert"), DEVICE=device)
    assert "outputs" in new_function(tiny_bundle("bert"), DEVICE="auto").handle({"inputs": "x"}, FakeContext())
