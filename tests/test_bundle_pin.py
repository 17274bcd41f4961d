"""MODEL_BUNDLE_SHA256 pins the bundle: whoever can replace the file can recompute its trailing hash, but not the
hash pinned in the function's configuration.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import read_bundle
from runtime.errors import BundleCorruptError, BundleError
from runtime.settings import SettingsError
from support import new_function, rehash_header

ENV = {"DEVICE": "cpu", "NUM_THREADS": "1"}


def relabelled(header: dict[str, Any]) -> None:
    """What an attacker who can write the bundle does: swap two labels everywhere (golden outputs included, so the
    canary still passes), then recompute the trailing hash (rehash_header)."""
    text = json.dumps(header["manifest"])
    swapped = text.replace('"negative"', '"@@"').replace('"positive"', '"negative"').replace('"@@"', '"positive"')
    header["manifest"] = json.loads(swapped)


@pytest.fixture
def original(tiny_bundle) -> Path:
    return tiny_bundle("bert")


@pytest.fixture
def tampered(original: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.bundle"
    path.write_bytes(rehash_header(original.read_bytes(), relabelled))
    return path


def answer(fn: Any, text: str) -> list[tuple[str, float]]:
    return [(d["label"], d["score"]) for d in fn.predictor.predict([text]).outputs[0]]


def test_relabelled_bundle_with_a_recomputed_hash_passes_without_the_pin(original: Path, tampered: Path) -> None:
    honest, forged = new_function(original, **ENV), new_function(tampered, **ENV)  # content check and canary pass
    swap = {"negative": "positive", "positive": "negative"}
    for text in ("the screen is gorgeous", "support never answered", "ok"):
        # the same scores under swapped names: served, silently wrong
        assert answer(forged, text) == [(swap.get(label, label), score) for label, score in answer(honest, text)]
        assert {label for label, _ in answer(forged, text)} >= set(swap)  # every label is listed: two were swapped


def test_the_pin_refuses_the_relabelled_bundle(original: Path, tampered: Path) -> None:
    pinned, actual = read_bundle(original).sha256, read_bundle(tampered).sha256

    with pytest.raises(BundleError) as info:
        new_function(tampered, MODEL_BUNDLE_SHA256=pinned, **ENV)

    assert type(info.value).__name__ == "BundlePinError"
    assert str(info.value) == (
        f"{tampered} has SHA-256 {actual}, but MODEL_BUNDLE_SHA256 pins {pinned}: it is not the bundle this "
        "function was deployed with. Deploy the pinned bundle, or set MODEL_BUNDLE_SHA256 to the new bundle's hash "
        "(`bundle_builder build` prints it, `bundle_builder inspect` shows it)"
    )


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_a_correct_pin_loads(original: Path, case: str) -> None:
    sha = read_bundle(original).sha256
    fn = new_function(original, MODEL_BUNDLE_SHA256=sha.upper() if case == "upper" else sha, **ENV)
    assert fn.served.model["sha256"] == sha


def test_the_pin_forces_the_content_check(original: Path, tmp_path: Path) -> None:
    # VERIFY_BUNDLE_HASH=false trusts the trailing hash: a forger would simply write the pinned value there.
    pinned = read_bundle(original).sha256
    forged = rehash_header(original.read_bytes(), relabelled)[:-32] + bytes.fromhex(pinned)
    path = tmp_path / "model.bundle"
    path.write_bytes(forged)
    new_function(path, VERIFY_BUNDLE_HASH="false", **ENV)  # unpinned and unchecked: it loads

    with pytest.raises(BundleCorruptError, match="failed its content check"):
        new_function(path, VERIFY_BUNDLE_HASH="false", MODEL_BUNDLE_SHA256=pinned, **ENV)


@pytest.mark.parametrize(
    "value",
    ["abc", "g" * 64, "0" * 63, "0" * 65, "sha256:" + "0" * 64, " " + "0" * 64],
    ids=["short", "not-hex", "63", "65", "prefixed", "space"],
)
def test_a_malformed_pin_is_a_settings_error(original: Path, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        new_function(original, MODEL_BUNDLE_SHA256=value, **ENV)
    assert str(info.value) == (
        f"environment variable MODEL_BUNDLE_SHA256={value!r} is not allowed: use the 64 hex digits that "
        "`bundle_builder build` prints, or empty: not pinned"
    )


def test_an_empty_pin_is_no_pin(tampered: Path) -> None:
    new_function(tampered, MODEL_BUNDLE_SHA256="", **ENV)  # template.yaml's default


def test_the_builder_prints_the_pin_that_inspect_shows(
    tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bundle_builder.cli import main

    out = tmp_path / "model.bundle"
    assert main(["build", str(tiny_model("bert")), "-o", str(out), "--engine", "torch", "--no-budget", "--quiet"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]

    sha = read_bundle(out).sha256
    assert re.fullmatch(r"MODEL_BUNDLE_SHA256=[0-9a-f]{64}", last) and last == f"MODEL_BUNDLE_SHA256={sha}"
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == sha
    new_function(out, MODEL_BUNDLE_SHA256=sha, **ENV)
