"""A deployment budget from the build: what the bundle needs on Lambda, measured before the first deploy.

In a fresh process (as a container starts), with one thread (what a Lambda of up to 1,769 MB gets), the built
bundle's Function is loaded and asked a typical request (a golden input) and a maximal one (MAX_BATCH_ITEMS inputs at
the model's max length, shaped by the task's maximal_request where it has one; for generation, the longest prompt
a request may send with the default new tokens). Measured: init time, peak RSS after init and after the maximal request, p50 of
each request. From those:

    MemorySize       the smallest usual Lambda size >= peak RSS x 1.25 + 64 MB (runtime and headroom)
    Timeout          an allowed template value >= 2x a batch of BatchSize maximal requests at that size's CPU share
    BatchSize        SQS records per invocation: up to 10, fewer when maximal records would not fit the Timeout
    VisibilityTimeout  6x Timeout, as AWS advises for SQS event sources

CPU scales with memory on Lambda (1,769 MB = one vCPU), so times measured on one core here are scaled by
1769 / MemorySize below that size. Warnings: an init over Lambda's 10 s limit, or a need over 10,240 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bundle_builder.errors import SourceError

MEMORY_SIZES_MB = (512, 1024, 1536, 1769, 2048, 3008, 4096, 6144, 8192, 10240)
TIMEOUTS_S = (10, 15, 30, 60, 120, 300, 600, 900)  # template.yaml's AllowedValues for Timeout
ONE_VCPU_MB = 1769
INIT_LIMIT_MS = 10_000
HEADROOM = 1.25
RUNTIME_MB = 64

_PROBE = r"""
import json, resource, statistics, sys, time
def peak_mb():
    # VmHWM: this process's peak RSS since exec (ru_maxrss would carry the forking build process's peak)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
from runtime.function import Function
from runtime.settings import Settings
settings = Settings.from_env({"MODEL_BUNDLE": sys.argv[1], "NUM_THREADS": "1", "LOG_LEVEL": "WARNING"})
fn = Function.load(settings)
init_ms = (time.perf_counter() - t0) * 1000
rss_init = peak_mb()
manifest = fn.predictor.model.manifest
typical = manifest.golden[0]
long_text = " ".join(["word"] * (manifest.max_length * 2))[: settings.max_input_chars]
maximal_request = getattr(fn.predictor.task, "maximal_request", None)  # a task whose request needs more than text
def stretched(x):
    # the golden input at the limit: a text long, or a mapping's longest text (a QA context, a pair's longer side)
    if isinstance(x, dict):
        longest = max((k for k in x if isinstance(x[k], str)), key=lambda k: len(x[k]))
        return {**x, longest: long_text}
    return long_text
if maximal_request is not None:
    maximal = maximal_request(long_text, settings.max_batch_items)
else:
    maximal = ([stretched(typical.input)] * settings.max_batch_items, dict(typical.parameters))
def p50(inputs, params, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn.predictor.predict(inputs, params)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
typical_ms = p50([typical.input], typical.parameters, 7)
maximal_ms = p50(*maximal, 3)
print("BUDGET " + json.dumps({
    "init_ms": round(init_ms, 1), "rss_init_mb": round(rss_init, 1),
    "rss_peak_mb": round(peak_mb(), 1),
    "typical_p50_ms": round(typical_ms, 2), "maximal_p50_ms": round(maximal_ms, 2),
    "maximal_request": f"{len(maximal[0])} inputs of {manifest.max_length} tokens" if manifest.generation is None
    else f"a {len(fn.predictor.model.tokenizer.encode(maximal[0], truncate=False)['input_ids'][0])}-token prompt + "
    f"{maximal[1]['max_new_tokens']} new tokens",
}))
"""


def measure(bundle: Path, repo_root: Path) -> dict[str, Any]:
    """Run the probe in a fresh interpreter on the built bundle; returns its measurements."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, str(bundle)],
        check=False,  # a failure is reported with the probe's stderr below
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=1800,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("BUDGET ")]
    if run.returncode != 0 or not lines:
        raise SourceError(f"measuring the deployment budget failed: {run.stderr.strip()[-1500:]}")
    measured: dict[str, Any] = json.loads(lines[-1][len("BUDGET ") :])
    return measured


def plan(measured: dict[str, Any]) -> dict[str, Any]:
    """The template values and warnings the measurements imply (see the module docstring)."""
    need = measured["rss_peak_mb"] * HEADROOM + RUNTIME_MB
    warnings = []
    fits = [m for m in MEMORY_SIZES_MB if m >= need]
    memory = fits[0] if fits else MEMORY_SIZES_MB[-1]
    if not fits:
        warnings.append(f"needs about {need:.0f} MB, over Lambda's 10,240 MB: use a smaller model or int8")
    slowdown = max(1.0, ONE_VCPU_MB / memory)  # below one vCPU, a request takes proportionally longer
    init_ms = measured["init_ms"] * slowdown
    if init_ms > INIT_LIMIT_MS:
        warnings.append(
            f"init takes about {init_ms / 1000:.1f} s at {memory} MB, over Lambda's 10 s init limit: a larger "
            "MemorySize, provisioned concurrency, or a smaller bundle"
        )
    maximal_s = measured["maximal_p50_ms"] * slowdown / 1000
    batch = 10
    while batch > 1 and 2 * batch * maximal_s > TIMEOUTS_S[-1]:
        batch -= 1
    timeout = next((t for t in TIMEOUTS_S if t >= 2 * batch * maximal_s), TIMEOUTS_S[-1])
    if 2 * maximal_s > TIMEOUTS_S[-1]:
        warnings.append(f"a maximal request takes about {maximal_s:.0f} s, near Lambda's 900 s limit")
    return {
        "MemorySize": memory,
        "Timeout": timeout,
        "BatchSize": batch,
        "VisibilityTimeout": 6 * timeout,
        "estimated_init_ms": round(init_ms, 1),
        "warnings": warnings,
    }


def budget(bundle: Path, repo_root: Path) -> dict[str, Any]:
    """The manifest's "budget": what was measured on this machine and the template values it implies."""
    measured = measure(bundle, repo_root)
    return {"measured": measured, "template": plan(measured), "measured_on": "this build machine, 1 thread"}


def describe(record: dict[str, Any]) -> list[str]:
    """Readable lines for the build's output and `inspect`."""
    m, t = record["measured"], record["template"]
    lines = [
        f"measured: init {m['init_ms']:.0f} ms, RSS {m['rss_init_mb']:.0f} MB after init and {m['rss_peak_mb']:.0f} "
        f"MB at peak; p50 {m['typical_p50_ms']:.1f} ms typical, {m['maximal_p50_ms']:.0f} ms maximal "
        f"({m['maximal_request']})",
        f"template.yaml: MemorySize {t['MemorySize']}, Timeout {t['Timeout']}, SQS BatchSize {t['BatchSize']}, "
        f"VisibilityTimeout {t['VisibilityTimeout']}",
    ]
    lines += [f"warning: {w}" for w in t["warnings"]]
    return lines
