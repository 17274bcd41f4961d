"""The three kinds of engine behind one call, `embed(text) -> list[float]` (a unit-length sentence embedding).

    naive    bench.naive_handler: module-level transformers.pipeline, handler called per request
    handler  this project's handler.handler on a bundle (MODEL_BUNDLE), a direct event per request; measured once
             per runtime engine (a torch-engine and an onnxruntime-engine bundle), and every response must name
             the runtime engine the spec expects (response["model"]["engine"])
    ort      onnxruntime.InferenceSession (default options, intra_op_num_threads set) on the exported model,
             tokenised with the model's tokenizer.json, mean pooling + normalize in numpy: the ORT fp32 reference

Each is built inside its own worker process; heavy imports happen in the constructors, so building an engine is
its cold start.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

ENGINES = ("naive", "handler", "ort")


class Engine(Protocol):
    name: str

    def embed(self, text: str, parameters: dict[str, Any] | None = None) -> list[float]:
        """One request: the embedding of `text`."""
        ...

    def describe(self) -> dict[str, Any]:
        """What answered (engine, threads, init timings) for the results file."""
        ...


class NaiveEngine:
    """The baseline: import bench.naive_handler (which builds the pipeline at import), call its handler."""

    name = "naive"

    def __init__(self, model_dir: str, *, threads: int) -> None:
        os.environ["NAIVE_MODEL_DIR"] = model_dir
        import torch

        from bench import naive_handler

        torch.set_num_threads(threads)  # torch's own default here too; set so every engine runs the same threads
        self._handler = naive_handler.handler
        self._threads = threads

    def embed(self, text: str, parameters: dict[str, Any] | None = None) -> list[float]:
        return self._handler({"inputs": text}, None)["outputs"]

    def describe(self) -> dict[str, Any]:
        import torch

        return {
            "engine": "transformers.pipeline(feature-extraction) + numpy mean/normalize",
            "threads": torch.get_num_threads(),
        }


class HandlerEngine:
    """This project's function: Function.load is the container's init (what `import handler` runs); each call is a
    direct invoke through Function.handle, as handler.handler makes it."""

    name = "handler"

    def __init__(self, bundle: str, *, threads: int, expect_engine: str | None = None) -> None:
        from runtime.function import Function
        from runtime.settings import Settings

        # the bundle's own engine answers (ENGINE=auto, checked per response); SQS results go to the log (stdout,
        # silenced by the runner): no RESULTS_QUEUE_URL
        self._function = Function.load(Settings(model_bundle=bundle, num_threads=threads))
        self._bundle = bundle
        self._expect = expect_engine
        self.last_response: dict[str, Any] = {}

    def _context(self) -> Any:
        return _Context()

    def embed(self, text: str, parameters: dict[str, Any] | None = None) -> list[float]:
        event: dict[str, Any] = {"inputs": text}
        if parameters:
            event["parameters"] = parameters
        r = self.last_response = self._function.handle(event, self._context())
        if self._expect and r.get("model", {}).get("engine") != self._expect:
            from bench.measure import BenchError

            got = r.get("model", {}).get("engine")
            raise BenchError(
                f"the handler on {self._bundle} answered with engine {got!r}, expected "
                f"{self._expect!r}; the bundle was built for another engine or ENGINE overrides it"
            )
        return r["outputs"]

    def sqs(self, bodies: list[str], batch_index: int) -> int:
        """One SQS event of len(bodies) records through the handler; returns the number of batchItemFailures."""
        records = [
            {
                "messageId": f"bench-{batch_index}-{i}-{uuid.uuid4()}",
                "receiptHandle": "bench",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
        response = self._function.handle({"Records": records}, self._context())
        return len(response["batchItemFailures"])

    def implementation(self) -> str | None:
        """How the runtime engine runs the model: the response's model.implementation when the handler reports it,
        else the engine object's `implementation` (torch: "native" | "transformers"), else its ONNX providers."""
        model = self.last_response.get("model", {})
        if model.get("implementation"):
            return str(model["implementation"])
        return str(self._function.predictor.model.engine.implementation)

    def describe(self) -> dict[str, Any]:
        r = self.last_response
        return {
            "engine": r.get("model", {}).get("engine"),
            "implementation": self.implementation(),
            "model": r.get("model"),
            "threads": r.get("timing", {}).get("threads"),
            "init_ms": r.get("timing", {}).get("init_ms"),
            "request_ms": r.get("timing", {}).get("request_ms"),
            "cold_start": r.get("timing", {}).get("cold_start"),
        }


class OrtEngine:
    """ONNX Runtime fp32 on the exported source model; tokenizer and pooling outside the graph, as usually deployed."""

    name = "ort"

    def __init__(self, onnx_path: str, model_dir: str, *, threads: int) -> None:
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()  # defaults (graph optimisation ORT_ENABLE_ALL) but the thread count
        options.intra_op_num_threads = threads
        self._np = np
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self.session.get_inputs()}
        self._tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self._tok.no_padding()  # the file pads to 128; one input needs no padding
        self._tok.enable_truncation(max_length=_max_seq_length(model_dir))
        self._threads = threads

    def token_count(self, text: str) -> int:
        return len(self._tok.encode(text).ids)

    def embed(self, text: str, parameters: dict[str, Any] | None = None) -> list[float]:
        np = self._np
        enc = self._tok.encode(text)
        feeds = {
            "input_ids": np.asarray([enc.ids], dtype=np.int64),  # (1, T)
            "attention_mask": np.asarray([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.asarray([enc.type_ids], dtype=np.int64),
        }
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self._input_names})[0]  # (1, T, H)
        mask = feeds["attention_mask"][..., None].astype(np.float32)  # (1, T, 1)
        emb = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)  # (1, H)
        emb /= np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
        return emb[0].tolist()

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "engine": f"onnxruntime {ort.__version__} CPUExecutionProvider fp32",
            "threads": self._threads,
            "graph_optimization_level": str(ort.SessionOptions().graph_optimization_level),
        }


def _max_seq_length(model_dir: str) -> int:
    # sentence-transformers truncates at max_seq_length (256 for all-MiniLM-L6-v2), not the tokenizer's 128/512
    cfg = Path(model_dir) / "sentence_bert_config.json"
    try:
        return int(json.loads(cfg.read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return 256


class _Context:
    """What awslambdaric passes: the fields the function reads."""

    function_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = f"bench-{uuid.uuid4()}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def build_engine(name: str, spec: dict[str, Any]) -> Engine:
    """Construct engine `name` ("naive", "handler" or "ort") from a worker spec; this is the engine's cold start.

    The handler reads spec["bundle"] and, when given, checks every response against spec["expect_engine"].

    Raises:
        ValueError: an unknown engine name.
    """
    threads = int(spec["threads"])
    if name == "naive":
        return NaiveEngine(spec["model_dir"], threads=threads)
    if name == "handler":
        return HandlerEngine(spec["bundle"], threads=threads, expect_engine=spec.get("expect_engine"))
    if name == "ort":
        return OrtEngine(spec["onnx"], spec["model_dir"], threads=threads)
    raise ValueError(f"unknown engine {name!r}; the benchmark runs {ENGINES}")
