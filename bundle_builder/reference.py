"""Golden outputs computed by the plain reference libraries on the SOURCE folder (never by our runtime).

feature-extraction  sentence-transformers' encode (or mean pooling over AutoModel when the folder is not ST)
text-classification transformers.pipeline("text-classification", top_k=None)
text-generation     model.generate, greedy, on the source model
"""

from __future__ import annotations

from typing import Any

from bundle_builder.sources import Source

DEFAULT_TEXTS = (
    "The new phone's battery lasts all day and the screen is gorgeous.",
    "I waited an hour and the support team never answered my question.",
    "Lambda functions load the model once and answer many requests.",
)
DEFAULT_PROMPTS = ("The capital of France is", "Once upon a time, there was", "def add(a, b):")
GOLDEN_NEW_TOKENS = 8


def golden_examples(
    source: Source, model: Any, tokenizer: Any, *, multi_label: bool, max_length: int
) -> list[dict[str, Any]]:
    """[{"input", "parameters", "output"}, ...] for the source model."""
    if source.task == "feature-extraction":
        return [
            {"input": t, "parameters": {}, "output": o}
            for t, o in zip(DEFAULT_TEXTS, _embeddings(source, model, tokenizer, max_length))
        ]
    if source.task == "text-classification":
        return [
            {"input": t, "parameters": {}, "output": o}
            for t, o in zip(DEFAULT_TEXTS, _classify(source, multi_label, max_length))
        ]
    # explicit greedy settings: a source whose generation_config asks for beams or sampling still has one answer
    params = {"max_new_tokens": GOLDEN_NEW_TOKENS, "do_sample": False, "num_beams": 1}
    return [{"input": t, "parameters": params, "output": _generate(model, tokenizer, t)} for t in DEFAULT_PROMPTS]


def _embeddings(source: Source, model: Any, tokenizer: Any, max_length: int) -> list[list[float]]:
    import torch

    if source.sentence_transformers:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(source.path), device="cpu", local_files_only=True)
        st.max_seq_length = max_length
        return st.encode(list(DEFAULT_TEXTS), convert_to_numpy=True).tolist()
    enc = tokenizer(list(DEFAULT_TEXTS), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).tolist()


def _classify(source: Source, multi_label: bool, max_length: int) -> list[list[dict[str, Any]]]:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(source.path), tokenizer=str(source.path), device="cpu")
    kwargs: dict[str, Any] = {"top_k": None, "truncation": True, "max_length": max_length}
    if multi_label:
        kwargs["function_to_apply"] = "sigmoid"
    return [[{"label": d["label"], "score": float(d["score"])} for d in pipe(t, **kwargs)] for t in DEFAULT_TEXTS]


def _generate(model: Any, tokenizer: Any, prompt: str) -> dict[str, Any]:
    import torch

    enc = tokenizer(prompt, return_tensors="pt")
    pad = model.generation_config.pad_token_id
    if pad is None:  # the runtime pads with the tokenizer's pad, else eos (see build._manifest)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=GOLDEN_NEW_TOKENS, do_sample=False, num_beams=1, pad_token_id=pad)
    new = out[0] if model.config.is_encoder_decoder else out[0, enc["input_ids"].shape[1] :]
    return {"generated_text": tokenizer.decode(new, skip_special_tokens=True)}
