"""THE bundle format: one offline, pickle-free, hash-checked file holding a whole model.

Layout (all integers little-endian, every section 64-byte aligned so tensors can be memory-mapped in place):

    offset 0    8 bytes   MAGIC  b"HFLBNDL\\x00"
    offset 8    u32       format version (FORMAT_VERSION)
    offset 12   u32       reserved, 0
    offset 16   u64       header length H (bytes of JSON, space-padded to the alignment)
    offset 24   H bytes   header JSON: {"format", "format_version", "manifest", "tensors", "files", "data_bytes"}
    then        D bytes   data: raw tensor bytes and raw file bytes at the offsets the header gives
    last        32 bytes  SHA-256 of every byte before it (the bundle's content hash)

Nothing in the file is ever unpickled: the header is JSON, tensors are raw little-endian bytes read with
`torch.frombuffer`, files (tokenizer.json, config.json, ...) are raw bytes. The reader checks magic, version,
size and hash before it trusts a single offset. The writer is deterministic: the same inputs give the same bytes.

This module is the only owner of the format. The runtime reads with `read_bundle`; the builder writes with
`write_bundle` and proves its output by reading it back with the same function.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeGuard

from runtime.errors import (
    BundleCorruptError,
    BundleNotFoundError,
    BundleVersionError,
    NotABundleError,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT = "hf-lambda-bundle"
FORMAT_VERSION = 1
MAGIC = b"HFLBNDL\x00"
ALIGN = 64
_PREAMBLE = struct.Struct("<8sIIQ")  # magic, version, reserved, header length
_DIGEST_BYTES = 32

# dtype name in the header -> (torch dtype attribute, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("float32", 4),
    "float16": ("float16", 2),
    "bfloat16": ("bfloat16", 2),
    "int64": ("int64", 8),
    "int32": ("int32", 4),
    "int8": ("int8", 1),
    "uint8": ("uint8", 1),
    "bool": ("bool", 1),
}


def _pad(n: int) -> int:
    return (-n) % ALIGN


def _tensor_bytes(t: torch.Tensor) -> bytes:
    # Views of 1-D byte arrays work for every dtype, bfloat16 included (numpy has no bfloat16).
    import torch

    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def write_bundle(
    path: str | os.PathLike[str],
    *,
    manifest: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    files: Mapping[str, bytes],
) -> str:
    """Write a bundle atomically and return its SHA-256 content hash (hex).

    Args:
        path: where to write; the file appears only once it is complete.
        manifest: JSON-serialisable model metadata (task, labels, golden examples, ...).
        tensors: name -> tensor. Tensors that share storage (tied weights) are written once; the others are
            recorded as aliases and come back as the same tensor.
        files: name -> raw bytes (tokenizer.json, config.json, ...).

    Raises:
        ValueError: a tensor dtype the format does not store.
    """
    entries: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    blobs: list[bytes] = []
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...], str], str] = {}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {dtype}; the bundle stores {sorted(DTYPES)}")
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        raw = _tensor_bytes(t)
        entries[name] = {"dtype": dtype, "shape": list(t.shape), "offset": offset, "nbytes": len(raw)}
        blobs.append(raw + b"\0" * _pad(len(raw)))
        offset += len(raw) + _pad(len(raw))
    file_entries: dict[str, dict[str, int]] = {}
    for name in sorted(files):
        raw = bytes(files[name])
        file_entries[name] = {"offset": offset, "nbytes": len(raw)}
        blobs.append(raw + b"\0" * _pad(len(raw)))
        offset += len(raw) + _pad(len(raw))

    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "manifest": manifest,
        "tensors": entries,
        "aliases": aliases,
        "files": file_entries,
        "data_bytes": offset,
    }
    header_raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    header_raw += b" " * _pad(_PREAMBLE.size + len(header_raw))
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header_raw))

    path = Path(path)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in (preamble, header_raw, *blobs):
                digest.update(chunk)
                out.write(chunk)
            out.write(digest.digest())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """An opened, checked bundle. Tensors are views into a private memory map of the file."""

    path: Path
    manifest: dict[str, Any]
    sha256: str
    size_bytes: int
    format_version: int
    _header: dict[str, Any]
    _map: mmap.mmap
    _file: BinaryIO  # kept open: read_file reads the same inode that was hashed, even if the path is replaced
    _data_start: int

    @property
    def file_names(self) -> list[str]:
        return sorted(self._header["files"])

    @property
    def tensor_names(self) -> list[str]:
        return sorted([*self._header["tensors"], *self._header["aliases"]])

    def read_file(self, name: str) -> bytes:
        """The raw bytes of a stored file; KeyError names the files that exist."""
        entry = self._header["files"].get(name)
        if entry is None:
            raise KeyError(f"bundle {self.path} has no file {name!r}; it has {self.file_names}")
        # A plain read of the file that was checked (not a slice of the map: a large file such as model.onnx
        # would leave its mapped pages in RSS).
        return os.pread(self._file.fileno(), entry["nbytes"], self._data_start + entry["offset"])

    def has_file(self, name: str) -> bool:
        return name in self._header["files"]

    def file_bytes(self, name: str) -> int:
        return int(self._header["files"][name]["nbytes"])

    def file_view(self, name: str) -> memoryview:
        """A stored file as a read-only view of the memory map, for a library that reads it in place (the
        onnxruntime-genai graph); its pages stay resident once read, until release_pages. KeyError as read_file."""
        entry = self._header["files"].get(name)
        if entry is None:
            raise KeyError(f"bundle {self.path} has no file {name!r}; it has {self.file_names}")
        start = self._data_start + entry["offset"]
        return memoryview(self._map)[start : start + entry["nbytes"]].toreadonly()

    def release_pages(self, name: str, advice: int) -> None:
        """madvise a stored file's pages (MADV_DONTNEED: drop them from this process; they read back from the file if
        touched again). The map is private and never written, so nothing is lost."""
        entry = self._header["files"][name]
        page = mmap.PAGESIZE
        start = (self._data_start + entry["offset"]) // page * page
        self._map.madvise(advice, start, self._data_start + entry["offset"] + entry["nbytes"] - start)

    def tensors(self) -> dict[str, torch.Tensor]:
        """name -> tensor, zero-copy over the memory map (copy-on-write: writing never touches the file)."""
        import torch

        out: dict[str, torch.Tensor] = {}
        for name, e in self._header["tensors"].items():
            dtype = getattr(torch, DTYPES[e["dtype"]][0])
            count = e["nbytes"] // DTYPES[e["dtype"]][1]
            if count == 0:
                out[name] = torch.empty(e["shape"], dtype=dtype)
                continue
            flat = torch.frombuffer(self._map, dtype=dtype, count=count, offset=self._data_start + e["offset"])
            out[name] = flat.view(e["shape"])
        for name, target in self._header["aliases"].items():
            out[name] = out[target]
        return out

    def array(self, name: str, *, copy: bool = True) -> np.ndarray:
        """One tensor as a numpy array, without importing torch (not for bfloat16): copied out of the map, or with
        copy=False a view of it (copy-on-write: writing to it never touches the file).

        Raises:
            KeyError: no tensor of that name. BundleCorruptError: a dtype numpy does not hold.
        """
        import numpy as np

        name = self._header["aliases"].get(name, name)
        e = self._header["tensors"][name]
        if e["dtype"] == "bfloat16":
            raise BundleCorruptError(f"{self.path}: tensor {name!r} is bfloat16, which numpy cannot hold")
        dtype = np.dtype(DTYPES[e["dtype"]][0]).newbyteorder("<")
        count = e["nbytes"] // dtype.itemsize
        flat = np.frombuffer(self._map, dtype=dtype, count=count, offset=self._data_start + e["offset"])
        view = flat.reshape(e["shape"])
        return view.copy() if copy else view

    def tensor_bytes(self) -> int:
        return sum(e["nbytes"] for e in self._header["tensors"].values())


def _sniff(path: Path, head: bytes) -> NotABundleError:
    hint = f"Build a bundle with `python -m bundle_builder build MODEL_DIR -o {path.name}`."
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return NotABundleError(
            f"{path} is a Python pickle (protocol {head[1]}), not a model bundle. Bundles are pickle-free and "
            f"pickles are never loaded, because unpickling can run code. {hint}"
        )
    if head.startswith(b"PK\x03\x04"):
        return NotABundleError(
            f"{path} is a zip archive (torch.save writes these, with pickles inside), not a model bundle. "
            f"Pickles are never loaded, because unpickling can run code. {hint}"
        )
    return NotABundleError(
        f"{path} is not a model bundle: it starts with {head[:8]!r}, a bundle with {MAGIC!r}. {hint}"
    )


def read_bundle(path: str | os.PathLike[str], *, verify_hash: bool = True) -> Bundle:
    """Open and check a bundle.

    Args:
        path: the bundle file.
        verify_hash: recompute the SHA-256 of the content and compare it with the stored one (reads every byte
            once; ~0.1 s per 100 MB). Size, magic, version and header are always checked.

    Returns:
        The opened bundle; tensors are memory-mapped, not read.

    Raises:
        BundleNotFoundError, NotABundleError, BundleVersionError, BundleCorruptError: each says what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise BundleNotFoundError(
            f"{path} is a directory; MODEL_BUNDLE must name a bundle file built by bundle_builder"
        )
    try:
        f = open(path, "rb")  # noqa: SIM115 - stays open with the Bundle: reads hit the inode that was hashed
    except FileNotFoundError:
        raise BundleNotFoundError(
            f"no bundle at {path}: the file does not exist. Set MODEL_BUNDLE to a bundle file"
        ) from None
    try:
        return _read_checked(path, f, verify_hash)
    except BaseException:
        f.close()
        raise


def _read_checked(path: Path, f: BinaryIO, verify_hash: bool) -> Bundle:
    size = os.fstat(f.fileno()).st_size
    head = f.read(_PREAMBLE.size)
    if size == 0:
        raise BundleCorruptError(f"{path} is empty (0 bytes): the copy or the build did not finish. Rebuild it")
    if len(head) < _PREAMBLE.size and (MAGIC.startswith(head) or head.startswith(MAGIC)):  # a cut bundle
        raise BundleCorruptError(f"{path} is truncated: {size} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
    if not head.startswith(MAGIC):
        raise _sniff(path, head)
    _, version, _, header_len = _PREAMBLE.unpack(head)
    if version != FORMAT_VERSION:
        raise BundleVersionError(
            f"{path} has bundle format version {version}; this runtime reads version {FORMAT_VERSION}. "
            "Rebuild the bundle with the bundle_builder of this release"
        )
    data_start = _PREAMBLE.size + header_len
    if data_start + _DIGEST_BYTES > size:
        raise BundleCorruptError(
            f"{path} is truncated: {size} bytes, but its header alone needs {data_start + _DIGEST_BYTES}. "
            "Copy the file again or rebuild it"
        )
    try:
        header = json.loads(f.read(header_len))
    except ValueError as e:
        raise BundleCorruptError(f"{path} has a corrupt header ({e}); rebuild the bundle") from None
    data_bytes = header.get("data_bytes") if isinstance(header, dict) else None
    if not _is_count(data_bytes):
        raise BundleCorruptError(
            f"{path} has a corrupt header: field 'data_bytes' is {data_bytes!r}, not a byte count; rebuild the bundle"
        )
    expected = data_start + data_bytes + _DIGEST_BYTES
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise BundleCorruptError(
            f"{path} is {what}: {size} bytes on disk, the header says {expected}. Copy the file again or rebuild it"
        )
    if header.get("format") != FORMAT or header.get("format_version") != version:
        raise BundleCorruptError(
            f"{path} header fields 'format' and 'format_version' are {header.get('format')!r} and "
            f"{header.get('format_version')!r}, expected {FORMAT!r} and {version}; the file is corrupt"
        )
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    stored = mapped[size - _DIGEST_BYTES :].hex()
    # Hash with plain reads, not through the map: mapped pages would count in the process's RSS for good.
    actual = _sha256_prefix(f, size - _DIGEST_BYTES) if verify_hash else stored
    if actual != stored:
        raise BundleCorruptError(
            f"{path} failed its content check: SHA-256 {actual[:16]}... but the bundle records {stored[:16]}...; "
            "bytes changed after the build. Copy the file again or rebuild it"
        )
    _check_entries(path, header, data_bytes)
    return Bundle(
        path=path,
        manifest=header["manifest"],
        sha256=stored,
        size_bytes=size,
        format_version=version,
        _header=header,
        _map=mapped,
        _file=f,
        _data_start=data_start,
    )


def _sha256_prefix(f: Any, n: int) -> str:
    digest = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    f.seek(0)
    left = n
    while left:
        got = f.readinto(view[: min(left, len(buf))])
        if not got:
            break
        digest.update(view[:got])
        left -= got
    return digest.hexdigest()


def _is_count(v: object) -> TypeGuard[int]:
    """A non-negative int that is not a bool: a valid offset or size in the header."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_entries(path: Path, header: Any, data_bytes: int) -> None:
    """Every offset and size must be a non-negative int inside the data section, before any is used."""

    def bad(why: str) -> BundleCorruptError:
        return BundleCorruptError(f"{path} has a corrupt header: {why}; rebuild the bundle")

    def span(kind: str, name: str, e: Any) -> tuple[int, int]:
        if not isinstance(e, dict):
            raise bad(f"{kind} {name!r} is not an object")
        offset, nbytes = e.get("offset"), e.get("nbytes")
        if not (_is_count(offset) and _is_count(nbytes)):
            raise bad(f"{kind} {name!r} has offset {offset!r} and size {nbytes!r}; both must be non-negative integers")
        if offset + nbytes > data_bytes:
            raise bad(f"{kind} {name!r} lies outside the data section")
        return offset, nbytes

    if not isinstance(header.get("manifest"), dict):
        raise bad("it has no manifest object")
    tensors, files, aliases = header.get("tensors"), header.get("files"), header.get("aliases")
    if not all(isinstance(x, dict) for x in (tensors, files, aliases)):
        raise bad("tensors, files and aliases must be objects")
    for name, e in tensors.items():
        offset, nbytes = span("tensor", name, e)
        if e.get("dtype") not in DTYPES:
            raise bad(f"tensor {name!r} has unknown dtype {e.get('dtype')!r}")
        shape = e.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise bad(f"tensor {name!r} has shape {shape!r}; it must be a list of non-negative integers")
        numel = 1
        for d in shape:
            numel *= d
        if numel * DTYPES[e["dtype"]][1] != nbytes:
            raise bad(f"tensor {name!r} shape {shape} does not match its {nbytes} bytes")
        if offset % ALIGN:
            raise bad(f"tensor {name!r} lies outside the data section")
    for name, e in files.items():
        span("file", name, e)
    for name, target in aliases.items():
        if name in tensors:
            raise bad(f"alias {name!r} has the name of a stored tensor")
        if target not in tensors:
            raise bad(f"alias {name!r} points at missing tensor {target!r}")
