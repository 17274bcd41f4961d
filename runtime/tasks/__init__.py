"""One module per task: parameter checks, the forward pass, and turning tensors into the response shape.

Each task object offers:
    check_parameters(params) -> normalised params        (raises InvalidParametersError)
    preprocess(inputs, params) -> model inputs             (tensors on the model's device)
    forward(batch, params) -> raw output                   (runs under torch.inference_mode)
    postprocess(raw, batch, params) -> list of outputs     (one per input, JSON-ready)
"""

from __future__ import annotations

from typing import Any

from runtime.errors import BundleCorruptError

TASKS = ("feature-extraction", "text-classification", "text-generation")


def make_task(loaded: Any, settings: Any = None) -> Any:
    """The task object for a LoadedModel, chosen by the bundle's manifest."""
    task = loaded.task
    if task == "feature-extraction":
        from runtime.tasks.embedding import EmbeddingTask

        return EmbeddingTask(loaded)
    if task == "text-classification":
        from runtime.tasks.classification import ClassificationTask

        return ClassificationTask(loaded)
    if task == "text-generation":
        from runtime.tasks.generation import GenerationTask

        return GenerationTask(
            loaded,
            max_new_tokens_limit=getattr(settings, "max_new_tokens", 256),
            max_input_tokens=getattr(settings, "max_input_tokens", 0) or None,
        )
    raise BundleCorruptError(f"{loaded.bundle.path} has task {task!r}; this runtime serves {TASKS}")
