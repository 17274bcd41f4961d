"""Read a local model folder (save_pretrained or sentence-transformers layout) and decide what to build.

Everything here refuses early, with a message that names the folder and the fix: a missing folder, no config or
weights, code that would need trust_remote_code, an architecture or task the runtime cannot serve.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle_builder.errors import SourceError
from bundle_builder.st_layout import StLayout, read_st_layout
from runtime.tasks import TASKS

TASK_AUTO_CLASS = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "text-generation": "AutoModelForCausalLM",  # AutoModelForSeq2SeqLM when the config is encoder-decoder
    "token-classification": "AutoModelForTokenClassification",
    "zero-shot-classification": "AutoModelForSequenceClassification",  # an NLI model: (premise, hypothesis) pairs
    "question-answering": "AutoModelForQuestionAnswering",  # extractive: start and end logits per token
    "fill-mask": "AutoModelForMaskedLM",
}
# Hub pipeline tags that name a served task another way
TASK_ALIASES = {
    "text-ranking": "text-classification",  # a reranker (cross-encoder): one score per (query, text) pair
    "sentence-similarity": "feature-extraction",
    "ner": "token-classification",  # transformers.pipeline's own alias
}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class Source:
    path: Path
    config: dict[str, Any]
    model_type: str
    task: str
    auto_class: str
    is_encoder_decoder: bool
    sentence_transformers: bool
    pooling: dict[str, Any] | None = None  # the manifest's "pooling": modes, normalize, dense, include_prompt, ...
    st_max_seq_length: int | None = None
    st_layout: StLayout | None = None  # a sentence-transformers folder: its modules as read
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SourceError(f"{path} cannot be read as JSON ({e}); the model folder is incomplete or corrupt") from None


def _num_labels(config: dict[str, Any]) -> int:
    """Outputs of a sequence-classification head, as transformers' PretrainedConfig counts them (2 by default)."""
    if isinstance(config.get("id2label"), dict):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def _id2label(config: dict[str, Any]) -> dict[int, str]:
    raw = config.get("id2label")
    if isinstance(raw, dict):
        return {int(k): str(v) for k, v in raw.items()}
    return {i: f"LABEL_{i}" for i in range(_num_labels(config))}


def entailment_id(config: dict[str, Any]) -> int | None:
    """The entailment label's id, found as transformers' ZeroShotClassificationPipeline finds it (the first label of
    config.label2id starting with "entail"); None if none."""
    label2id = config.get("label2id")
    if not isinstance(label2id, dict):
        label2id = {label: i for i, label in _id2label(config).items()}
    for label, i in label2id.items():
        if str(label).lower().startswith("entail"):
            return int(i)
    return None


def _infer_task(config: dict[str, Any], sentence_transformers: bool) -> str:
    arch = (config.get("architectures") or [""])[0]
    if sentence_transformers:
        return "feature-extraction"
    if arch.endswith("ForSequenceClassification"):
        return "text-classification"
    if arch.endswith("ForTokenClassification"):
        return "token-classification"
    if arch.endswith("ForQuestionAnswering"):
        return "question-answering"
    if arch.endswith("ForMaskedLM"):
        return "fill-mask"
    if arch.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")):
        return "text-generation"
    if arch.endswith("Model"):
        return "feature-extraction"
    raise SourceError(
        f"cannot infer the task from architectures={config.get('architectures')!r}; pass --task "
        f"with one of {', '.join(sorted(TASK_AUTO_CLASS))}"
    )


def read_source(path: str | os.PathLike[str], *, task: str | None = None) -> Source:
    """Check a model folder and decide task and model class.

    Raises:
        SourceError: missing/incomplete folder, trust_remote_code needed, unknown architecture or task.
    """
    import transformers

    path = Path(path)
    if not path.is_dir():
        raise SourceError(f"model folder {path} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise SourceError(
            f"{path} has no config.json; pass a folder written by save_pretrained or sentence-transformers"
        )
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise SourceError(f"{path} has no weights ({' / '.join(WEIGHT_FILES[::2])}); the folder is incomplete")
    if not any(
        (path / t).is_file() for t in ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
    ):
        raise SourceError(f"{path} has no tokenizer files (tokenizer.json, vocab.txt, ...); the folder is incomplete")
    config = _read_json(path / "config.json")
    if "auto_map" in config or any("auto_map" in _read_json(p) for p in path.glob("tokenizer_config.json")):
        raise SourceError(
            f"{path} declares auto_map: loading it needs trust_remote_code=True, which would run code from the "
            "folder; this builder never does that. Use a model whose architecture ships with transformers"
        )
    model_type = config.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise SourceError(
            f"{path}: model_type {model_type!r} is not an architecture transformers {transformers.__version__} knows"
        )
    st = (path / "modules.json").is_file()
    st_config = path / "config_sentence_transformers.json"
    if st and st_config.is_file() and _read_json(st_config).get("model_type") == "CrossEncoder":
        st = False  # a sentence-transformers CrossEncoder is a sequence-classification model used on pairs
        task = task or "text-classification"
    if task == "text-ranking" and _num_labels(config) != 1:
        raise SourceError(
            f"{path}: text-ranking needs a model with one output score per pair; this one has "
            f"{_num_labels(config)} labels. Build it as text-classification to serve its labels"
        )
    task = TASK_ALIASES.get(task or "", task) or _infer_task(config, st)
    if task not in TASK_AUTO_CLASS or task not in TASKS:
        raise SourceError(f"task {task!r} is not served; choose one of {sorted(set(TASK_AUTO_CLASS) & set(TASKS))}")
    if task == "zero-shot-classification" and entailment_id(config) is None:
        labels = _id2label(config)
        raise SourceError(
            f"{path}: zero-shot-classification needs an NLI model whose config names an entailment label (a label "
            f"starting with 'entail', as transformers' pipeline looks for it); this one has labels {labels}. Use an "
            "NLI model (premise/hypothesis pairs), or build it as text-classification"
        )
    is_ed = bool(config.get("is_encoder_decoder", False))
    auto_class = "AutoModelForSeq2SeqLM" if task == "text-generation" and is_ed else TASK_AUTO_CLASS[task]
    config_class = transformers.CONFIG_MAPPING[model_type]
    if config_class not in getattr(transformers, auto_class)._model_mapping:
        raise SourceError(
            f"{path}: architecture {model_type!r} has no {auto_class} class in transformers, so it cannot serve {task}"
        )
    layout = read_st_layout(path) if st and task == "feature-extraction" else None
    pooling = layout.pooling if layout else None
    if task == "feature-extraction" and pooling is None:
        pooling = {"mode": "mean", "modes": ["mean"], "normalize": False}
    return Source(
        path=path,
        config=config,
        model_type=model_type,
        task=task,
        auto_class=auto_class,
        is_encoder_decoder=is_ed,
        sentence_transformers=st,
        pooling=pooling,
        st_max_seq_length=layout.max_seq_length if layout else None,
        st_layout=layout,
    )
