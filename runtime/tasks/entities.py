"""Tokens -> entities as transformers 5.24's TokenClassificationPipeline makes them, in numpy and the tokenizers library.

The functions keep the pipeline's names and steps so that the two read side by side:
    gather_pre_entities   each non-special token: its scores, offsets, token string, whether it continues a word
    aggregate             "none"/"simple": a label per token; "first"/"average"/"max": a label per word
                          (aggregate_words); then, unless "none", adjacent tokens or words grouped (group_entities)
    aggregate_overlapping_entities
                          a text read in several windows (stride): of overlapping entities, the longer (then the
                          higher-scoring) one stays
Scores stay float32 numpy values throughout, as in the pipeline, and become Python numbers only in the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STRATEGIES = ("none", "simple", "first", "average", "max")


@dataclass(frozen=True)
class Vocabulary:
    """What the pipeline asks of its tokenizer: a token's string (convert_ids_to_tokens), tokens joined into text
    (convert_tokens_to_string), the unknown token's id, and whether the model marks word continuations (WordPiece's
    "##": the backend model's continuing_subword_prefix)."""

    tokenizer: Any  # tokenizers.Tokenizer
    decoder: Any  # its decoder, or None
    unk_token_id: int | None
    word_aware: bool

    @classmethod
    def of(cls, tokenizer: Any, unk_token_id: int | None) -> Vocabulary:
        prefix = getattr(tokenizer.model, "continuing_subword_prefix", None)  # Unigram models have none
        return cls(tokenizer, tokenizer.decoder, unk_token_id, bool(prefix))

    def token(self, token_id: int) -> str:
        return str(self.tokenizer.id_to_token(token_id))

    def join(self, tokens: list[str]) -> str:
        return str(self.decoder.decode(tokens)) if self.decoder is not None else " ".join(tokens)


def find_entities(
    sentence: str,
    windows: list[Any],
    logits: np.ndarray,
    vocab: Vocabulary,
    labels: list[str],
    strategy: str,
    ignore_labels: list[str],
) -> list[dict[str, Any]]:
    """The pipeline's postprocess for one text: windows (tokenizers.Encodings) and their logits (W, T, labels)."""
    found: list[dict[str, Any]] = []
    for encoding, window_logits in zip(windows, logits):
        shifted_exp = np.exp(window_logits - window_logits.max(axis=-1, keepdims=True))
        scores = shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)  # (T, labels) float32
        pre_entities = gather_pre_entities(sentence, encoding, scores, vocab)
        found.extend(
            e
            for e in aggregate(pre_entities, strategy, vocab, labels)
            if e.get("entity") not in ignore_labels and e.get("entity_group") not in ignore_labels
        )
    if len(windows) > 1:
        found = aggregate_overlapping_entities(found)
    return [{k: float(v) if k == "score" else v for k, v in e.items()} for e in found]


def gather_pre_entities(sentence: str, encoding: Any, scores: np.ndarray, vocab: Vocabulary) -> list[dict[str, Any]]:
    pre_entities = []
    for idx, (token_id, (start, end), special) in enumerate(
        zip(encoding.ids, encoding.offsets, encoding.special_tokens_mask)
    ):
        if special:  # [CLS], [SEP], padding
            continue
        word = vocab.token(token_id)
        word_ref = sentence[start:end]
        if vocab.word_aware:
            is_subword = len(word) != len(word_ref)  # "##ing" is longer than the "ing" it covers
        else:  # the pipeline's fallback: a token not preceded by a space continues a word
            is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
        if token_id == vocab.unk_token_id:
            word = word_ref
            is_subword = False
        pre_entities.append(
            {"word": word, "scores": scores[idx], "start": start, "end": end, "index": idx, "is_subword": is_subword}
        )
    return pre_entities


def aggregate(
    pre_entities: list[dict[str, Any]], strategy: str, vocab: Vocabulary, labels: list[str]
) -> list[dict[str, Any]]:
    if strategy in ("none", "simple"):
        entities = []
        for pre_entity in pre_entities:
            entity_idx = int(pre_entity["scores"].argmax())
            entities.append(
                {
                    "entity": labels[entity_idx],
                    "score": pre_entity["scores"][entity_idx],
                    "index": pre_entity["index"],
                    "word": pre_entity["word"],
                    "start": pre_entity["start"],
                    "end": pre_entity["end"],
                }
            )
    else:
        entities = aggregate_words(pre_entities, strategy, vocab, labels)
    if strategy == "none":
        return entities
    return group_entities(entities, vocab)


def aggregate_word(entities: list[dict[str, Any]], strategy: str, vocab: Vocabulary, labels: list[str]) -> dict:
    word = vocab.join([entity["word"] for entity in entities])
    if strategy == "first":
        scores = entities[0]["scores"]
    elif strategy == "max":
        scores = max(entities, key=lambda entity: entity["scores"].max())["scores"]  # the first of equal maxima
    else:  # average
        scores = np.nanmean(np.stack([entity["scores"] for entity in entities]), axis=0)
    idx = int(scores.argmax())
    return {
        "entity": labels[idx],
        "score": scores[idx],
        "word": word,
        "start": entities[0]["start"],
        "end": entities[-1]["end"],
    }


def aggregate_words(
    entities: list[dict[str, Any]], strategy: str, vocab: Vocabulary, labels: list[str]
) -> list[dict[str, Any]]:
    """Tokens of one word (a token and the subwords after it) take one label, so words never split."""
    word_entities = []
    word_group: list[dict[str, Any]] | None = None
    for entity in entities:
        if word_group is None:
            word_group = [entity]
        elif entity["is_subword"]:
            word_group.append(entity)
        else:
            word_entities.append(aggregate_word(word_group, strategy, vocab, labels))
            word_group = [entity]
    if word_group is not None:
        word_entities.append(aggregate_word(word_group, strategy, vocab, labels))
    return word_entities


def group_sub_entities(entities: list[dict[str, Any]], vocab: Vocabulary) -> dict[str, Any]:
    scores = np.nanmean([entity["score"] for entity in entities])
    return {
        "entity_group": entities[0]["entity"].split("-", 1)[-1],
        "score": np.mean(scores),
        "word": vocab.join([entity["word"] for entity in entities]),
        "start": entities[0]["start"],
        "end": entities[-1]["end"],
    }


def get_tag(entity_name: str) -> tuple[str, str]:
    """("B" | "I", tag): a label without a B-/I- prefix counts as a continuation."""
    if entity_name.startswith("B-"):
        return "B", entity_name[2:]
    if entity_name.startswith("I-"):
        return "I", entity_name[2:]
    return "I", entity_name


def group_entities(entities: list[dict[str, Any]], vocab: Vocabulary) -> list[dict[str, Any]]:
    """Adjacent tokens (or words) of one tag join a group; a B- label always starts a new one."""
    entity_groups = []
    entity_group_disagg: list[dict[str, Any]] = []
    for entity in entities:
        if not entity_group_disagg:
            entity_group_disagg.append(entity)
            continue
        bi, tag = get_tag(entity["entity"])
        _, last_tag = get_tag(entity_group_disagg[-1]["entity"])
        if tag == last_tag and bi != "B":
            entity_group_disagg.append(entity)
        else:
            entity_groups.append(group_sub_entities(entity_group_disagg, vocab))
            entity_group_disagg = [entity]
    if entity_group_disagg:
        entity_groups.append(group_sub_entities(entity_group_disagg, vocab))
    return entity_groups


def aggregate_overlapping_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])  # stable: windows' order among equal starts
    aggregated = []
    previous = entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            length = entity["end"] - entity["start"]
            previous_length = previous["end"] - previous["start"]
            if length > previous_length or (length == previous_length and entity["score"] > previous["score"]):
                previous = entity
        else:
            aggregated.append(previous)
            previous = entity
    aggregated.append(previous)
    return aggregated
