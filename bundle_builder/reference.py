"""Golden outputs computed by the plain reference libraries on the SOURCE folder (never by our runtime).

feature-extraction  sentence-transformers' encode (or mean pooling over AutoModel when the folder is not ST)
text-classification transformers.pipeline("text-classification", top_k=None)
text-generation     model.generate, greedy, on the source model
token-classification, zero-shot-classification, fill-mask
                    transformers.pipeline(task) on the source folder, with the inputs and parameters of
                    pipeline_cases(task)
question-answering  transformers 4.57's QuestionAnsweringPipeline (5 removed it), ported in qa_reference.py, on the
                    source model and tokenizer, with the cases of pipeline_cases(task)
"""

from __future__ import annotations

import json
from typing import Any

from bundle_builder.sources import Source

DEFAULT_TEXTS = (
    "The new phone's battery lasts all day and the screen is gorgeous.",
    "I waited an hour and the support team never answered my question.",
    "Lambda functions load the model once and answer many requests.",
)
DEFAULT_PROMPTS = ("The capital of France is", "Once upon a time, there was", "def add(a, b):")
GOLDEN_NEW_TOKENS = 8
QA_MAX_SEQ_LEN = 384  # the question-answering pipeline's longest default window (runtime/tasks/question_answering.py)
PIPELINE_TASKS = ("token-classification", "zero-shot-classification", "question-answering", "fill-mask")
CONTEXT = (
    "Lambda functions load the model once when the container starts. Paris is the capital of France, "
    "and the Seine flows through it."
)


def pipeline_cases(task: str, tokenizer: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(input as a request sends it, parameters) of each golden example of a pipeline task."""
    if task == "token-classification":
        return [(t, {"aggregation_strategy": "simple"}) for t in DEFAULT_TEXTS[:2]] + [(DEFAULT_TEXTS[2], {})]
    if task == "zero-shot-classification":
        # the init canary replays the first example: one label passes under any MAX_CANDIDATE_LABELS
        labels = ["battery", "support", "cloud computing"]
        return [
            (DEFAULT_TEXTS[0], {"candidate_labels": labels[:1]}),
            (DEFAULT_TEXTS[1], {"candidate_labels": labels}),
            (DEFAULT_TEXTS[2], {"candidate_labels": labels, "multi_label": True}),
        ]
    if task == "question-answering":
        capital = {"question": "What is the capital of France?", "context": CONTEXT}
        when = {"question": "When do Lambda functions load the model?", "context": CONTEXT}
        long = {"question": "Which river flows through Paris?", "context": " ".join([CONTEXT] * 4)}
        return [
            (capital, {}),
            (when, {"top_k": 3, "doc_stride": 16}),  # tiny test vocabularies split questions into many tokens
            (long, {"max_seq_len": 64, "doc_stride": 16, "top_k": 2}),  # several windows, on any model
            (capital, {"handle_impossible_answer": True, "align_to_words": False, "max_answer_len": 4}),
        ]
    if task == "fill-mask":
        mask = tokenizer.mask_token
        return [(f"The capital of France is {mask}.", {}), (f"Lambda functions load the {mask} once.", {"top_k": 3})]
    raise ValueError(f"{task} is not a pipeline task")


def _pipeline_golden(source: Source, model: Any, tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    if source.task == "question-answering":
        return _qa_golden(model, tokenizer, max_length)
    import transformers

    make: Any = transformers.pipeline  # typed per literal task name; the task here is a variable
    pipe = make(task=source.task, model=str(source.path), tokenizer=str(source.path), device="cpu")
    examples = []
    for x, params in pipeline_cases(source.task, tokenizer):
        out = pipe(**x, **params) if isinstance(x, dict) else pipe(x, **params)
        examples.append({"input": x, "parameters": params, "output": plain_json(out)})
    return examples


def _qa_golden(model: Any, tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    from bundle_builder.qa_reference import question_answer

    # windows of the runtime's default length: the pipeline's min(384, model_max_length), within the bundle's limit
    window = min(QA_MAX_SEQ_LEN, max_length)
    examples = []
    for x, case in pipeline_cases("question-answering", tokenizer):
        # a window never past the bundle's limit (--max-length), which the runtime refuses
        params = {**case, "max_seq_len": min(case["max_seq_len"], max_length)} if "max_seq_len" in case else case
        answer = question_answer(model, tokenizer, **x, **{"max_seq_len": window, **params})
        examples.append({"input": x, "parameters": params, "output": plain_json(answer)})
    return examples


def plain_json(value: Any) -> Any:
    """A pipeline's answer with numpy scalars as Python numbers (what json.dumps and the runtime's answers hold)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


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
    if source.task in PIPELINE_TASKS:
        return _pipeline_golden(source, model, tokenizer, max_length)
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
