"""The bundle format, written and read back with small synthetic tensors: no model, no network, well under a second.

What is pinned here: round trips per dtype, tied weights stored once, tensors memory-mapped (and copy-on-write),
deterministic bytes, the byte layout itself (a golden digest), and an atomic writer.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime import bundle as bundle_mod
from runtime.bundle import ALIGN, DTYPES, FORMAT, FORMAT_VERSION, MAGIC, read_bundle, write_bundle

PREAMBLE = struct.Struct("<8sIIQ")  # magic, version, reserved, header length: re-stated here on purpose


def layout(path: Path) -> tuple[int, int, dict]:
    """Parse a bundle by hand, independently of the reader: (format version, data start, header)."""
    raw = path.read_bytes()
    magic, version, reserved, header_len = PREAMBLE.unpack_from(raw, 0)
    assert (magic, reserved) == (MAGIC, 0)
    return version, PREAMBLE.size + header_len, json.loads(raw[PREAMBLE.size : PREAMBLE.size + header_len])


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).to(torch.float16),
        # bfloat16 has no numpy twin: the writer must go through a byte view, not .numpy() of the tensor
        "bf16": torch.randn(2, 2, 2, generator=g).to(torch.bfloat16),
        "i64": base,
        "i64_transposed": base.t(),  # shares base's storage, other strides: must be stored, not aliased
        "i32": torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.5),  # 0-d
        "empty": torch.empty(0, 4),  # no bytes at all
    }


FILES = {
    "tokenizer.json": b'{"model": {"type": "WordPiece"}}',
    "config.json": b'{"hidden_size": 8}\n',
    "vocab.txt": "[PAD]\n[UNK]\ncaf\u00e9\n".encode(),
    "empty.txt": b"",
}
MANIFEST = {
    "task": "text-classification",
    "labels": ["NEGATIVE", "POSITIVE"],
    "max_length": 128,
    "nested": {"b": 1, "a": [1.5, None]},
}


def test_round_trip_gives_back_every_tensor_file_and_the_manifest(tmp_path: Path) -> None:
    tensors = sample_tensors()
    path = tmp_path / "model.bundle"

    digest = write_bundle(path, manifest=MANIFEST, tensors=tensors, files=FILES)
    bundle = read_bundle(path)

    back = bundle.tensors()
    assert sorted(back) == sorted(tensors) == bundle.tensor_names
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype, name
        assert back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name
    assert back["scalar"].dim() == 0 and back["scalar"].item() == 3.5
    assert back["empty"].numel() == 0
    assert bundle.file_names == sorted(FILES)
    assert {name: bundle.read_file(name) for name in FILES} == FILES
    assert bundle.has_file("tokenizer.json") and not bundle.has_file("model.safetensors")
    assert bundle.manifest == MANIFEST
    assert bundle.format_version == FORMAT_VERSION == 1
    raw = path.read_bytes()
    assert bundle.size_bytes == len(raw)
    assert bundle.tensor_bytes() == sum(t.numel() * t.element_size() for t in tensors.values())
    # one content hash, four ways of getting it
    assert digest == bundle.sha256 == hashlib.sha256(raw[:-32]).hexdigest() == raw[-32:].hex()


def test_every_dtype_the_format_names_round_trips(tmp_path: Path) -> None:
    # DTYPES is the format's contract: each entry must actually survive write -> read
    tensors = {name: (torch.arange(10) % 2).to(getattr(torch, attr)) for name, (attr, _) in DTYPES.items()}
    write_bundle(tmp_path / "b", manifest={}, tensors=tensors, files={})
    back = read_bundle(tmp_path / "b").tensors()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
        assert back[name].element_size() == DTYPES[name][1], name


def test_read_file_of_a_missing_name_lists_the_files_there(tmp_path: Path) -> None:
    path = tmp_path / "model.bundle"
    write_bundle(path, manifest={}, tensors={}, files={"config.json": b"{}", "vocab.txt": b"a\n"})
    with pytest.raises(KeyError) as info:
        read_bundle(path).read_file("tokenizer.json")
    assert info.value.args[0] == f"bundle {path} has no file 'tokenizer.json'; it has ['config.json', 'vocab.txt']"


def test_tied_weights_are_stored_once_and_come_back_as_one_tensor(tmp_path: Path) -> None:
    embed = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))  # 16 KiB
    bias = torch.zeros(64)

    write_bundle(tmp_path / "one.bundle", manifest={}, tensors={"embed.weight": embed, "bias": bias}, files={})
    write_bundle(tmp_path / "tied.bundle", manifest={},
                 tensors={"embed.weight": embed, "lm_head.weight": embed, "bias": bias}, files={})
    write_bundle(tmp_path / "copied.bundle", manifest={},
                 tensors={"embed.weight": embed, "lm_head.weight": embed.clone(), "bias": bias}, files={})

    one, tied, copied = (tmp_path / f"{n}.bundle" for n in ("one", "tied", "copied"))
    # a second name costs a header entry (< one alignment block here), a second copy costs the 16 KiB
    assert tied.stat().st_size - one.stat().st_size <= ALIGN
    assert copied.stat().st_size - one.stat().st_size >= embed.nbytes
    _, _, header = layout(tied)
    assert header["aliases"] == {"lm_head.weight": "embed.weight"}  # the alias points at the first name, sorted
    assert sorted(header["tensors"]) == ["bias", "embed.weight"]

    bundle = read_bundle(tied)
    assert bundle.tensor_bytes() == embed.nbytes + bias.nbytes
    back = bundle.tensors()
    assert back["lm_head.weight"] is back["embed.weight"]
    assert back["lm_head.weight"].data_ptr() == back["embed.weight"].data_ptr()
    assert torch.equal(back["lm_head.weight"], embed)
    # and a clone, equal but not shared, stays two tensors
    back_copied = read_bundle(copied).tensors()
    assert back_copied["lm_head.weight"].data_ptr() != back_copied["embed.weight"].data_ptr()


def test_tensors_are_views_into_the_memory_map_not_copies(tmp_path: Path) -> None:
    path = tmp_path / "model.bundle"
    tensors = {
        "a": torch.randn(1000),
        "b": torch.arange(100, dtype=torch.int64),
        "c": torch.ones(3, 3, dtype=torch.float16),
    }
    write_bundle(path, manifest={}, tensors=tensors, files={})
    _, data_start, header = layout(path)
    bundle = read_bundle(path)

    # the address of the bundle's map: numpy exposes it without copying (a view over the same buffer)
    view = np.frombuffer(bundle._map, dtype=np.uint8)
    map_start = view.ctypes.data
    assert view.size == path.stat().st_size
    back = bundle.tensors()
    for name in tensors:
        # exactly where the header says the bytes lie inside the mapped file: a copy would live elsewhere
        assert back[name].data_ptr() == map_start + data_start + header["tensors"][name]["offset"], name
    del view


def test_writing_into_a_returned_tensor_never_changes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bundle"
    weight = torch.arange(256, dtype=torch.float32)
    write_bundle(path, manifest={}, tensors={"w": weight}, files={})
    before = path.read_bytes()

    back = read_bundle(path).tensors()["w"]
    back.mul_(-1).add_(7)  # in place, through the mapping
    assert back[3].item() == 4.0  # the write took effect in memory

    assert path.read_bytes() == before  # copy-on-write: the file on disk is untouched
    again = read_bundle(path)  # and the hash still checks
    assert torch.equal(again.tensors()["w"], weight)


def test_same_inputs_give_byte_identical_files_whatever_the_dict_order(tmp_path: Path) -> None:
    def reverse(d: dict) -> dict:
        return dict(reversed(list(d.items())))

    tensors = sample_tensors()
    tied = {**tensors, "tied": tensors["f32"]}

    a = write_bundle(tmp_path / "a.bundle", manifest=MANIFEST, tensors=tied, files=FILES)
    b = write_bundle(tmp_path / "b.bundle", manifest=MANIFEST, tensors=tied, files=FILES)
    reordered_manifest = reverse({**MANIFEST, "nested": reverse(MANIFEST["nested"])})
    assert list(reordered_manifest) != list(MANIFEST)
    c = write_bundle(tmp_path / "c.bundle", manifest=reordered_manifest, tensors=reverse(tied), files=reverse(FILES))

    assert a == b == c
    a_raw, b_raw, c_raw = ((tmp_path / f"{n}.bundle").read_bytes() for n in "abc")
    assert a_raw == b_raw == c_raw


# A tiny fixed bundle whose every byte is pinned by GOLDEN_SHA256: change the layout, the JSON spelling, the
# padding, the order of sections or the alias rule and this digest changes.
def golden_inputs() -> dict:
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    return {
        "manifest": {"task": "feature-extraction", "labels": None},
        "tensors": {"w": w, "w_tied": w, "ids": torch.tensor([1, -2, 3], dtype=torch.int64)},
        "files": {"config.json": b'{"a": 1}'},
    }


GOLDEN_SHA256 = "217f37746d357e7624f5d51ba6cbe9c68f5eb5b3ef35bc5d66a0b619cea75043"
GOLDEN_HEADER = (
    b'{"aliases":{"w_tied":"w"},"data_bytes":192,'
    b'"files":{"config.json":{"nbytes":8,"offset":128}},"format":"hf-lambda-bundle","format_version":1,'
    b'"manifest":{"labels":null,"task":"feature-extraction"},'
    b'"tensors":{"ids":{"dtype":"int64","nbytes":24,"offset":0,"shape":[3]},'
    b'"w":{"dtype":"float32","nbytes":24,"offset":64,"shape":[2,3]}}}'
)


def test_pinned_byte_layout(tmp_path: Path) -> None:
    path = tmp_path / "golden.bundle"
    digest = write_bundle(path, **golden_inputs())
    raw = path.read_bytes()

    assert raw[0:8] == b"HFLBNDL\x00"
    assert struct.unpack_from("<I", raw, 8) == (1,)  # format version
    assert struct.unpack_from("<I", raw, 12) == (0,)  # reserved
    (header_len,) = struct.unpack_from("<Q", raw, 16)
    data_start = 24 + header_len
    assert raw[24:34] == b'{"aliases"'
    header_raw = raw[24:data_start]
    assert header_raw.rstrip(b" ") == GOLDEN_HEADER  # compact, sorted keys, ASCII, then space padding
    assert set(header_raw[len(GOLDEN_HEADER):]) <= {ord(" ")}
    assert data_start % 64 == 0
    header = json.loads(header_raw)
    assert header["format"] == FORMAT and header["format_version"] == FORMAT_VERSION
    for section in ("tensors", "files"):
        for name, entry in header[section].items():
            assert entry["offset"] % 64 == 0 and (data_start + entry["offset"]) % 64 == 0, name
    assert raw[data_start : data_start + 24] == struct.pack("<3q", 1, -2, 3)  # ids, little-endian, at offset 0
    assert raw[data_start + 64 : data_start + 64 + 24] == struct.pack("<6f", 0, 1, 2, 3, 4, 5)  # w, row-major
    assert raw[data_start + 128 : data_start + 136] == b'{"a": 1}'  # files follow the tensors
    assert raw[data_start + 24 : data_start + 64] == b"\0" * 40  # padding is zeros
    assert len(raw) == data_start + header["data_bytes"] + 32
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()
    assert digest == GOLDEN_SHA256


def test_a_failing_write_leaves_no_file_and_names_the_tensor(tmp_path: Path) -> None:
    path = tmp_path / "model.bundle"
    tensors = {"good": torch.ones(2), "rotary.freqs": torch.ones(2, dtype=torch.complex64)}

    with pytest.raises(ValueError) as info:
        write_bundle(path, manifest={}, tensors=tensors, files={})

    assert str(info.value) == f"tensor 'rotary.freqs' has dtype complex64; the bundle stores {sorted(DTYPES)}"
    assert list(tmp_path.iterdir()) == []  # no bundle, no .part


def test_a_failing_write_keeps_the_previous_bundle_and_cleans_its_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.bundle"
    write_bundle(path, manifest={"v": 1}, tensors={"w": torch.ones(4)}, files={})
    before = path.read_bytes()

    def replace_fails(src: str, dst: str) -> None:
        assert re.fullmatch(r"model\.bundle\..+\.part", Path(src).name)  # it wrote to a temporary beside the target
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle_mod.os, "replace", replace_fails)
    with pytest.raises(OSError, match="No space left on device"):
        write_bundle(path, manifest={"v": 2}, tensors={"w": torch.zeros(4)}, files={})

    assert [p.name for p in tmp_path.iterdir()] == ["model.bundle"]
    assert path.read_bytes() == before
