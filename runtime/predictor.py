"""setup() once per container, then predict() per request under torch.inference_mode.

Setup failures are fatal (the function reports an init error); a request failure is an answer.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import BundleCorruptError, InvalidInputError
from runtime.golden import GoldenCheck, coarser, compare
from runtime.loader import LoadedModel, load_model
from runtime.settings import Settings, usable_cpus
from runtime.timing import StageTimer


@dataclass
class Predictor:
    loaded: LoadedModel
    task: Any
    settings: Settings
    threads: int
    init_ms: dict[str, float] = field(default_factory=dict)
    canary: GoldenCheck | None = None

    @classmethod
    def setup(cls, settings: Settings, *, t0_ns: int | None = None) -> Predictor:
        """Load the bundle, place the model, set threads, run the golden canary. Raises BundleError on any problem.

        Args:
            settings: the function's settings.
            t0_ns: perf_counter_ns when init began (module import); defaults to now.
        """
        t0_ns = t0_ns or time.perf_counter_ns()
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ.setdefault("HF_HOME", os.path.join(tempfile.gettempdir(), "huggingface"))

        threads = settings.num_threads or usable_cpus()
        loaded = load_model(
            settings.model_bundle,
            device=settings.device,  # auto is resolved once the engine is known: ORT never asks torch
            cuda_dtype=settings.cuda_dtype,
            verify_hash=settings.verify_bundle_hash,
            engine=settings.engine,
            threads=threads,
        )
        from runtime.tasks import make_task

        task = make_task(loaded, settings)
        predictor = cls(loaded=loaded, task=task, settings=settings, threads=threads)
        t = time.perf_counter_ns()
        if settings.canary:
            predictor.canary = predictor.check_golden(limit=1)
            if not predictor.canary.ok:
                raise BundleCorruptError(
                    f"canary failed: the first golden example of {settings.model_bundle} gives "
                    f"{predictor.canary.describe()} against the output stored at build time; the model does not "
                    "compute what it computed when it was built"
                )
        canary_ms = (time.perf_counter_ns() - t) / 1e6
        predictor.init_ms = {
            **{k: round(v, 3) for k, v in loaded.phases_ms.items()},
            "canary": round(canary_ms, 3),
            "total": round((time.perf_counter_ns() - t0_ns) / 1e6, 3),
        }
        return predictor

    def check_golden(self, *, limit: int | None = None) -> GoldenCheck:
        """Replay the bundle's golden examples (the first `limit`) and compare with the stored outputs."""
        examples = self.loaded.manifest["golden"][:limit]
        actual = [self.predict([ex["input"]], dict(ex.get("parameters", {})))[0][0] for ex in examples]
        # Drift allowed for the lower of the storage and the compute precision (fp32 weights computed in bf16 on a GPU).
        precision = coarser(self.loaded.manifest["dtype"], self.loaded.dtype)
        return compare(self.loaded.task, precision, [ex["output"] for ex in examples], actual)

    @property
    def max_batch(self) -> int:
        return self.settings.max_batch_items

    def predict(self, inputs: list[Any], params: dict[str, Any], timer: StageTimer | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Outputs for `inputs` (one padded forward pass per MAX_BATCH_ITEMS inputs) and extra timing fields.

        Raises:
            InvalidParametersError: a parameter is unknown or out of range.
            RequestError subclasses from the task (e.g. a prompt over the token limit).
        """
        timer = timer or StageTimer()
        if self.loaded.task != "text-generation" and not all(isinstance(x, str) for x in inputs):
            raise InvalidInputError(
                f"chat-style inputs are for text-generation models; this model does {self.loaded.task}: "
                'send {"inputs": "text"} or {"inputs": ["text", ...]}'
            )
        params = self.task.check_parameters(params)
        outputs: list[Any] = []
        extra: dict[str, Any] = {}
        for start in range(0, len(inputs), self.max_batch):
            chunk = inputs[start : start + self.max_batch]
            with timer.stage("preprocess"):
                batch = self.task.preprocess(chunk, params)
            with timer.stage("inference"):
                t = time.perf_counter_ns()
                raw = self.task.forward(batch, params)
            with timer.stage("postprocess"):
                outputs.extend(self.task.postprocess(raw, batch, params))
            clock = getattr(self.task, "last_clock", None)
            if clock is not None and clock.first_token_ns and "time_to_first_token_ms" not in extra:
                extra["time_to_first_token_ms"] = round((clock.first_token_ns - t) / 1e6, 3)
        if self.loaded.task == "text-generation":
            tokens = [o.pop("generated_tokens") for o in outputs]
            extra["generated_tokens"] = sum(tokens)
            seconds = timer.stages_ns.get("inference", 0) / 1e9
            extra["tokens_per_s"] = round(extra["generated_tokens"] / seconds, 2) if seconds else None
        return outputs, extra

    def describe_model(self) -> dict[str, Any]:
        m = self.loaded.manifest
        engine = self.loaded.engine
        return {
            "name": m["name"],
            "task": m["task"],
            "sha256": self.loaded.bundle.sha256,
            "engine": engine.name,
            "implementation": getattr(engine, "implementation", engine.name),
        }

