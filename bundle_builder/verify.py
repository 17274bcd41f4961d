"""Prove a bundle: check its integrity with the runtime reader, rebuild the model, replay every golden example."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bundle_builder.errors import VerifyError
from runtime.golden import GoldenCheck


@dataclass(frozen=True)
class VerifyReport:
    sha256: str
    examples: int
    check: GoldenCheck


def verify_bundle(path: str | os.PathLike[str]) -> VerifyReport:
    """Raises BundleError (integrity) or VerifyError (golden examples drifted); returns the largest difference."""
    from runtime.loader import load_model
    from runtime.predictor import Predictor
    from runtime.settings import Settings
    from runtime.tasks import make_task

    settings = Settings(model_bundle=str(path), device="cpu")
    loaded = load_model(path, device="cpu")
    predictor = Predictor(loaded=loaded, task=make_task(loaded, settings), settings=settings, threads=0)
    check = predictor.check_golden()
    if not check.ok:
        raise VerifyError(f"{path}: golden examples drifted: {check.describe()}")
    return VerifyReport(sha256=loaded.bundle.sha256, examples=len(loaded.manifest["golden"]), check=check)
