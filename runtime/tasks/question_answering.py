"""question-answering (extractive): the answer's span in the context, as transformers' QuestionAnsweringPipeline
finds it (4.57, the last release that has it; 5 removed it).

    {"question", "context"} -> the pair, cut into windows of max_seq_len tokens that overlap by doc_stride
                               (only the context is cut; the question and special tokens are in every window)
                            -> engine, all windows of a pass together       stacked start/end logits (W, T, 2)
                            -> per window: softmax of the start and of the end logits over the context tokens
                               (and the cls token), the top (start, end) pairs by start * end, end - start + 1
                               <= max_answer_len
                            -> character spans in the context (the whole words of the two tokens when
                               align_to_words), answers of the same text (case-insensitive) merged by adding scores
                            -> {"score", "start", "end", "answer"}, or the top_k of them as a list

Every quirk of the pipeline is kept so that answers are equal to its answers: a lone answer is a dict even when
top_k > 1; token 0 always passes the pipeline's "is this token in the context" test (a spurious empty answer can
appear at score 0 when top_k asks for more spans than the context has); with handle_impossible_answer the "no
answer" score is the smallest of the windows' cls start * end probabilities; max_question_len is taken and, as
with the pipeline's fast tokenizers, changes nothing. Nothing is ever truncated: every window is read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import InvalidInputError, InvalidParametersError, PayloadTooLargeError
from runtime.golden import CLASSIFICATION_MAX_ABS, GoldenCheck, max_nested_diff
from runtime.loader import LoadedModel
from runtime.manifest import field_error
from runtime.settings import Settings
from runtime.tasks import Chunk
from runtime.tasks import params as p

KEYS = {"question", "context"}
PIPELINE_MAX_SEQ_LEN = 384  # the pipeline's window: min(384, the tokenizer's model_max_length)
PIPELINE_MAX_STRIDE = 128  # its overlap: min(max_seq_len // 2, 128)
MAX_TOP_K = 100  # the pipeline has no limit; each span it ranks costs work, and answers past 100 are noise
IMPOSSIBLE = -10000.0  # the logit the pipeline gives tokens outside the context


@dataclass(frozen=True)
class Window:
    encoding: Any  # the tokenizers Encoding of this window (offsets, words, sequence ids), unpadded
    allowed: np.ndarray  # (T_w,) bool: tokens that may start or end the answer (the context's and the cls token)


@dataclass(frozen=True)
class QABatch:
    # (windows, T) int64, padded on the right whatever the tokenizer's side: the pipeline pads nothing, and a padded
    # position is masked out of attention and never part of an answer
    arrays: dict[str, np.ndarray]
    windows: list[list[Window]]  # each input's windows, in the order of the rows
    contexts: list[str]


class QuestionAnsweringTask:
    name = "question-answering"
    length_buckets = True  # padding changes nothing: each window's softmax reads its own tokens only

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        from tokenizers import Tokenizer

        m = model.manifest
        where = str(model.bundle.path)
        config = dict(m.task_config)
        self.question_first = config.get("question_first")
        if not isinstance(self.question_first, bool):
            raise field_error(where, "task_config.question_first", "must be true or false", self.question_first)
        self.truncation_side = config.get("truncation_side")
        if self.truncation_side not in ("right", "left"):
            raise field_error(where, "task_config.truncation_side", "must be 'right' or 'left'", self.truncation_side)
        self.cls_token_id = config.get("cls_token_id")
        if self.cls_token_id is not None and (
            isinstance(self.cls_token_id, bool) or not isinstance(self.cls_token_id, int)
        ):
            raise field_error(where, "task_config.cls_token_id", "must be a token id or null", self.cls_token_id)
        self.engine = model.engine
        self.max_length = m.tokenizer.max_length
        self.default_seq_len = min(PIPELINE_MAX_SEQ_LEN, self.max_length)
        self.input_names = m.tokenizer.model_input_names
        self.pad_id = m.tokenizer.pad_id if m.tokenizer.pad_id is not None else 0
        self.max_rows = settings.max_batch_items  # windows per engine call: a long context has many
        # its own tokenizer: windows need truncation with a stride and the overflowing windows, never padding
        self._tok = Tokenizer.from_str(model.bundle.read_file("tokenizer.json").decode("utf-8"))
        self._tok.no_padding()
        self._tok.no_truncation()

    def check_inputs(self, inputs: list[Any]) -> None:
        for i, x in enumerate(inputs):
            if not (isinstance(x, dict) and set(x) == KEYS and all(isinstance(x[k], str) for k in KEYS)):
                if not isinstance(x, dict):
                    got = type(x).__name__
                elif set(x) != KEYS:
                    got = f"keys {sorted(map(str, x))}"
                else:  # the request layer also lets lists of texts through; the pipeline pairs them, one answer each
                    got = ", ".join(f"{k} as {type(x[k]).__name__}" for k in sorted(KEYS) if not isinstance(x[k], str))
                raise InvalidInputError(
                    f'"inputs"[{i}] must be {{"question": str, "context": str}} (a question-answering model), '
                    f"got {got}; several questions are a list of such objects"
                )

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = p.check(
            self.name,
            params,
            {
                "top_k": p.integer(1, MAX_TOP_K, why="answers per question"),
                "doc_stride": p.integer(0, why="tokens of overlap between windows of a long context"),
                "max_answer_len": p.integer(1, why="tokens in an answer"),
                "max_seq_len": p.integer(1, self.max_length, why="tokens in a window, at most the model's max length"),
                "max_question_len": p.integer(0, why="taken as the pipeline takes it; fast tokenizers ignore it"),
                "handle_impossible_answer": p.boolean,
                "align_to_words": p.boolean,
            },
        )
        seq = out.setdefault("max_seq_len", self.default_seq_len)
        stride = out.setdefault("doc_stride", min(seq // 2, PIPELINE_MAX_STRIDE))
        if stride > seq:  # the pipeline's check
            raise InvalidParametersError(
                f"parameter 'doc_stride' must be at most max_seq_len ({seq}), got {stride}: windows overlap by "
                "fewer tokens than they hold"
            )
        return out

    def preprocess(self, inputs: list[Any], params: dict[str, Any]) -> QABatch:
        windows = [self._windows(x["question"], x["context"], params) for x in inputs]
        encodings = [w.encoding for ws in windows for w in ws]
        width = max(len(e.ids) for e in encodings)
        columns = {
            "input_ids": [e.ids + [self.pad_id] * (width - len(e.ids)) for e in encodings],
            "attention_mask": [e.attention_mask + [0] * (width - len(e.ids)) for e in encodings],
            "token_type_ids": [e.type_ids + [0] * (width - len(e.ids)) for e in encodings],
        }
        arrays = {n: np.asarray(columns[n], dtype=np.int64) for n in self.input_names if n in columns}
        return QABatch(arrays, windows, [x["context"] for x in inputs])

    def _windows(self, question: str, context: str, params: dict[str, Any]) -> list[Window]:
        """The pair's windows as the pipeline's tokenizer call makes them (truncation only_second, or only_first
        when the context goes first; stride doc_stride; the overflowing windows after the first)."""
        seq, stride = params["max_seq_len"], params["doc_stride"]
        first, second = (question, context) if self.question_first else (context, question)
        whole = self._tok.encode(first, second)
        if len(whole.ids) > seq:
            context_side = 1 if self.question_first else 0
            kept = sum(1 for s in whole.sequence_ids if s != context_side)  # the question and the special tokens
            room = seq - kept
            if room <= 0:  # the tokenizer: "second sequence not long enough to be truncated"
                raise PayloadTooLargeError(
                    f"the question {_clip(question)} takes {kept} tokens with the special tokens, leaving no room "
                    f"for the context in windows of max_seq_len={seq} tokens; shorten the question or send a "
                    f"larger max_seq_len (at most {self.max_length})"
                )
            if stride >= room:  # the tokenizer would panic: the stride must be shorter than a window's context
                raise InvalidParametersError(
                    f"parameter 'doc_stride' must be less than the {room} context tokens that windows of "
                    f"max_seq_len={seq} leave beside this question ({kept} tokens with the special tokens), got "
                    f"{stride}; send a smaller doc_stride or a larger max_seq_len"
                )
            strategy = "only_second" if self.question_first else "only_first"
            self._tok.enable_truncation(seq, stride=stride, strategy=strategy, direction=self.truncation_side)
            try:
                cut = self._tok.encode(first, second)
            finally:
                self._tok.no_truncation()
            encodings = [cut, *cut.overflowing]
        else:
            encodings = [whole]
        return [Window(e, self._allowed(e)) for e in encodings]

    def _allowed(self, encoding: Any) -> np.ndarray:
        """The pipeline's 1 - p_mask: context tokens (every token when the context goes first), and the cls token."""
        ids = np.asarray(encoding.ids)
        if self.question_first:
            allowed = np.asarray([s == 1 for s in encoding.sequence_ids], dtype=bool)
        else:
            allowed = np.ones(len(ids), dtype=bool)
        if self.cls_token_id is not None:
            allowed |= ids == self.cls_token_id
        return allowed

    def forward(self, batch: QABatch, params: dict[str, Any]) -> np.ndarray:
        rows = len(batch.arrays["input_ids"])
        parts = [
            self.engine.run({n: a[s : s + self.max_rows] for n, a in batch.arrays.items()})
            for s in range(0, rows, self.max_rows)
        ]
        return np.concatenate(parts, axis=0)  # (windows, T, 2) start and end logits

    def postprocess(self, logits: np.ndarray, batch: QABatch, params: dict[str, Any]) -> Chunk:
        outputs: list[Any] = []
        row = 0
        for windows, context in zip(batch.windows, batch.contexts):
            outputs.append(self._answer(logits[row : row + len(windows)], windows, context, params))
            row += len(windows)
        tokens = int(batch.arrays["attention_mask"].sum()) if "attention_mask" in batch.arrays else None
        return Chunk(outputs, input_tokens=tokens)

    def _answer(self, logits: np.ndarray, windows: list[Window], context: str, params: dict[str, Any]) -> Any:
        top_k = params.get("top_k", 1)
        align = params.get("align_to_words", True)
        impossible = params.get("handle_impossible_answer", False)
        pre_topk = top_k * 2 + 10 if align else top_k  # aligning to words may merge some candidates
        sequence_index = 1 if self.question_first else 0
        null_score = 1000000.0  # the pipeline's "large and positive" start
        answers: list[dict[str, Any]] = []
        by_text: dict[str, dict[str, Any]] = {}  # the pipeline's get_answer: same text, case-insensitive
        for window, window_logits in zip(windows, logits):
            n = len(window.encoding.ids)
            start = _softmax(window_logits[:n, 0], window.allowed)  # (n,)
            end = _softmax(window_logits[:n, 1], window.allowed)
            if impossible:
                null_score = min(null_score, (start[0] * end[0]).item())
            start[0] = end[0] = 0.0  # token 0 (cls) never starts an answer
            for s, e, score in _best_spans(start, end, pre_topk, params.get("max_answer_len", 15), window.allowed):
                lo, hi = _char_span(window.encoding, s, e, sequence_index, align)
                text = context[lo:hi]
                same = by_text.get(text.lower())
                if same is not None:
                    same["score"] += score
                else:
                    by_text[text.lower()] = {"score": score, "start": lo, "end": hi, "answer": text}
                    answers.append(by_text[text.lower()])
        if impossible:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        """fp32: the answers as stored (texts and offsets exact, scores within 1e-4). Coarser (half-precision storage,
        bf16 compute on a GPU): the ranked scores only, since a near tie between two spans may flip."""
        if precision == "float32":
            return max_nested_diff(expected, actual, precision)
        worst = max((_ranked_score_diff(e, a) for e, a in zip(expected, actual)), default=0.0)
        limit = CLASSIFICATION_MAX_ABS[precision]
        return GoldenCheck("max_abs_diff", worst, limit, worst <= limit)


def _ranked_score_diff(expected: Any, actual: Any) -> float:
    """The largest score difference between the answers of the same rank (a different number is infinitely off)."""
    ranked = [[float(a["score"]) for a in (x if isinstance(x, list) else [x])] for x in (expected, actual)]
    if len(ranked[0]) != len(ranked[1]):
        return math.inf
    return max((abs(e - a) for e, a in zip(*ranked)), default=0.0)


def _softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over the allowed tokens, in float32 as the pipeline computes it (the others get exp(-10000) = 0)."""
    x = np.where(allowed, logits.astype(np.float32), np.float32(IMPOSSIBLE))
    x = np.exp(x - x.max())
    return x / x.sum()


def _best_spans(
    start: np.ndarray, end: np.ndarray, k: int, max_answer_len: int, allowed: np.ndarray
) -> list[tuple[int, int, float]]:
    """The pipeline's decode_spans: the k best (start, end) token pairs by start * end probability, with
    start <= end < start + max_answer_len, dropping pairs with a token outside the context."""
    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)  # (n, n)
    flat = candidates.flatten()
    if k == 1:
        order = np.array([np.argmax(flat)])
    elif len(flat) < k:
        order = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, k)[0:k]
        order = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(order, candidates.shape)
    # the pipeline tests membership in nonzero()'s (rows, columns) of a (1, n) mask: its row index 0 passes as token 0
    passes = allowed.copy()
    passes[0] = passes[0] or bool(allowed.any())
    keep = passes[starts] & passes[ends]
    return [(int(s), int(e), candidates[s, e].item()) for s, e in zip(starts[keep], ends[keep])]


def _char_span(encoding: Any, s: int, e: int, sequence_index: int, align: bool) -> tuple[int, int]:
    """Characters of tokens s..e in their text: from the start of s's word to the end of e's word when aligning
    (tokens without a word, such as special tokens, fall back to their own offsets, as in the pipeline)."""
    if align:
        try:
            return (
                encoding.word_to_chars(encoding.token_to_word(s), sequence_index=sequence_index)[0],
                encoding.word_to_chars(encoding.token_to_word(e), sequence_index=sequence_index)[1],
            )
        except TypeError:  # no word (None): word_to_chars refuses it, or finds no characters
            pass
    return encoding.offsets[s][0], encoding.offsets[e][1]


def _clip(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
