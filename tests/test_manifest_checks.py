"""The manifest is checked against the model at init: labels vs logits, max_length vs positions, golden examples
present (or an explicit --no-golden), and every malformed header or manifest field is a BundleError naming it.

Each bundle here is a real tiny bundle whose header JSON was rewritten and rehashed (support.rehash_header): the
content hash passes, so only the changed field is wrong.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.bundle import read_bundle
from runtime.errors import BundleCorruptError, BundleError
from runtime.predictor import Predictor
from runtime.settings import Settings
from support import new_function, rehash_header

Mutate = Callable[[dict[str, Any]], None]


def tampered(src: Path, tmp_path: Path, mutate: Mutate, name: str = "tampered.bundle") -> Path:
    out = tmp_path / name
    out.write_bytes(rehash_header(src.read_bytes(), mutate))
    return out


def manifest_update(**values: Any) -> Mutate:
    return lambda h: h["manifest"].update(values)


def load(path: Path, **settings: Any) -> Predictor:
    return Predictor.load(Settings(model_bundle=str(path), device="cpu", num_threads=1, **settings))


# --- labels vs logits -----------------------------------------------------------------------------------------------

ENGINES = {  # id -> (bundle engine, settings)
    "torch-native": ("torch", {}),
    "torch-transformers": ("torch", {"torch_implementation": "transformers"}),
    "onnxruntime": ("onnxruntime", {}),
}


@pytest.mark.parametrize("engine", list(ENGINES), ids=list(ENGINES))
@pytest.mark.parametrize(
    "labels", [["negative", "neutral"], ["negative", "neutral", "positive", "extra"]], ids=["fewer", "more"]
)
def test_label_count_must_equal_the_logits(tiny_bundle, tmp_path: Path, engine: str, labels: list[str]) -> None:
    built, settings = ENGINES[engine]
    path = tampered(tiny_bundle("bert", engine=built), tmp_path, manifest_update(labels=labels))

    with pytest.raises(BundleCorruptError) as info:
        load(path, **settings)

    assert str(info.value) == (
        f"{path}: manifest field 'labels' must name one label per logit: the model's classifier outputs 3, "
        f"got {labels!r}; rebuild the bundle with bundle_builder"
    )


def test_labels_that_match_the_logits_load(tiny_bundle) -> None:
    assert load(tiny_bundle("bert")).task.labels == ["negative", "neutral", "positive"]


# --- max_length vs position embeddings ------------------------------------------------------------------------------

# kind -> (config.json max_position_embeddings, usable positions): RoBERTa's positions start after padding_idx
POSITIONS = {"bert": (64, 64), "roberta": (66, 64)}


@pytest.mark.parametrize("field", ["max_length", "tokenizer.max_length"])
@pytest.mark.parametrize("kind", list(POSITIONS))
def test_max_length_beyond_the_position_embeddings_is_refused(
    tiny_bundle, tmp_path: Path, kind: str, field: str
) -> None:
    stored, usable = POSITIONS[kind]
    src = tiny_bundle(kind)
    assert read_bundle(src).manifest["max_length"] == usable  # the builder's own cap: it loads
    load(src)

    def longer(h: dict[str, Any]) -> None:
        node = h["manifest"]
        *parents, key = field.split(".")
        for parent in parents:
            node = node[parent]
        node[key] = usable + 1

    path = tampered(src, tmp_path, longer)
    with pytest.raises(BundleCorruptError) as info:
        load(path)

    offset = f" less 2 (the padding offset of {kind})" if stored != usable else ""
    assert str(info.value) == (
        f"{path}: manifest field {field!r} must be at most {usable}, the positions the model has (config.json "
        f"max_position_embeddings {stored}{offset}), got {usable + 1}; rebuild the bundle with bundle_builder "
        f"(--max-length {usable} at most)"
    )


# --- golden examples ------------------------------------------------------------------------------------------------


def test_a_bundle_without_golden_examples_is_refused(tiny_bundle, tmp_path: Path) -> None:
    path = tampered(tiny_bundle("bert"), tmp_path, manifest_update(golden=[]))

    with pytest.raises(BundleCorruptError) as info:
        new_function(path, DEVICE="cpu", CANARY="false")

    assert str(info.value) == (
        f"{path}: manifest field 'golden' must hold the examples the init canary and `bundle_builder verify` "
        "replay, got []; rebuild the bundle with bundle_builder (it stores them), or build it with --no-golden "
        "to go without them on purpose"
    )


def test_no_golden_is_an_explicit_build_flag_that_inspect_shows(
    tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bundle_builder.cli import main

    out = tmp_path / "no-golden.bundle"
    argv = ["build", str(tiny_model("bert")), "-o", str(out), "--engine", "torch", "--no-budget", "--quiet"]
    assert main([*argv, "--no-golden"]) == 0
    printed = capsys.readouterr().out
    assert (
        "verified 3 golden examples: " in printed and "; the bundle keeps none (--no-golden: no init canary)" in printed
    )

    manifest = read_bundle(out).manifest
    assert manifest["golden"] == [] and manifest["no_golden"] is True
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["no_golden"] is True
    assert main(["inspect", str(out)]) == 0
    assert "  golden examples  none: built with --no-golden (no init canary)" in capsys.readouterr().out.splitlines()

    fn = new_function(out, DEVICE="cpu", NUM_THREADS="1")  # the canary is on, with nothing to replay
    assert fn.canary is not None and fn.canary.describe() == "no golden examples (built with --no-golden)"
    assert [d["label"] for d in fn.predictor.predict(["fine"]).outputs[0]] != []


def test_the_opt_out_flag_is_checked_like_any_field(tiny_bundle, tmp_path: Path) -> None:
    path = tampered(tiny_bundle("bert"), tmp_path, manifest_update(golden=[], no_golden="yes"))
    with pytest.raises(BundleCorruptError, match=r"manifest field 'no_golden' must be true or false, got 'yes'"):
        load(path)


# --- fuzz: every header and manifest field removed, of the wrong type, or of a wrong value --------------------------

Path_ = tuple[str | int, ...]
FREE_FORM = {("manifest", "versions")}  # records shown by inspect: any JSON object is fine


def leaves(node: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Every field of the header (dict keys and list items), parents before children; one golden example."""
    if path:
        yield path
    if path in FREE_FORM:
        return
    if isinstance(node, dict):
        if path == ("tensors",) or path == ("files",):  # one entry stands for all: the classifier's and two files
            node = {k: v for k, v in node.items() if k in ("classifier.weight", "config.json", "tokenizer.json")}
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:1] if path == ("manifest", "golden") else node[:2]):
            yield from leaves(value, (*path, i))


def named(path: Path_) -> str:
    """What the error message must contain: a manifest field's dotted path (cut at the first list, or after the
    golden example's index), a header entry's name, or the header key."""
    if path[0] == "manifest" and len(path) > 1:
        dotted = ""
        for part in path[1:]:
            if isinstance(part, int):
                if dotted != "golden":
                    break
                return f"'golden[{part}]"  # 'golden[0]' or 'golden[0].output' ...
            dotted = f"{dotted}.{part}" if dotted else part
        return f"'{dotted}'"
    if path[0] in ("tensors", "files") and len(path) > 1:
        return str(path[1])
    return str(path[0])


def wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return {"a": 1}
    if isinstance(value, dict):
        return [1]
    return 7  # null


WRONG_VALUES: dict[Path_, Any] = {
    ("format",): "safetensors",
    ("format_version",): 2,
    ("manifest", "task"): "summarization",
    ("manifest", "dtype"): "float64",
    ("manifest", "engine"): "tensorflow",
    ("manifest", "engines"): ["tensorflow"],
    ("manifest", "max_length"): 10**6,
    ("manifest", "tokenizer", "max_length"): 0,
    ("manifest", "tokenizer", "pad_id"): 10**6,
    ("manifest", "tokenizer", "padding_side"): "middle",
    ("manifest", "tokenizer", "model_input_names"): ["pixel_values"],
    ("manifest", "labels"): ["only"],
    ("manifest", "golden"): [],
    ("manifest", "golden", 0, "input"): {"text": "a"},
    ("manifest", "golden", 0, "parameters"): {"no_such_parameter": 1},
    ("manifest", "golden", 0, "output"): [{"label": "negative"}],
    ("manifest", "golden", 0, "output", 0, "label"): "no-such-label",
    ("manifest", "num_parameters"): -1,
    ("tensors", "classifier.weight", "shape"): [3, 31],
    ("files", "config.json", "nbytes"): 10**9,
}


def cases(header: dict[str, Any]) -> Iterator[tuple[str, Path_, str, Any]]:
    for path in leaves(header):
        if not isinstance(path[-1], int):
            yield "removed", path, "removed", None
        yield "wrong-type", path, "wrong-type", None
    for path, value in WRONG_VALUES.items():
        yield "wrong-value", path, "wrong-value", value


def _header(bundle: Path) -> dict[str, Any]:
    raw = bundle.read_bytes()
    return json.loads(raw[24 : 24 + int.from_bytes(raw[16:24], "little")])


@pytest.fixture(scope="module")
def fuzz_source(tiny_bundle) -> tuple[Path, dict[str, Any]]:
    bundle = tiny_bundle("bert")
    return bundle, _header(bundle)


def _apply(header: dict[str, Any], path: Path_, how: str, value: Any) -> None:
    node = header
    for part in path[:-1]:
        node = node[part]
    key = path[-1]
    if how == "removed":
        del node[key]
    elif how == "wrong-type":
        node[key] = wrong_type(node[key])
    else:
        node[key] = value


def test_every_malformed_field_is_a_bundle_error_that_names_it(fuzz_source, tmp_path: Path) -> None:
    src, header = fuzz_source
    outcomes: dict[str, str] = {}
    failures: list[str] = []
    for how, path, _, value in cases(header):
        case = f"{how} {'.'.join(map(str, path))}"
        mutated = copy.deepcopy(header)
        _apply(mutated, path, how, value)
        bundle = tmp_path / "fuzzed.bundle"
        bundle.write_bytes(rehash_header(src.read_bytes(), lambda h, m=mutated: (h.clear(), h.update(m))))
        try:
            fn = new_function(bundle, DEVICE="cpu", NUM_THREADS="1")
            fn.predictor.predict(["a short text", "and a second, longer text to pad the first one"])
        except BundleError as e:
            outcomes[case] = f"{type(e).__name__}: {e}"
            if named(path) not in str(e):
                failures.append(f"{case}: {type(e).__name__} does not name {named(path)}: {e}")
        except Exception as e:  # noqa: BLE001 - the point: nothing but a BundleError may come out
            failures.append(f"{case}: raw {type(e).__name__}: {e}")
        else:
            outcomes[case] = "loaded"
            if how != "removed":  # an optional field may be left out; a wrong one never passes
                failures.append(f"{case}: loaded and served")
    assert not failures, "\n".join(failures)
    assert len(outcomes) > 100  # the walk reached the whole header


def test_an_embedding_bundle_without_golden_examples_still_takes_dimensions(tiny_model, tmp_path: Path) -> None:
    from bundle_builder.build import build_bundle

    source = tiny_model("bert", task="feature-extraction")
    with_golden, without = tmp_path / "golden.bundle", tmp_path / "none.bundle"
    build_bundle(source, with_golden, task="feature-extraction", engine="torch")
    build_bundle(source, without, task="feature-extraction", engine="torch", no_golden=True)
    full = new_function(with_golden, DEVICE="cpu").predictor.predict(["fine"]).outputs[0]
    fn = new_function(without, DEVICE="cpu")
    assert fn.predictor.task.dimensions == len(full)  # the width the golden output would have given
    assert len(fn.predictor.predict(["fine"], {"dimensions": 4}).outputs[0]) == 4
