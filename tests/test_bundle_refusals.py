"""Every bad file is refused by read_bundle with the right error class and a message that names the problem.

The bad files are made from one good bundle by cutting, flipping or patching its bytes, or are other kinds of file
(pickles, torch.save zips, random bytes). A planted pickle proves the read path never unpickles anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from fakes.planted_pickle import TouchOnUnpickle, planted_payload
from runtime.bundle import MAGIC, read_bundle, write_bundle
from runtime.errors import (
    BundleCorruptError,
    BundleError,
    BundleNotFoundError,
    BundleVersionError,
    NotABundleError,
)
from support import rehash_header

PREAMBLE = struct.Struct("<8sIIQ")
TENSORS = {
    "encoder.weight": torch.randn(32, 16, generator=torch.Generator().manual_seed(0)),  # 2 KiB
    "classifier.bias": torch.tensor([0.25, -0.5]),
}
FILES = {"tokenizer.json": b'{"version": "1.0", "model": {"type": "WordPiece"}}', "config.json": b'{"num_labels": 2}'}
MANIFEST = {"task": "text-classification", "labels": ["NEGATIVE", "POSITIVE"]}


class Parsed:
    """A bundle's bytes, parsed by hand (independently of the reader) so tests can aim at one section."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        _, self.version, _, self.header_len = PREAMBLE.unpack_from(raw, 0)
        self.data_start = PREAMBLE.size + self.header_len
        self.header = json.loads(raw[PREAMBLE.size : self.data_start])

    def tensor_at(self, name: str) -> int:
        return self.data_start + self.header["tensors"][name]["offset"]

    def file_at(self, name: str) -> int:
        return self.data_start + self.header["files"][name]["offset"]


@pytest.fixture
def good(tmp_path: Path) -> Parsed:
    path = tmp_path / "good.bundle"
    write_bundle(path, manifest=MANIFEST, tensors=TENSORS, files=FILES)
    read_bundle(path)  # the starting point is itself fine
    return Parsed(path.read_bytes())


def flipped(raw: bytes, at: int, mask: int = 0x01) -> bytes:
    return raw[:at] + bytes([raw[at] ^ mask]) + raw[at + 1 :]


def sniff_hint(path: Path) -> str:
    return f"Build a bundle with `python -m bundle_builder build MODEL_DIR -o {path.name}`."


def rehashed(good: Parsed, mutate: Callable[[dict[str, Any]], None]) -> bytes:
    """The good bundle with its header changed by `mutate` and a *valid* digest: what a buggy or hostile builder
    could write. Only the entry checks stand between such a header and the data."""
    return rehash_header(good.raw, mutate)


# --- truncated and over-long files ------------------------------------------------------------------------------

TRUNCATIONS: dict[str, tuple[Callable[[Parsed], int], Callable[[Path, int, Parsed], str]]] = {
    "inside-preamble": (
        lambda g: 12,
        lambda p, n, g: f"{p} is truncated: {n} bytes, shorter than the 24-byte preamble",
    ),
    "inside-header": (
        lambda g: PREAMBLE.size + g.header_len // 2,
        lambda p, n, g: f"{p} is truncated: {n} bytes, but its header alone needs {g.data_start + 32}. "
        "Copy the file again or rebuild it",
    ),
    "inside-data": (
        lambda g: g.tensor_at("encoder.weight") + 100,
        lambda p, n, g: f"{p} is truncated: {n} bytes on disk, the header says {len(g.raw)}. "
        "Copy the file again or rebuild it",
    ),
    "last-byte-missing": (
        lambda g: len(g.raw) - 1,
        lambda p, n, g: f"{p} is truncated: {n} bytes on disk, the header says {len(g.raw)}. "
        "Copy the file again or rebuild it",
    ),
    "whole-digest-missing": (
        lambda g: len(g.raw) - 32,
        lambda p, n, g: f"{p} is truncated: {n} bytes on disk, the header says {len(g.raw)}. "
        "Copy the file again or rebuild it",
    ),
}


@pytest.mark.parametrize("verify_hash", [True, False], ids=["hash-checked", "hash-skipped"])
@pytest.mark.parametrize("where", list(TRUNCATIONS), ids=list(TRUNCATIONS))
def test_truncated_bundle_is_refused(tmp_path: Path, good: Parsed, where: str, verify_hash: bool) -> None:
    cut, message = TRUNCATIONS[where]
    path = tmp_path / "cut.bundle"
    path.write_bytes(good.raw[: cut(good)])

    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path, verify_hash=verify_hash)  # size is always checked, hash or not

    assert str(info.value) == message(path, cut(good), good)


def test_bundle_with_bytes_appended_is_refused(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "long.bundle"
    path.write_bytes(good.raw + b"\n")
    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path)
    assert str(info.value) == (
        f"{path} is longer than its header says: {len(good.raw) + 1} bytes on disk, the header says {len(good.raw)}. "
        "Copy the file again or rebuild it"
    )


def test_bundle_cut_inside_its_magic_is_called_truncated(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "cut.bundle"
    path.write_bytes(good.raw[:4])
    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path)
    assert str(info.value) == f"{path} is truncated: 4 bytes, shorter than the 24-byte preamble"


# --- one changed byte ---------------------------------------------------------------------------------------------

def _manifest_string_byte(g: Parsed) -> int:
    # a letter inside the JSON string "text-classification": 't' ^ 1 == 'u', so the JSON stays valid
    return g.raw.index(b'"text-classification"', PREAMBLE.size, g.data_start) + 1


FLIPS: dict[str, Callable[[Parsed], int]] = {
    "tensor-byte": lambda g: g.tensor_at("encoder.weight") + 517,
    "stored-file-byte": lambda g: g.file_at("tokenizer.json") + 3,
    "manifest-json-string": _manifest_string_byte,
    "reserved-preamble-field": lambda g: 12,
    "padding-byte": lambda g: g.tensor_at("classifier.bias") + 8,  # after the 8 bytes of the bias, before the next
    "trailing-digest": lambda g: len(g.raw) - 1,
}


@pytest.mark.parametrize("where", list(FLIPS), ids=list(FLIPS))
def test_one_flipped_byte_fails_the_content_check(tmp_path: Path, good: Parsed, where: str) -> None:
    raw = flipped(good.raw, FLIPS[where](good))
    Parsed(raw)  # still parses: only the hash can catch this
    path = tmp_path / "flipped.bundle"
    path.write_bytes(raw)

    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path)

    actual, stored = hashlib.sha256(raw[:-32]).hexdigest(), raw[-32:].hex()
    assert actual != stored
    assert str(info.value) == (
        f"{path} failed its content check: SHA-256 {actual[:16]}... but the bundle records {stored[:16]}...; "
        "bytes changed after the build. Copy the file again or rebuild it"
    )


def test_a_flipped_byte_that_breaks_the_json_is_a_corrupt_header(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "flipped.bundle"
    path.write_bytes(flipped(good.raw, PREAMBLE.size, ord("{") ^ ord("[")))  # '{' -> '['
    with pytest.raises(BundleCorruptError, match=r"has a corrupt header \(.+\); rebuild the bundle$") as info:
        read_bundle(path)
    assert str(info.value).startswith(f"{path} has a corrupt header (")


@pytest.mark.parametrize("version", [0, 2, 2**32 - 1], ids=["v0", "v2", "v4294967295"])
def test_other_format_version_is_refused(tmp_path: Path, good: Parsed, version: int) -> None:
    path = tmp_path / "other.bundle"
    path.write_bytes(good.raw[:8] + struct.pack("<I", version) + good.raw[12:])

    with pytest.raises(BundleVersionError) as info:
        read_bundle(path, verify_hash=False)  # the version is checked before anything else is trusted

    assert str(info.value) == (
        f"{path} has bundle format version {version}; this runtime reads version 1. "
        "Rebuild the bundle with the bundle_builder of this release"
    )


def test_wrong_magic_is_not_a_bundle(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "magic.bundle"
    path.write_bytes(flipped(good.raw, 7))
    with pytest.raises(NotABundleError) as info:
        read_bundle(path)
    assert str(info.value) == (
        f"{path} is not a model bundle: it starts with b'HFLBNDL\\x01', a bundle with {MAGIC!r}. {sniff_hint(path)}"
    )


def test_header_length_past_the_end_is_truncated(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "hlen.bundle"
    path.write_bytes(good.raw[:16] + struct.pack("<Q", 2**40) + good.raw[24:])
    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path, verify_hash=False)
    assert str(info.value) == (
        f"{path} is truncated: {len(good.raw)} bytes, but its header alone needs {24 + 2**40 + 32}. "
        "Copy the file again or rebuild it"
    )


@pytest.mark.parametrize("shift", [64, -64], ids=["reaching-into-the-data", "stopping-inside-the-json"])
def test_wrong_header_length_is_a_corrupt_header(tmp_path: Path, good: Parsed, shift: int) -> None:
    path = tmp_path / "hlen.bundle"
    path.write_bytes(good.raw[:16] + struct.pack("<Q", good.header_len + shift) + good.raw[24:])
    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path, verify_hash=False)
    message = str(info.value)  # the parser's own words sit in the parentheses: not pinned
    assert message.startswith(f"{path} has a corrupt header (") and message.endswith("); rebuild the bundle")


# --- not a bundle at all ------------------------------------------------------------------------------------------

def _torch_save(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


RANDOM_BYTES = b"\x13\x37" + random.Random(0).randbytes(4094)  # neither a pickle (0x80) nor a zip (PK)
JSON_TEXT = b'{"architectures": ["BertModel"]}\n'
NOT_BUNDLES: dict[str, tuple[Callable[[], bytes], type[BundleError], Callable[[Path], str]]] = {
    **{
        f"pickle-protocol-{proto}": (
            (lambda proto=proto: pickle.dumps({"weight": [1.0, 2.0]}, protocol=proto)),
            NotABundleError,
            (lambda p, proto=proto: f"{p} is a Python pickle (protocol {proto}), not a model bundle. Bundles are "
             f"pickle-free and pickles are never loaded, because unpickling can run code. {sniff_hint(p)}"),
        )
        for proto in (2, 3, 4, 5)
    },
    "torch-save-zip": (
        lambda: _torch_save({"weight": torch.ones(3)}),
        NotABundleError,
        lambda p: f"{p} is a zip archive (torch.save writes these, with pickles inside), not a model bundle. "
        f"Pickles are never loaded, because unpickling can run code. {sniff_hint(p)}",
    ),
    "random-bytes": (
        lambda: RANDOM_BYTES,
        NotABundleError,
        lambda p: f"{p} is not a model bundle: it starts with {RANDOM_BYTES[:8]!r}, a bundle with {MAGIC!r}. "
        f"{sniff_hint(p)}",
    ),
    "json-text": (
        lambda: JSON_TEXT,
        NotABundleError,
        lambda p: f"{p} is not a model bundle: it starts with {JSON_TEXT[:8]!r}, a bundle with {MAGIC!r}. "
        f"{sniff_hint(p)}",
    ),
    "empty": (
        lambda: b"",
        BundleCorruptError,
        lambda p: f"{p} is empty (0 bytes): the copy or the build did not finish. Rebuild it",
    ),
}


@pytest.mark.parametrize("kind", list(NOT_BUNDLES), ids=list(NOT_BUNDLES))
def test_other_kinds_of_file_are_refused(tmp_path: Path, kind: str) -> None:
    content, error, message = NOT_BUNDLES[kind]
    path = tmp_path / "model.bundle"
    path.write_bytes(content())

    with pytest.raises(error) as info:
        read_bundle(path)

    assert type(info.value) is error
    assert str(info.value) == message(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError) as info:
        read_bundle(tmp_path)
    assert str(info.value) == (
        f"{tmp_path} is a directory; MODEL_BUNDLE must name a bundle file built by bundle_builder"
    )


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "model.bundle"
    with pytest.raises(BundleNotFoundError) as info:
        read_bundle(path)
    assert str(info.value) == f"no bundle at {path}: the file does not exist. Set MODEL_BUNDLE to a bundle file"
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- a planted pickle is never executed ---------------------------------------------------------------------------

def test_planted_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.marker"
    payload = planted_payload(marker)

    # (a) the raw pickle, under a bundle's name
    raw_pickle = tmp_path / "pickle.bundle"
    raw_pickle.write_bytes(payload)
    with pytest.raises(NotABundleError, match=r"is a Python pickle \(protocol 4\)"):
        read_bundle(raw_pickle)
    assert not marker.exists()

    # (b) the same object through torch.save (a zip with data.pkl inside)
    saved = tmp_path / "saved.bundle"
    torch.save(TouchOnUnpickle(marker), saved)
    with pytest.raises(NotABundleError, match="is a zip archive"):
        read_bundle(saved)
    assert not marker.exists()

    # (c) a valid bundle carrying the payload as a stored file and as a uint8 tensor: read back as bytes, never run
    carrier = tmp_path / "carrier.bundle"
    write_bundle(carrier, manifest={"task": "x"},
                 tensors={"payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)},
                 files={"data.pkl": payload, "pytorch_model.bin": _torch_save(TouchOnUnpickle(marker))})
    bundle = read_bundle(carrier)
    assert bundle.read_file("data.pkl") == payload
    for name in bundle.file_names:
        bundle.read_file(name)
    assert bytes(bundle.tensors()["payload"].numpy()) == payload
    assert not marker.exists()

    # (d) the check can fail: the very same bytes do leave the trace when something unpickles them
    pickle.loads(bundle.read_file("data.pkl"))
    assert marker.exists()
    marker.unlink()
    torch.load(saved, weights_only=False)
    assert marker.exists()


def test_the_read_path_never_calls_an_unpickler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "unpickled.marker"
    payload = planted_payload(marker)
    path = tmp_path / "model.bundle"
    write_bundle(path, manifest=MANIFEST, tensors={**TENSORS, "tied": TENSORS["encoder.weight"],
                                                   "payload": torch.tensor(list(payload), dtype=torch.uint8)},
                 files={**FILES, "data.pkl": payload})

    calls: list[str] = []

    def forbidden(name: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called while reading a bundle")
        return refuse

    for module, attr in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load"), (torch.serialization, "load")]:
        monkeypatch.setattr(module, attr, forbidden(f"{module.__name__}.{attr}"))

    bundle = read_bundle(path)
    tensors = bundle.tensors()
    files = {name: bundle.read_file(name) for name in bundle.file_names}

    assert calls == []
    assert not marker.exists()
    assert files["data.pkl"] == payload and set(files) == {*FILES, "data.pkl"}
    assert torch.equal(tensors["encoder.weight"], TENSORS["encoder.weight"])
    with pytest.raises(AssertionError, match=r"pickle\.loads called"):  # the patch is live: the check can fail
        pickle.loads(payload)


# --- verify_hash=False ------------------------------------------------------------------------------------------

def test_without_hash_check_a_flipped_tensor_byte_goes_unnoticed(tmp_path: Path, good: Parsed) -> None:
    # Documents the option: verify_hash=False trades the content check for start-up time. Size, magic, version
    # and the header are still checked (see the truncation tests, parametrised over verify_hash).
    at = good.tensor_at("encoder.weight")
    path = tmp_path / "flipped.bundle"
    path.write_bytes(flipped(good.raw, at + 3, 0x80))  # the sign bit of encoder.weight[0, 0]

    with pytest.raises(BundleCorruptError, match="failed its content check"):
        read_bundle(path)
    bundle = read_bundle(path, verify_hash=False)

    back = bundle.tensors()["encoder.weight"]
    assert back[0, 0].item() == -TENSORS["encoder.weight"][0, 0].item()
    assert torch.equal(back.flatten()[1:], TENSORS["encoder.weight"].flatten()[1:])
    assert bundle.sha256 == good.raw[-32:].hex()  # the recorded hash, not the content's


# --- headers with a valid digest but bad entries ---------------------------------------------------------------

def test_rehashing_an_unchanged_header_gives_the_same_bytes(good: Parsed) -> None:
    assert rehashed(good, lambda h: None) == good.raw  # so the cases below change only what they say


def _set(section: str, name: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda h: h[section][name].update(values)


ENTRY_CHECKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown-dtype": (_set("tensors", "classifier.bias", dtype="complex64"),
                      "tensor 'classifier.bias' has unknown dtype 'complex64'"),
    "shape-and-bytes-disagree": (_set("tensors", "classifier.bias", shape=[3]),
                                 "tensor 'classifier.bias' shape [3] does not match its 8 bytes"),
    "tensor-offset-unaligned": (_set("tensors", "encoder.weight", offset=65),
                                "tensor 'encoder.weight' lies outside the data section"),
    "tensor-past-the-data": (_set("tensors", "encoder.weight", offset=64 * 1000),
                             "tensor 'encoder.weight' lies outside the data section"),
    "file-past-the-data": (_set("files", "tokenizer.json", nbytes=10**6),
                           "file 'tokenizer.json' lies outside the data section"),
    "alias-to-nothing": (lambda h: h["aliases"].update({"lm_head.weight": "decoder.weight"}),
                         "alias 'lm_head.weight' points at missing tensor 'decoder.weight'"),
}


@pytest.mark.parametrize("case", list(ENTRY_CHECKS), ids=list(ENTRY_CHECKS))
def test_header_entries_are_checked_before_any_offset_is_used(tmp_path: Path, good: Parsed, case: str) -> None:
    mutate, why = ENTRY_CHECKS[case]
    path = tmp_path / "crafted.bundle"
    path.write_bytes(rehashed(good, mutate))

    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path)

    assert str(info.value) == f"{path} has a corrupt header: {why}; rebuild the bundle"


def test_header_naming_another_format_is_refused(tmp_path: Path, good: Parsed) -> None:
    path = tmp_path / "crafted.bundle"
    path.write_bytes(rehashed(good, lambda h: h.update(format="safetensors")))
    with pytest.raises(BundleCorruptError) as info:
        read_bundle(path)
    assert str(info.value) == (
        f"{path} header fields 'format' and 'format_version' are 'safetensors' and 1, expected 'hf-lambda-bundle' "
        "and 1; the file is corrupt"
    )


# Headers that a hash cannot catch (a buggy or hostile builder rehashes them): each must be refused before use.
BUGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "file-offset-negative": _set("files", "tokenizer.json", offset=-64),
    # -64 % 64 == 0 and -64 + nbytes <= data_bytes: the tensor is then read from the last 64 bytes of the header
    "tensor-offset-negative": _set("tensors", "encoder.weight", offset=-64),
    # shape [-1] * 1 byte == nbytes -1 passes; tensors() then calls frombuffer(count=-1): the rest of the file
    "tensor-size-negative": _set("tensors", "classifier.bias", dtype="uint8", shape=[-1], nbytes=-1),
    # offset + nbytes <= data_bytes passes; read_file then silently returns b""
    "file-size-negative": _set("files", "tokenizer.json", nbytes=-1),
    # an alias with a stored tensor's name silently replaces that tensor in tensors()
    "alias-shadows-a-tensor": lambda h: h["aliases"].update({"encoder.weight": "classifier.bias"}),
}


@pytest.mark.parametrize("case", list(BUGS), ids=list(BUGS))
def test_negative_sizes_and_shadowing_aliases_are_refused(tmp_path: Path, good: Parsed, case: str) -> None:
    path = tmp_path / "crafted.bundle"
    path.write_bytes(rehashed(good, BUGS[case]))
    with pytest.raises(BundleCorruptError, match="has a corrupt header: "):
        bundle = read_bundle(path)
        bundle.tensors()
        [bundle.read_file(name) for name in bundle.file_names]


MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "tensor-entry-without-nbytes": lambda h: h["tensors"]["encoder.weight"].pop("nbytes"),  # KeyError
    "tensor-offset-is-a-string": _set("tensors", "encoder.weight", offset="64"),  # TypeError from "64" % 64
    "tensors-is-a-list": lambda h: h.update(tensors=[]),  # AttributeError: .items()
    "no-manifest": lambda h: h.pop("manifest"),  # KeyError
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_header_entries_raise_bundle_errors(tmp_path: Path, good: Parsed, case: str) -> None:
    path = tmp_path / "crafted.bundle"
    path.write_bytes(rehashed(good, MALFORMED[case]))
    with pytest.raises(BundleCorruptError, match="has a corrupt header"):
        read_bundle(path)


def test_without_hash_check_a_flipped_header_key_is_still_a_bundle_error(tmp_path: Path, good: Parsed) -> None:
    # The realistic road to the gap above: one flipped bit turns "nbytes" into "nbytez"; the JSON stays valid.
    at = good.raw.index(b'"nbytes"', PREAMBLE.size, good.data_start) + 6
    path = tmp_path / "flipped.bundle"
    path.write_bytes(flipped(good.raw, at, ord("s") ^ ord("z")))
    with pytest.raises(BundleCorruptError, match="failed its content check"):
        read_bundle(path)  # with the hash on, it is caught
    with pytest.raises(BundleCorruptError, match="has a corrupt header"):
        read_bundle(path, verify_hash=False)
