"""Prove a bundle: check its integrity with the runtime reader, rebuild the model, replay every golden example.

Every engine whose weights the bundle holds is proved (bundles built before weights were stored once hold both).
Where the torch engine serves the model with its native encoder, the transformers implementation is proved too
(TORCH_IMPLEMENTATION=transformers picks it at run time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bundle_builder.errors import VerifyError
from runtime.golden import GoldenCheck


@dataclass(frozen=True)
class VerifyReport:
    sha256: str
    examples: int
    check: GoldenCheck  # the bundle's default engine
    engines: dict[str, GoldenCheck]  # every engine that can serve the bundle -> its check

    def describe(self) -> str:
        """ "torch min_cosine=... (limit ...); onnxruntime min_cosine=... (limit ...)"."""
        return "; ".join(f"{name} {check.describe()}" for name, check in self.engines.items())


def verify_bundle(path: str | os.PathLike[str]) -> VerifyReport:
    """Replay the golden examples on every engine the bundle supports.

    Raises:
        BundleError: integrity (the file) or EngineError (an engine cannot load it).
        VerifyError: an engine's outputs drifted from the golden examples; the message names the engine.
    """
    from runtime.bundle import read_bundle
    from runtime.engines import ONNX_FILE, bundle_engines
    from runtime.manifest import parse_manifest

    bundle = read_bundle(path)
    manifest = parse_manifest(bundle.manifest, str(bundle.path))
    names = bundle_engines(manifest, bundle.has_file(ONNX_FILE))
    engines: dict[str, GoldenCheck] = {}
    for name in names:
        engines[name], implementation = _check(path, name)
        if implementation == "native":
            engines["torch/transformers"], _ = _check(path, name, implementation="transformers")
    for name, check in engines.items():
        if not check.ok:
            raise VerifyError(f"{path}: golden examples drifted on the {name} engine: {check.describe()}")
    return VerifyReport(
        sha256=bundle.sha256, examples=len(manifest.golden), check=engines[manifest.engine], engines=engines
    )


def _check(path: str | os.PathLike[str], engine: str, *, implementation: str = "auto") -> tuple[GoldenCheck, str]:
    from runtime.predictor import Predictor
    from runtime.settings import Settings

    settings = Settings(model_bundle=str(path), device="cpu", engine=engine, torch_implementation=implementation)
    predictor = Predictor.load(settings, verify_hash=False)  # hashed once, by the caller
    return predictor.check_golden(), predictor.model.engine.implementation
