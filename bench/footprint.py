"""What each subject of the engine-choice table costs on disk: its model files and the runtime that would run it.

    model files      a bundle file's bytes; for the naive pipeline the whole source folder it loads; for plain
                     ONNX Runtime the exported graph plus tokenizer.json
    runtime install  the bytes of the installed files (their RECORD) of a requirements file's distributions and
                     everything they require, in the venv that would run the subject: `.venv-onnx` (made by
                     `make setup` from requirements/runtime-onnx.txt) for an onnxruntime bundle, None when it is
                     absent; requirements/runtime-torch.txt in this interpreter's venv for a torch bundle; the
                     libraries the naive pipeline and plain ONNX Runtime import, in this interpreter's venv

Only importlib.metadata and packaging: the orchestrator computes these without importing any engine.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT

ONNX_VENV = REPO_ROOT / ".venv-onnx"
RUNTIME_REQUIREMENTS = {
    "onnxruntime": REPO_ROOT / "requirements" / "runtime-onnx.txt",
    "torch": REPO_ROOT / "requirements" / "runtime-torch.txt",
}
# what the two references import to answer (bench.naive_handler, bench.engines.OrtEngine)
NAIVE_ROOTS = ("transformers", "torch", "numpy")
PLAIN_ORT_ROOTS = ("onnxruntime", "tokenizers", "numpy")


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def requirement_names(path: Path) -> list[str]:
    """The distribution names a pinned requirements file lists (`name==1.2  # comment` lines)."""
    from packaging.requirements import Requirement

    names = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(Requirement(line).name)
    return names


def _site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python*/site-packages"))
    return found[0] if found else None


def _dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            total += p.stat().st_size
    return total


def install_size(roots: Iterable[str], site_packages: Path) -> dict[str, Any]:
    """Bytes of the installed files of `roots` and their requirements (no extras; markers evaluated for this
    interpreter) found in `site_packages`.

    Returns:
        {"bytes", "site_packages", "distributions": {name: bytes}, "missing": [names required but not installed]}.
    """
    from packaging.requirements import Requirement

    dists = {_norm(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site_packages)])}
    seen: dict[str, int] = {}
    missing: list[str] = []
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name in missing:
            continue
        dist = dists.get(name)
        if dist is None:
            missing.append(name)
            continue
        seen[name] = _dist_bytes(dist)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_norm(req.name))
    return {
        "bytes": sum(seen.values()),
        "site_packages": str(site_packages),
        "distributions": dict(sorted(seen.items())),
        "missing": sorted(missing),
    }


def runtime_install(kind: str) -> dict[str, Any] | None:
    """The runtime install of `kind`: "onnxruntime" or "torch" (a bundle's engine), "naive" or "ort" (the
    references); None for "onnxruntime" when `.venv-onnx` does not exist (run `make setup`)."""
    here = Path(sysconfig.get_paths()["purelib"])  # this interpreter's venv: the build and dev environment
    if kind == "onnxruntime":
        site = _site_packages(ONNX_VENV)
        if site is None:
            return None
        return {**install_size(requirement_names(RUNTIME_REQUIREMENTS[kind]), site), "what": ".venv-onnx"}
    if kind == "torch":
        return {**install_size(requirement_names(RUNTIME_REQUIREMENTS[kind]), here), "what": "runtime-torch.txt"}
    roots = {"naive": NAIVE_ROOTS, "ort": PLAIN_ORT_ROOTS}[kind]
    return {**install_size(roots, here), "what": " + ".join(roots)}


def folder_bytes(folder: Path) -> int:
    """Every file under `folder`, recursively."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def weights_and_tokenizer_bytes(model_dir: Path) -> dict[str, int]:
    """The source folder's weights (*.safetensors at its top) and tokenizer.json: what a bundle must hold at least."""
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    tok = model_dir / "tokenizer.json"
    return {"weights_bytes": weights, "tokenizer_bytes": tok.stat().st_size if tok.is_file() else 0}


def of_subjects(subjects: dict[str, dict[str, Any]], model_dir: Path, onnx_bytes: int) -> dict[str, dict[str, Any]]:
    """Model files on disk and the runtime install of each benchmark subject (bench.suite's worker-spec extras:
    engine "handler" with its bundle and expected engine, "naive", or "ort").

    Returns:
        {subject: {"model": {"bytes", "what"}, "install": runtime_install(...) or None}}.
    """
    installs: dict[str, dict[str, Any] | None] = {}
    tokenizer = model_dir / "tokenizer.json"
    out: dict[str, dict[str, Any]] = {}
    for name, extra in subjects.items():
        if extra["engine"] == "handler":
            model = {"bytes": Path(extra["bundle"]).stat().st_size, "what": "bundle file"}
            kind = extra["expect_engine"]
        elif extra["engine"] == "naive":
            model = {"bytes": folder_bytes(model_dir), "what": "source folder"}
            kind = "naive"
        else:
            graph = onnx_bytes + (tokenizer.stat().st_size if tokenizer.is_file() else 0)
            model = {"bytes": graph, "what": "ONNX graph + tokenizer.json"}
            kind = "ort"
        if kind not in installs:
            installs[kind] = runtime_install(kind)
        out[name] = {"model": model, "install": installs[kind]}
    return out
