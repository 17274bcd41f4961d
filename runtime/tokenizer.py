"""Text -> padded tensors with the bundled fast tokenizer (the `tokenizers` library, no transformers import)."""

from __future__ import annotations

import numpy as np

from runtime.manifest import TokenizerManifest


class TextTokenizer:
    """Encodes a list of texts into one padded batch, truncated to the bundle's max length."""

    def __init__(self, tokenizer_json: bytes, spec: TokenizerManifest) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self._tok = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=spec.max_length)
        if spec.pad_id is not None:
            self._tok.enable_padding(pad_id=spec.pad_id, pad_token=spec.pad_token or "", direction=spec.padding_side)

    def encode(self, texts: list[str], *, add_special_tokens: bool = True) -> dict[str, np.ndarray]:
        """Returns the model inputs the model expects, each (B, T) int64."""
        encodings = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {
            name: np.asarray(columns[name], dtype=np.int64) for name in self.spec.model_input_names if name in columns
        }

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
