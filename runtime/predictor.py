"""The model and its task: predict() per request under the task's forward pass, golden replay, model description.

A Predictor holds no per-invocation state; runtime/function.py builds one at init and owns it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import BundleCorruptError, InputTooLongError, RequestError
from runtime.golden import NOTHING_TO_REPLAY, GoldenCheck, coarser
from runtime.loader import LoadedModel, load_model
from runtime.prediction import Prediction
from runtime.settings import Settings
from runtime.tasks import Task, make_task
from runtime.timing import StageTimer


@dataclass
class Predictor:
    model: LoadedModel
    task: Task
    max_batch: int  # inputs per forward pass (MAX_BATCH_ITEMS)

    @classmethod
    def load(cls, settings: Settings, *, verify_hash: bool | None = None) -> Predictor:
        """The bundle at settings.model_bundle, loaded on the engine and device the settings choose, with its task.

        Raises:
            BundleError subclasses: the file, its manifest, the engine or the task cannot be used.
        """
        model = load_model(
            settings.model_bundle,
            engine=settings.engine,
            options=settings.engine_options(),
            verify_hash=settings.verify_bundle_hash if verify_hash is None else verify_hash,
            pinned_sha256=settings.model_bundle_sha256,
        )
        return cls(model, make_task(model, settings), max_batch=settings.max_batch_items)

    def predict(
        self, inputs: list[Any], parameters: Mapping[str, Any] | None = None, *, timer: StageTimer | None = None
    ) -> Prediction:
        """Outputs for `inputs`, one padded forward pass per `max_batch` inputs.

        Args:
            inputs: checked request inputs (texts, or chats for text-generation).
            parameters: the request's parameters, checked here by the task.
            timer: the request's timer (it may already hold a "parse" stage); a new one when None.

        Raises:
            InvalidInputError: an input this task cannot take (a chat for an encoder task).
            InvalidParametersError: a parameter is unknown or out of range.
            RequestError subclasses from the task (e.g. a prompt over the token limit); an InputTooLongError names
            an over-long input by its index in `inputs`.
        """
        timer = timer or self.new_timer()
        self.task.check_inputs(inputs)
        params = self.task.check_parameters(parameters or {})
        outputs: list[Any] = [None] * len(inputs)
        facts: list[dict[str, Any]] = [{} for _ in inputs]
        generated: int | None = None
        first_token_ms: float | None = None
        truncated: list[int] = []
        input_tokens: int | None = None
        batches = []
        with timer.stage("preprocess"):  # every pass is tokenised and checked (token limits, budgets) before any runs
            for indices in self._passes(inputs):
                try:
                    batches.append((indices, self.task.preprocess([inputs[i] for i in indices], params)))
                except InputTooLongError as e:
                    raise e.at(indices[e.index]) from None
        for indices, batch in batches:
            with timer.stage("inference"):
                t = time.perf_counter_ns()
                raw = self.task.forward(batch, params)
            with timer.stage("postprocess"):
                chunk = self.task.postprocess(raw, batch, params)
            for i, output in zip(indices, chunk.outputs, strict=True):
                outputs[i] = output
            for i, known in zip(indices, chunk.facts):
                facts[i] = known
            truncated.extend(indices[i] for i in chunk.truncated)
            if chunk.first_token_ns and first_token_ms is None:
                first_token_ms = round((chunk.first_token_ns - t) / 1e6, 3)
            if chunk.generated_tokens is not None:
                generated = (generated or 0) + chunk.generated_tokens
            if chunk.input_tokens is not None:
                input_tokens = (input_tokens or 0) + chunk.input_tokens
        tokens_per_s = None
        if generated is not None:
            seconds = timer.stages_ns.get("inference", 0) / 1e9
            tokens_per_s = round(generated / seconds, 2) if seconds else None
        return Prediction(
            outputs,
            timer.as_ms(),
            first_token_ms,
            generated,
            tokens_per_s,
            tuple(sorted(truncated)),
            input_tokens,
            tuple(facts) if any(facts) else (),
        )

    def _passes(self, inputs: list[Any]) -> list[list[int]]:
        """The input indices of each forward pass: at most max_batch each. Where the task pads freely (encoders),
        texts are grouped by length, and a pass ends where a text is over twice as long as its first, so one long
        text does not pad many short ones (an SQS batch mixes lengths). Outputs go back to input order."""
        order = list(range(len(inputs)))
        if not (self.task.length_buckets and all(isinstance(x, str) for x in inputs)):
            return [order[s : s + self.max_batch] for s in range(0, len(order), self.max_batch)]
        order.sort(key=lambda i: len(inputs[i]))
        passes: list[list[int]] = []
        for i in order:
            if (
                passes
                and len(passes[-1]) < self.max_batch
                and len(inputs[i]) <= 2 * max(len(inputs[passes[-1][0]]), 16)
            ):
                passes[-1].append(i)
            else:
                passes.append([i])
        return passes

    def new_timer(self) -> StageTimer:
        return StageTimer(cuda=self.model.device.startswith("cuda"))

    def check_golden(self, *, limit: int | None = None) -> GoldenCheck:
        """Replay the bundle's golden examples (the first `limit`) and compare with the stored outputs.

        Raises:
            BundleCorruptError: an example this task cannot replay or compare; the message names it (golden[i]).
        """
        examples = self.model.manifest.golden[:limit]
        if not examples:  # only a bundle built with --no-golden gets here (manifest_checks refuses the others)
            return NOTHING_TO_REPLAY
        # Drift allowed for the lower of the storage and the compute precision (fp32 weights computed in bf16 on a GPU).
        precision = coarser(self.model.manifest.dtype, self.model.dtype)
        actual = []
        for i, ex in enumerate(examples):
            try:
                actual.append(self.predict([ex.input], ex.parameters).outputs[0])
                self.task.compare([ex.output], actual[-1:], precision)  # a stored output of the wrong shape fails here
            except (RequestError, TypeError, KeyError, ValueError, IndexError, AttributeError) as e:
                raise BundleCorruptError(
                    f"{self.model.bundle.path}: manifest field 'golden[{i}]' cannot be replayed "
                    f"({type(e).__name__}: {e}); rebuild the bundle with bundle_builder"
                ) from None
        return self.task.compare([ex.output for ex in examples], actual, precision)

    def describe_model(self) -> dict[str, Any]:
        """The response's "model" object."""
        m = self.model.manifest
        engine = self.model.engine
        return {
            "name": m.name,
            "task": m.task,
            "sha256": self.model.bundle.sha256,
            "engine": engine.name,
            "implementation": engine.implementation,
        }
