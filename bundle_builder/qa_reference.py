"""question-answering golden answers: transformers 4.57's QuestionAnsweringPipeline, ported line for line.

transformers 5 removed pipeline("question-answering"); this is the last release's algorithm (fast tokenizers only)
on the source folder's transformers 5 tokenizer and torch model:

    (question, context) -> tokenizer(question, context, truncation="only_second", stride=doc_stride,
                                     return_overflowing_tokens=True)       one window per span of the context
                        -> model, one window at a time                      start and end logits (1, T) each
                        -> select_starts_ends / decode_spans per window     the best (start, end) token pairs
                        -> word_to_chars (align_to_words) or offsets        character spans in the context
                        -> answers of the same text merged, sorted by score, the first top_k

tests/test_task_question_answering.py proves this port equal to the 4.57 pipeline itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def pipeline_tokenizer(folder: Path, tokenizer: Any) -> Any:
    """The tokenizer the 4.57 pipeline reads: the folder's own tokenizer.json as it is, with `tokenizer`'s special
    tokens and settings; `tokenizer` itself when the folder has no tokenizer.json.

    transformers 5 rebuilds some tokenizers from their class instead of loading tokenizer.json (XLM-R: WhitespaceSplit
    before Metaspace, so a word's offsets leave out the space before it, where 4.57's include it, and the 4.57
    pipeline's answers with it); 4.57 loads the file unchanged.
    """
    import transformers
    from tokenizers import Tokenizer

    file = folder / "tokenizer.json"
    if not file.is_file():
        return tokenizer
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(file)),
        **tokenizer.special_tokens_map,
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        truncation_side=tokenizer.truncation_side,
        model_input_names=tokenizer.model_input_names,
    )


def question_answer(
    model: Any,
    tokenizer: Any,
    question: str,
    context: str,
    *,
    top_k: int = 1,
    doc_stride: int | None = None,
    max_answer_len: int = 15,
    max_seq_len: int | None = None,
    max_question_len: int = 64,  # the pipeline takes it, and only its slow-tokenizer path reads it
    handle_impossible_answer: bool = False,
    align_to_words: bool = True,
) -> dict[str, Any] | list[dict[str, Any]]:
    """The pipeline's answer to one question: {"score", "start", "end", "answer"}, or a list of them unless exactly
    one answer is left (the pipeline returns a lone answer as a dict even when top_k > 1).

    Raises:
        ValueError: top_k or max_answer_len below 1, or doc_stride larger than max_seq_len (the pipeline's checks).
    """
    import torch

    if top_k < 1:
        raise ValueError(f"top_k parameter should be >= 1 (got {top_k})")
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len parameter should be >= 1 (got {max_answer_len}")
    if max_seq_len is None:
        max_seq_len = min(tokenizer.model_max_length, 384)
    if doc_stride is None:
        doc_stride = min(max_seq_len // 2, 128)
    if doc_stride > max_seq_len:
        raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")

    # preprocess: one feature per window of the context
    question_first = tokenizer.padding_side == "right"
    encoded = tokenizer(
        text=question if question_first else context,
        text_pair=context if question_first else question,
        padding="do_not_pad",
        truncation="only_second" if question_first else "only_first",
        max_length=max_seq_len,
        stride=doc_stride,
        return_token_type_ids=True,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    num_spans = len(encoded["input_ids"])
    # p_mask: 1 for tokens that cannot be in the answer (question and special tokens), 0 for the context's
    p_mask = [
        [tok != 1 if question_first else 0 for tok in encoded.sequence_ids(span_id)] for span_id in range(num_spans)
    ]
    names = [n for n in tokenizer.model_input_names if n in encoded]
    min_null_score = 1000000.0  # large and positive
    answers: list[dict[str, Any]] = []
    for span_idx in range(num_spans):
        ids = encoded["input_ids"][span_idx]
        if tokenizer.cls_token_id is not None:  # keep the cls token unmasked (some models answer "impossible" there)
            for cls_index in np.nonzero(np.array(ids) == tokenizer.cls_token_id)[0]:
                p_mask[span_idx][cls_index] = 0
        inputs = {n: torch.tensor(encoded[n][span_idx]).unsqueeze(0) for n in names}
        with torch.inference_mode():
            out = model(**inputs)
        start, end = out.start_logits.float(), out.end_logits.float()  # (1, T)
        attention_mask = inputs["attention_mask"].numpy() if "attention_mask" in inputs else None
        pre_topk = top_k * 2 + 10 if align_to_words else top_k  # some candidates may be deleted if aligned to words
        starts, ends, scores, min_null_score = select_starts_ends(
            start.numpy(),
            end.numpy(),
            torch.tensor(p_mask[span_idx]).unsqueeze(0).numpy(),
            attention_mask,
            min_null_score,
            pre_topk,
            handle_impossible_answer,
            max_answer_len,
        )
        enc = encoded[span_idx]  # the tokenizers Encoding of this window (never padded: no offset to remove)
        sequence_index = 1 if question_first else 0
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = get_indices(enc, int(s), int(e), sequence_index, align_to_words)
            target = context[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if same:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


def select_starts_ends(
    start: np.ndarray,
    end: np.ndarray,
    p_mask: np.ndarray,
    attention_mask: np.ndarray | None,
    min_null_score: float,
    top_k: int,
    handle_impossible_answer: bool,
    max_answer_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Softmax of the window's start and end logits over its context (and cls) tokens, then decode_spans."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)  # despite the name: 1 where a token may be in the answer
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # mask cls
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The topk (start, end) token pairs by start * end probability, end >= start, at most max_answer_len tokens."""
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))  # (1, T, T)
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = np.array([np.argmax(scores_flat)])
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    # as the pipeline: isin against nonzero()'s (rows, columns) tuple, so token 0 always counts as desired
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def get_indices(enc: Any, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """The answer's character span in its text: the whole words of tokens s and e, or the tokens' own offsets."""
    if align_to_words:
        try:
            start_word = enc.token_to_word(s)
            end_word = enc.token_to_word(e)
            start_index = enc.word_to_chars(start_word, sequence_index=sequence_index)[0]
            end_index = enc.word_to_chars(end_word, sequence_index=sequence_index)[1]
        except Exception:  # as the pipeline: "some tokenizers don't really handle words"; keep to offsets then
            start_index = enc.offsets[s][0]
            end_index = enc.offsets[e][1]
    else:
        start_index = enc.offsets[s][0]
        end_index = enc.offsets[e][1]
    return start_index, end_index
