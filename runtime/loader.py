"""Bundle path -> ready engine + tokenizer + parsed manifest, each load phase timed.

The torch engine builds the model from its config with weight initialisation switched off, then assigns the
memory-mapped bundle tensors in place (no random init, no copy when the stored dtype is the compute dtype).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.bundle import Bundle, read_bundle
from runtime.engines import ONNX_FILE, Engine, EngineOptions, build_engine, choose_engine
from runtime.errors import BundlePinError
from runtime.manifest import Manifest, parse_manifest
from runtime.manifest_checks import check_manifest
from runtime.tokenizer import TextTokenizer

__all__ = ["ONNX_FILE", "LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    bundle: Bundle
    manifest: Manifest
    engine: Engine
    tokenizer: TextTokenizer
    device: str
    dtype: str
    phases_ms: dict[str, float] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def model(self) -> Any:
        """The torch module (torch engine), or None."""
        return self.engine.model


def load_model(
    path: str | os.PathLike[str],
    *,
    engine: str = "auto",
    options: EngineOptions | None = None,
    verify_hash: bool = True,
    pinned_sha256: str = "",
) -> LoadedModel:
    """Open a bundle, parse its manifest, and build its engine and tokenizer.

    Args:
        path: the bundle file.
        engine: "auto" (the bundle's own), "torch" or "onnxruntime".
        options: device, dtype, threads and implementation (EngineOptions() when None: DEVICE=auto on a CPU).
        verify_hash: check the content hash (see read_bundle).
        pinned_sha256: the SHA-256 the bundle must have (MODEL_BUNDLE_SHA256, any case); "" pins nothing. A pin
            implies the content check: the trailing hash alone is whatever the file's writer put there.

    Returns:
        LoadedModel; `phases_ms` times "read_bundle", the engine's phases (torch: "import_torch", "load_weights",
        "build_model", plus "import_transformers" on the transformers implementation; onnxruntime:
        "import_onnxruntime", "create_session") and "tokenizer".

    Raises:
        BundleError subclasses when the file is unusable or the engine cannot serve it (EngineError: the engine
        cannot serve the bundle or the device; BundleCorruptError: a manifest field is missing, malformed or does not
        fit the model; BundlePinError: the bundle is not the pinned one).
    """
    options = options or EngineOptions()
    phases: dict[str, float] = {}

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            phases[name] = phases.get(name, 0.0) + (time.perf_counter_ns() - t0) / 1e6

    with phase("read_bundle"):
        bundle = read_bundle(Path(path), verify_hash=verify_hash or bool(pinned_sha256))
        if pinned_sha256 and bundle.sha256 != pinned_sha256.lower():
            raise BundlePinError(
                f"{bundle.path} has SHA-256 {bundle.sha256}, but MODEL_BUNDLE_SHA256 pins {pinned_sha256.lower()}: it "
                "is not the bundle this function was deployed with. Deploy the pinned bundle, or set "
                "MODEL_BUNDLE_SHA256 to the new bundle's hash (`bundle_builder build` prints it, "
                "`bundle_builder inspect` shows it)"
            )
        manifest = parse_manifest(bundle.manifest, str(bundle.path))
        check_manifest(bundle, manifest)
    name = choose_engine(engine, manifest, bundle.has_file(ONNX_FILE))
    built = build_engine(name, bundle, manifest, options, phase)
    with phase("tokenizer"):
        tokenizer = TextTokenizer(bundle.read_file("tokenizer.json"), manifest.tokenizer)
    return LoadedModel(
        bundle=bundle,
        manifest=manifest,
        engine=built.engine,
        tokenizer=tokenizer,
        device=built.device,
        dtype=built.dtype,
        phases_ms=phases,
    )
