"""Tiny random models made sensitive to their input, for tests that compare rankings with a pipeline.

The tiny models' default init (std 0.02) gives a zero-shot classifier whose logits barely move with the input: every
candidate label scores 1/n within 1e-5, so any order is right within the score tolerance and a ranking proves
nothing. Redrawn with std 0.3, the same architecture and tokenizer answer with scores that differ by whole percents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SHARP_STD = 0.3


def sharpened(folder: Path, out: Path, *, seed: int = 0) -> Path:
    """A copy of the tiny model in `folder` with every matrix redrawn from N(0, SHARP_STD); written to `out`."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    auto = getattr(transformers, f"AutoModelFor{_head(config)}")
    model = auto.from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:  # weights and embeddings; LayerNorm and biases keep their init
                param.normal_(0.0, SHARP_STD)
    model.save_pretrained(out)
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(f, out / f.name)
    return out


def _head(config: object) -> str:
    arch = (getattr(config, "architectures", None) or [""])[0]
    return "MaskedLM" if arch.endswith("ForMaskedLM") else "SequenceClassification"
