"""Text -> padded tensors with the bundled fast tokenizer (the `tokenizers` library, no transformers import)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.manifest import TokenizerManifest

Text = str | tuple[str, str]  # a text, or a (text, text_pair) pair


@dataclass(frozen=True)
class Encoded:
    arrays: dict[str, np.ndarray]  # the model inputs, each (B, T) int64
    truncated: list[int]  # indices of the texts that were cut at max_length


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

    def encode(
        self, texts: list[str], *, add_special_tokens: bool = True, truncate: bool = True
    ) -> dict[str, np.ndarray]:
        """Returns the model inputs the model expects, each (B, T) int64; cut at max_length unless `truncate` is
        false (then a text's length is its real token count, for a caller that refuses over-long texts)."""
        with nullcontext() if truncate else self._untruncated():
            encodings = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        return self._arrays(encodings)

    def encode_checked(self, texts: Sequence[Text], *, direction: str = "right") -> Encoded:
        """Like encode, cutting over-long texts on `direction` ("right" drops the end, "left" the start), and saying
        which texts were cut. A (text, text_pair) row is one pair, cut longest-first as transformers does."""
        with self._truncating(direction):
            encodings = self._tok.encode_batch(texts)
        return Encoded(self._arrays(encodings), [i for i, e in enumerate(encodings) if e.overflowing])

    def _arrays(self, encodings: list[Any]) -> dict[str, np.ndarray]:
        """The model inputs the model takes (spec.model_input_names), each (B, T) int64."""
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {
            name: np.asarray(columns[name], dtype=np.int64) for name in self.spec.model_input_names if name in columns
        }

    def count_tokens(self, text: Text) -> int:
        """Tokens of `text` (or a pair) with special tokens and without truncation."""
        with self._untruncated():
            return len((self._tok.encode(*text) if isinstance(text, tuple) else self._tok.encode(text)).ids)

    def prompt_tokens(self, prompt: str) -> int:
        """A prompt's token count as sentence-transformers measures it: encoded alone, without a trailing special
        token (what include_prompt=False leaves out of pooling)."""
        with self._untruncated():
            encoding = self._tok.encode(prompt)
        trailing_special = bool(encoding.special_tokens_mask) and encoding.special_tokens_mask[-1] == 1
        return len(encoding.ids) - int(trailing_special)

    @contextmanager
    def _truncating(self, direction: str) -> Iterator[None]:
        if direction == "right":
            yield
            return
        self._tok.enable_truncation(max_length=self.spec.max_length, direction=direction)
        try:
            yield
        finally:
            self._tok.enable_truncation(max_length=self.spec.max_length)

    @contextmanager
    def _untruncated(self) -> Iterator[None]:
        self._tok.no_truncation()
        try:
            yield
        finally:
            self._tok.enable_truncation(max_length=self.spec.max_length)

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def special_ids(self) -> set[int]:
        """Ids of the tokenizer's special tokens (those decode(skip_special_tokens=True) drops)."""
        return {i for i, token in self._tok.get_added_tokens_decoder().items() if token.special}

    @property
    def backend(self) -> Any:
        """The `tokenizers.Tokenizer` itself: its vocabulary, model and decoder, for tasks that read tokens back."""
        return self._tok

    def encode_windows(
        self, texts: list[str], *, stride: int | None = None
    ) -> tuple[list[list[Any]], dict[str, np.ndarray]]:
        """Each text's `tokenizers.Encoding`s (ids, character offsets, special_tokens_mask), and the model inputs of
        all of them in that order, each (rows, T) int64, padded to the longest.

        Without a stride a text has one encoding, cut at max_length (its `overflowing` is not empty when it was cut).
        With one, windows of max_length tokens cover the whole text, each repeating the last `stride` tokens of the
        one before, as transformers cuts them with return_overflowing_tokens=True. The stride must be less than
        max_length minus the special tokens of a window (the tokenizers library panics otherwise)."""
        self._tok.enable_truncation(max_length=self.spec.max_length, stride=stride or 0)
        try:
            encodings = self._tok.encode_batch(texts)
        finally:
            self._tok.enable_truncation(max_length=self.spec.max_length)
        windows = [[e, *e.overflowing] if stride is not None else [e] for e in encodings]
        return windows, self._arrays([w for text in windows for w in text])

    def encode_pairs(self, pairs: Sequence[tuple[str, str]], *, strategy: str = "longest_first") -> Encoded:
        """(text, text_pair) rows cut at max_length with tokenizers' `strategy` ("only_first" cuts the text and never
        its pair, as transformers' zero-shot pipeline does). Raises ValueError when a row cannot be cut to fit (its
        pair alone is too long for only_first)."""
        self._tok.enable_truncation(max_length=self.spec.max_length, strategy=strategy)
        try:
            encodings = self._tok.encode_batch(list(pairs))
        except Exception as e:  # tokenizers raises a bare Exception ("Sequence to truncate too short ...")
            raise ValueError(str(e)) from None
        finally:
            self._tok.enable_truncation(max_length=self.spec.max_length)
        return Encoded(self._arrays(encodings), [i for i, e in enumerate(encodings) if e.overflowing])

    def token_to_id(self, token: str) -> int | None:
        """The id of a token of the vocabulary or an added token (what transformers' get_vocab() holds), else None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)
