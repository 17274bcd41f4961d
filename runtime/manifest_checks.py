"""The manifest checked against the model it describes, at init: what the manifest's JSON alone cannot show.

    files       the bundle holds config.json and tokenizer.json (the builder always writes both)
    positions   max_length and tokenizer.max_length fit the model's position embeddings (config.json)
    pad_id      the padding token is a row of the token embeddings (config.json vocab_size)
    golden      there are golden examples to replay, unless the bundle was built with --no-golden

The label count is checked against the logits by the text-classification task, which owns the labels. Each refusal
is a BundleCorruptError that names the manifest field, what the model has, and how to rebuild.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runtime.bundle import Bundle
from runtime.errors import BundleCorruptError
from runtime.manifest import Manifest, field_error

REQUIRED_FILES = ("config.json", "tokenizer.json")
# model types whose position ids start after padding_idx (transformers' create_position_ids_from_input_ids), so two
# rows of the position embeddings are never used by a token
PADDING_OFFSET_TYPES = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "roberta-prelayernorm",
    "camembert",
    "data2vec-text",
    "longformer",
    "mpnet",
    "ibert",
)


def usable_positions(config: Mapping[str, Any]) -> tuple[int, str] | None:
    """The tokens a model can embed, from its config.json, and where that figure comes from; None when it names none.

    Returns:
        (positions, "config.json max_position_embeddings 514 less 2 (the padding offset of roberta)"), for example.
    """
    for key in ("max_position_embeddings", "n_positions"):
        stored = config.get(key)
        if isinstance(stored, int) and not isinstance(stored, bool) and stored > 0:
            source = f"config.json {key} {stored}"
            model_type = config.get("model_type")
            if model_type in PADDING_OFFSET_TYPES:
                return stored - 2, f"{source} less 2 (the padding offset of {model_type})"
            return stored, source
    return None


def check_manifest(bundle: Bundle, manifest: Manifest) -> dict[str, Any]:
    """Check the manifest against the bundle's files and config, before any engine is built.

    Returns:
        The bundled config.json.

    Raises:
        BundleCorruptError: a file is missing, config.json is not a JSON object, or a field does not fit the model.
    """
    where = str(bundle.path)
    missing = [name for name in REQUIRED_FILES if not bundle.has_file(name)]
    if missing:
        raise BundleCorruptError(
            f"{where} has a corrupt header: field 'files' lacks {missing} (it has {bundle.file_names}); "
            "rebuild the bundle with bundle_builder"
        )
    try:
        config = json.loads(bundle.read_file("config.json"))
    except ValueError as e:
        raise BundleCorruptError(f"{where}: config.json is not JSON ({e}); rebuild the bundle") from None
    if not isinstance(config, dict):
        raise BundleCorruptError(f"{where}: config.json is not a JSON object; rebuild the bundle")
    positions = usable_positions(config)
    if positions is not None:
        limit, source = positions
        for name, value in (
            ("max_length", manifest.max_length),
            ("tokenizer.max_length", manifest.tokenizer.max_length),
        ):
            if value > limit:
                raise field_error(
                    where,
                    name,
                    f"must be at most {limit}, the positions the model has ({source})",
                    value,
                    fix=f" (--max-length {limit} at most)",
                )
    vocab = config.get("vocab_size")
    pad_id = manifest.tokenizer.pad_id
    if pad_id is not None and isinstance(vocab, int) and pad_id >= vocab:
        raise field_error(
            where, "tokenizer.pad_id", f"must be a token id below the model's vocab_size {vocab} (config.json)", pad_id
        )
    if not manifest.golden and not manifest.no_golden:
        raise field_error(
            where,
            "golden",
            "must hold the examples the init canary and `bundle_builder verify` replay",
            [],
            fix=" (it stores them), or build it with --no-golden to go without them on purpose",
        )
    return config
