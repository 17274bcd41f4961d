"""Tasks checked against their transformers pipeline: tiny random models made sensitive to their input, built for
each engine, loaded as a function, next to the pipeline on the same folder.

The tiny models' default init (std 0.02) gives a zero-shot classifier whose logits barely move with the input: every
candidate label scores 1/n within 1e-5, so any order is right within the score tolerance and a ranking proves
nothing. Redrawn with std 0.3, the same architecture and tokenizer answer with scores that differ by whole percents.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

from support import FakeContext, new_function, rehash_header

SHARP_STD = 0.3


def sharpened(folder: Path, out: Path, *, seed: int = 0) -> Path:
    """A copy of the tiny model in `folder` with every matrix redrawn from N(0, SHARP_STD); written to `out`."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    arch = (getattr(config, "architectures", None) or [""])[0]
    head = "MaskedLM" if arch.endswith("ForMaskedLM") else "SequenceClassification"
    model = getattr(transformers, f"AutoModelFor{head}").from_pretrained(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:  # weights and embeddings; LayerNorm and biases keep their init
                param.normal_(0.0, SHARP_STD)
    model.save_pretrained(out)
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(f, out / f.name)
    return out


class PipelinePeers:
    """Per tiny model kind, made once: the sharpened source folder, its bundle per engine, the function loaded from
    it, and transformers.pipeline(task) on the folder."""

    def __init__(self, task: str, tiny_model: Any, tmp_path_factory: Any) -> None:
        self.task, self._tiny_model, self._tmp = task, tiny_model, tmp_path_factory
        self._cache: dict[tuple[str, ...], Any] = {}

    def _once(self, key: tuple[str, ...], make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def source(self, kind: str) -> Path:
        return self._once(
            ("source", kind), lambda: sharpened(self._tiny_model(kind, self.task), self._tmp.mktemp(kind))
        )

    def bundle(self, kind: str, engine: str = "torch") -> Path:
        from bundle_builder.build import build_bundle

        def build() -> Path:
            out = self._tmp.mktemp("bundles") / f"{kind}-{engine}.bundle"
            build_bundle(self.source(kind), out, task=self.task, engine=engine)
            return out

        return self._once(("bundle", kind, engine), build)

    def function(self, kind: str, engine: str = "torch") -> Any:
        return self._once(("function", kind, engine), lambda: new_function(self.bundle(kind, engine), NUM_THREADS="1"))

    def with_task_config(self, kind: str, task_config: dict[str, Any], out: Path) -> Path:
        """The kind's torch bundle with its manifest's task_config replaced (and a valid digest), written to `out`."""

        def mutate(header: dict[str, Any]) -> None:
            header["manifest"]["task_config"] = task_config

        out.write_bytes(rehash_header(self.bundle(kind).read_bytes(), mutate))
        return out

    def peer(self, kind: str) -> Any:
        import transformers

        folder = str(self.source(kind))
        return self._once(
            ("peer", kind), lambda: transformers.pipeline(self.task, model=folder, tokenizer=folder, device="cpu")
        )


def ask(fn: Any, inputs: Any, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The function's answer to a direct invoke."""
    answer: dict[str, Any] = fn.handle({"inputs": inputs, "parameters": parameters or {}}, FakeContext())
    return answer


def answer_event(fn: Any, payload: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the request the event carries, the function's outputs) for a direct or an HTTP event, which must answer 200."""
    answer = fn.handle(payload, FakeContext())
    if "body" not in payload:
        return payload, answer["outputs"]
    assert answer["statusCode"] == 200, answer
    body = base64.b64decode(payload["body"]) if payload.get("isBase64Encoded") else payload["body"]
    return json.loads(body), json.loads(answer["body"])["outputs"]


def cli_budget(source: Path, task: str, out: Path) -> dict[str, Any]:
    """`bundle_builder build SOURCE --task TASK` as a user runs it (deployment budget measured): the manifest's budget."""
    from bundle_builder.cli import main
    from runtime.bundle import read_bundle

    assert main(["build", str(source), "--task", task, "-o", str(out)]) == 0
    budget: dict[str, Any] = read_bundle(out).manifest["budget"]
    return budget
