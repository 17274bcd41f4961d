"""The rerank row's model: a CrossEncoder folder derived from an encoder folder, its one-output head RANDOM.

No trained cross-encoder ships offline; the benchmark measures speed, for which the encoder's real weights and a
seeded random head serve as well as a trained one (the scores, all near 0.5, mean nothing). bench.bundles runs this
in a child process and caches the folder, keyed by this file's content.
"""

from __future__ import annotations

from pathlib import Path

SEED = 0  # torch.manual_seed before the random head is drawn, so every derivation gives the same weights


def derive_cross_encoder(encoder_folder: str | Path, out: str | Path) -> None:
    """A CrossEncoder folder from a sentence-transformers encoder folder: its BERT with a RANDOM one-output head.

    Args:
        encoder_folder: a save_pretrained folder of an encoder (all-MiniLM-L6-v2's).
        out: the folder to write, as `CrossEncoder.save` writes it (the builder reads it as text-classification).
    """
    import tempfile

    import torch
    import transformers
    from sentence_transformers import CrossEncoder

    torch.manual_seed(SEED)  # the head's weights are drawn here: classifier (1, hidden)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(encoder_folder), num_labels=1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(encoder_folder))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        CrossEncoder(tmp, device="cpu").save(str(out))
