"""Every knob of the function, read from the environment once at init into one frozen dataclass.

This is the only module that reads environment variables; `set_library_environment` is the only place that writes
them (for libraries that can be configured no other way).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from runtime.engines import EngineOptions
from runtime.errors import BundleError
from runtime.request import Limits

TORCH_IMPLEMENTATIONS = ("auto", "transformers")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LAMBDA_PAYLOAD_BYTES = 6_291_456  # a synchronous invoke's request body cannot be larger

# Integer variables: (lowest, highest) allowed. NUM_THREADS is capped at run time by the CPUs (see _parse).
_INT_RANGES = {
    "DEADLINE_MARGIN_MS": (0, 900_000),
    "NUM_THREADS": (0, 1024),
    "MAX_BODY_BYTES": (1, LAMBDA_PAYLOAD_BYTES),
    "MAX_BATCH_ITEMS": (1, 4096),
    "MAX_INPUT_CHARS": (1, LAMBDA_PAYLOAD_BYTES),
    "MAX_NEW_TOKENS": (1, 1_000_000),
    "MAX_INPUT_TOKENS": (0, 10_000_000),
    "MAX_GENERATION_TOKENS": (1, 1_000_000_000),
    "MAX_CANDIDATE_LABELS": (1, 1024),
    "MAX_MASK_TOKENS": (1, 512),
}
# String variables with a fixed set of values (matched exactly, LOG_LEVEL in any case).
_CHOICES = {
    "SQS_ERROR_RESULTS": ("fail", "deliver"),
    "ENGINE": ("auto", "torch", "onnxruntime"),
    "CUDA_DTYPE": ("float16", "bfloat16", "float32"),
    "TORCH_IMPLEMENTATION": TORCH_IMPLEMENTATIONS,
    "LOG_LEVEL": LOG_LEVELS,
}
_PATTERNS = {
    "DEVICE": (r"auto|cpu|cuda|cuda:\d+", "auto, cpu, cuda or cuda:N"),
    "MODEL_BUNDLE_SHA256": (
        r"[0-9a-fA-F]{64}",
        "the 64 hex digits that `bundle_builder build` prints, or empty: not pinned",
    ),
    "METRICS_NAMESPACE": (
        r"[0-9A-Za-z.\-_/#:]{1,255}",
        "1-255 letters, digits or . - _ / # : (a CloudWatch namespace)",
    ),
}


class SettingsError(BundleError):
    """An environment variable has a value the function cannot use (fatal at init)."""


def _default_bundle(env: dict[str, str]) -> str:
    return str(Path(env.get("LAMBDA_TASK_ROOT") or "/var/task") / "model.bundle")


@dataclass(frozen=True)
class Settings:
    model_bundle: str  # MODEL_BUNDLE: the bundle file; default $LAMBDA_TASK_ROOT/model.bundle
    results_queue_url: str | None = None  # RESULTS_QUEUE_URL: SQS results go here; unset -> to the log
    results_bucket: str | None = None  # RESULTS_BUCKET: results too large for the queue (or a log line) go here
    sqs_error_results: str = (
        "fail"  # SQS_ERROR_RESULTS: a record that can never succeed (4xx): fail (retry, DLQ) | deliver
    )
    # DEADLINE_MARGIN_MS: SQS chunks start, and decoding steps run, only with this much time to spare
    deadline_margin_ms: int = 2000
    engine: str = "auto"  # ENGINE: auto (the bundle's own) | torch | onnxruntime
    device: str = "auto"  # DEVICE: auto (cuda when present) | cpu | cuda | cuda:N
    cuda_dtype: str = "float16"  # CUDA_DTYPE: float16 | bfloat16 | float32 compute on a GPU (CPU is always fp32)
    num_threads: int = 0  # NUM_THREADS: torch intra-op threads; 0 -> the CPUs this process may use
    verify_bundle_hash: bool = True  # VERIFY_BUNDLE_HASH: recompute the SHA-256 at init (~0.1 s / 100 MB)
    model_bundle_sha256: str = ""  # MODEL_BUNDLE_SHA256: the bundle's SHA-256 must be this (hex); "" -> not pinned
    canary: bool = True  # CANARY: run a golden example at init and refuse to start if it drifted
    max_body_bytes: int = 1_000_000  # MAX_BODY_BYTES: HTTP body limit -> 413 (Lambda's own cap is 6 MB)
    max_batch_items: int = 32  # MAX_BATCH_ITEMS: inputs per request -> 413; also the forward-pass batch size
    max_input_chars: int = 20_000  # MAX_INPUT_CHARS: characters per input -> 413
    max_new_tokens: int = 256  # MAX_NEW_TOKENS: upper bound of parameters.max_new_tokens -> 422
    max_input_tokens: int = 0  # MAX_INPUT_TOKENS: prompt tokens for generation -> 413; 0 -> the bundle's max length
    # MAX_GENERATION_TOKENS: one budget on a generate() call -> 413: inputs x beams x return sequences x (tokens of the
    # longest prompt + max_new_tokens). 16384 = MAX_BATCH_ITEMS (32) greedy prompts of 256 tokens with MAX_NEW_TOKENS
    # (256), or one prompt at an 8k window's edge; 32 inputs x 8 beams x 256 new tokens (minutes on a CPU) is over.
    max_generation_tokens: int = 16_384
    # MAX_CANDIDATE_LABELS: zero-shot-classification's candidate_labels per request -> 413. Each label is one more
    # forward pass over every input; 10 is what the Hugging Face Inference API allowed ("for more, run several requests")
    max_candidate_labels: int = 10
    # MAX_MASK_TOKENS: mask tokens in one fill-mask input -> 422; each mask answers top_k decoded sequences
    max_mask_tokens: int = 8
    log_level: str = "INFO"  # LOG_LEVEL
    torch_implementation: str = "auto"  # TORCH_IMPLEMENTATION: auto (native encoder when it serves) | transformers
    metrics_namespace: str = "HfLambda"  # METRICS_NAMESPACE: CloudWatch namespace of the EMF metrics
    cuda_visible_devices: str = ""  # CUDA_VISIBLE_DEVICES (as the container has it): DEVICE=auto looks for a GPU
    aws_lambda_function_name: str = "local"  # AWS_LAMBDA_FUNCTION_NAME (set by Lambda): the metrics' dimension

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Build settings from `env` (default os.environ). Every variable is checked here, once: a value the function
        cannot use raises SettingsError naming the variable, the value and what is allowed."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {"model_bundle": env.get("MODEL_BUNDLE") or _default_bundle(env)}
        for f in fields(cls):
            name = f.name.upper()
            if f.name == "model_bundle" or name not in env or env[name] == "":
                continue
            values[f.name] = _parse(name, env[name], getattr(cls, f.name))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def threads(self) -> int:
        """Intra-op threads: NUM_THREADS, or the CPUs this process may really use."""
        return self.num_threads or usable_cpus()

    @property
    def limits(self) -> Limits:
        return Limits(
            max_body_bytes=self.max_body_bytes, max_items=self.max_batch_items, max_chars=self.max_input_chars
        )

    def engine_options(self) -> EngineOptions:
        return EngineOptions(
            device=self.device,
            cuda_dtype=self.cuda_dtype,
            threads=self.threads,
            torch_implementation=self.torch_implementation,
            cuda_visible=bool(self.cuda_visible_devices) or os.path.exists("/dev/nvidia0"),
        )


def set_library_environment() -> None:
    """Offline and quiet, before any Hugging Face library is imported.

    huggingface_hub, transformers and tokenizers read these variables from the environment at import or call time and
    offer no other switch; HF_HOME points any cache they might open at /tmp, the only writable path on Lambda.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "huggingface"))


def _parse(name: str, raw: str, default: object) -> object:
    """One variable's value, typed as its default is; SettingsError (variable, value, what is allowed) otherwise."""

    def refuse(allowed: str) -> SettingsError:
        return SettingsError(f"environment variable {name}={raw!r} is not allowed: use {allowed}")

    if isinstance(default, bool):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise refuse("true or false (1/0, yes/no)")
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        low, high = _INT_RANGES.get(name, (0, 2**31))
        if name == "NUM_THREADS":
            high = usable_cpus()  # more threads than CPUs only adds contention
        try:
            number = int(raw)
        except ValueError:
            raise refuse(f"a whole number from {low} to {high}") from None
        if not low <= number <= high:
            extra = f" (this process may use {high} CPUs; 0 uses them all)" if name == "NUM_THREADS" else ""
            raise refuse(f"a whole number from {low} to {high}{extra}")
        return number
    if name in _CHOICES:
        allowed = _CHOICES[name]
        value = raw.upper() if name == "LOG_LEVEL" else raw
        if value not in allowed:
            raise refuse(" or ".join(allowed))
        return value
    if name in _PATTERNS:
        pattern, allowed_text = _PATTERNS[name]
        if not re.fullmatch(pattern, raw):
            raise refuse(allowed_text)
    return raw


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def _cgroup_quota() -> int | None:
    import math

    try:  # cgroup v2: "max 100000" or "200000 100000"
        q, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if q == "max" else max(1, math.ceil(int(q) / int(period)))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        return None
