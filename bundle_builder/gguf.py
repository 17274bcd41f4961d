"""GGUF file -> plain model folder (fp32 safetensors + tokenizer + chat template + generation_config).

transformers reads GGUF itself (`from_pretrained(folder, gguf_file=name)`) and dequantises every tensor to fp32 while
loading; this module only checks the file, picks the model class and writes what it read with `save_pretrained`, so
the normal folder builder runs on the result. Quantisation is not kept: the bundle holds ordinary float weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bundle_builder.errors import SourceError

GGUF_MAGIC = b"GGUF"


def convert_gguf(
    gguf_file: str | os.PathLike[str], out_folder: str | os.PathLike[str], *, progress: bool = False
) -> Path:
    """Dequantise a GGUF file into a folder that `build_bundle` reads like any save_pretrained folder.

    Args:
        gguf_file: a `.gguf` file, in any quantisation transformers dequantises (F32, F16, Q4_0, Q4_1, Q8_0, K-quants).
        out_folder: where to write the folder (created; must not hold another model).
        progress: show transformers' dequantisation progress bars.

    Returns:
        out_folder, holding config.json, model.safetensors, generation_config.json and the tokenizer files.

    Raises:
        SourceError: the file is missing, not GGUF, or of an architecture transformers cannot read from GGUF.
    """
    path = Path(gguf_file)
    if not path.is_file():
        raise SourceError(f"GGUF file {path} does not exist or is not a file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise SourceError(f"{path} starts with {magic!r}, not {GGUF_MAGIC!r}: it is not a GGUF file")
    out = Path(out_folder)
    if (out / "config.json").exists():
        raise SourceError(f"{out} already holds a model (config.json); pass an empty or new folder")

    import torch
    import transformers

    with _quiet(not progress):
        where: dict[str, Any] = {
            "pretrained_model_name_or_path": str(path.parent),
            "gguf_file": path.name,
            "local_files_only": True,
        }
        try:
            config = transformers.AutoConfig.from_pretrained(**where)
            tokenizer = transformers.AutoTokenizer.from_pretrained(**where)
        except (ValueError, KeyError, OSError) as e:
            raise SourceError(
                f"{path}: transformers {transformers.__version__} cannot read this GGUF file ({e}); it reads the "
                "architectures listed in transformers.integrations.ggml.GGUF_CONFIG_MAPPING"
            ) from None
        auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
        if type(config) not in auto._model_mapping:
            raise SourceError(
                f"{path}: architecture {config.model_type!r} has no {auto.__name__} class; cannot generate text with it"
            )
        model = auto.from_pretrained(**where, config=config, dtype=torch.float32)

    # The weights are already plain fp32 tensors; drop the GGUF "quantisation" so the folder loads like any other.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    with _quiet(not progress):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


@contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Switch off transformers' progress bars, including the GGUF reader's own tqdm, for the duration."""
    if not quiet:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    original = gguf_utils.tqdm
    gguf_utils.tqdm = partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original
        if bars_were_on:
            hf_logging.enable_progress_bar()
