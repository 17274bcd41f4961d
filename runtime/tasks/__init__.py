"""One module per task, behind the Task protocol, registered in TASKS.

A task turns a request's inputs into model inputs, runs the engine, and shapes the outputs:
    check_inputs(inputs)                       raises InvalidInputError for an input this task cannot take
    check_parameters(params) -> params         normalised; raises InvalidParametersError
    preprocess(inputs, params) -> batch        tokenised, padded (B, T) arrays
    forward(batch, params) -> raw              the engine's forward pass (or generate), under torch.inference_mode
    postprocess(raw, batch, params) -> Chunk   one JSON-ready output per input, plus generation counters
    compare(expected, actual, precision)       golden outputs vs these outputs -> GoldenCheck
Optional: maximal_request(text, items) -> (inputs, params), the costliest request of `items` inputs of `text` (at the
model's max length) that the build's deployment budget measures, for a task whose requests need more than texts.

Adding a task is one module here and one line in TASKS; nothing else branches on the task name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runtime.errors import BundleCorruptError, InvalidInputError

if TYPE_CHECKING:
    from runtime.golden import GoldenCheck
    from runtime.loader import LoadedModel
    from runtime.settings import Settings

# task name (manifest.task) -> "module:class"
TASKS = {
    "feature-extraction": "runtime.tasks.embedding:EmbeddingTask",
    "text-classification": "runtime.tasks.classification:ClassificationTask",
    "text-generation": "runtime.tasks.generation:GenerationTask",
    "token-classification": "runtime.tasks.token_classification:TokenClassificationTask",
    "zero-shot-classification": "runtime.tasks.zero_shot:ZeroShotTask",
    "fill-mask": "runtime.tasks.fill_mask:FillMaskTask",
    "question-answering": "runtime.tasks.question_answering:QuestionAnsweringTask",
}


@dataclass(frozen=True)
class Chunk:
    """What one forward pass gave: an output per input, and for generation the tokens made and when the first came."""

    outputs: list[Any]
    generated_tokens: int | None = None
    first_token_ns: int | None = None  # perf_counter_ns when the first new token existed
    truncated: list[int] = field(default_factory=list)  # indices (in this chunk) of inputs cut at max_length
    input_tokens: int | None = None  # tokens the model read in this chunk (attention mask ones)
    # per output, what an HTTP route may report besides the output (generation: finish_reason, generated_tokens,
    # input_tokens); empty for tasks with nothing to add
    facts: list[dict[str, Any]] = field(default_factory=list)


class Task(Protocol):
    name: str
    length_buckets: bool  # inputs may be regrouped by length across forward passes (padding never changes outputs)

    def check_inputs(self, inputs: list[Any]) -> None: ...

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def preprocess(self, inputs: list[Any], params: dict[str, Any]) -> Any: ...

    def forward(self, batch: Any, params: dict[str, Any]) -> Any: ...

    def postprocess(self, raw: Any, batch: Any, params: dict[str, Any]) -> Chunk: ...

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck: ...


def make_task(model: LoadedModel, settings: Settings) -> Task:
    """The task object for a loaded model, chosen by its manifest. Raises BundleCorruptError for an unknown task."""
    target = TASKS.get(model.manifest.task)
    if target is None:
        raise BundleCorruptError(
            f"{model.bundle.path} has task {model.manifest.task!r}; this runtime serves {tuple(TASKS)}"
        )
    module, cls = target.split(":")
    task: Task = getattr(importlib.import_module(module), cls)(model, settings)
    return task


def text_only(task: str, inputs: list[Any]) -> None:
    """Encoder tasks take text; chat messages are for text-generation models, pairs for text-classification."""
    if any(isinstance(x, dict) for x in inputs):
        raise InvalidInputError(
            "text pairs and rerank requests are for text-classification (cross-encoder) models; this model does "
            f'{task}: send {{"inputs": "text"}} or {{"inputs": ["text", ...]}}'
        )
    if not all(isinstance(x, str) for x in inputs):
        raise InvalidInputError(
            f"chat-style inputs are for text-generation models; this model does {task}: "
            'send {"inputs": "text"} or {"inputs": ["text", ...]}'
        )
