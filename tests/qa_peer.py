"""The question-answering peer: transformers 4.57's pipeline("question-answering") (5 removed it), run as a script.

tests/test_task_question_answering.py runs it with PYTHONPATH=.cache/peer-transformers4, where transformers 4.57.6
and the huggingface-hub and tokenizers it needs are installed apart from .venv (requirements/peer-transformers4.txt);
torch, numpy and safetensors come from .venv. stdin: [{"model": folder, "inputs": {"question", "context"} or a list
of them, "parameters": {...}}, ...]; stdout: one {"output": ...} or {"error": "Type: message"} per case, as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> None:
    import transformers

    cases = json.load(sys.stdin)
    pipes: dict[str, Any] = {}
    results = []
    for case in cases:
        if case["model"] not in pipes:
            pipes[case["model"]] = transformers.pipeline(
                "question-answering", model=case["model"], tokenizer=tokenizer(case["model"]), device="cpu"
            )
        try:
            out = pipes[case["model"]](case["inputs"], **case["parameters"])
            results.append({"output": json.loads(json.dumps(out, default=lambda o: o.item()))})
        except BaseException as e:  # the tokenizer's Rust panics are BaseExceptions (pyo3_runtime.PanicException)
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump({"version": transformers.__version__, "results": results}, sys.stdout)


def tokenizer(folder: str) -> Any:
    """The folder's tokenizer; a generic fast one from its tokenizer.json where tokenizer_config.json names a class of
    transformers 5 ("TokenizersBackend", what 5 saves a tokenizer without a model-specific class as)."""
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(folder)
    except ValueError:
        return transformers.PreTrainedTokenizerFast.from_pretrained(folder)


if __name__ == "__main__":
    main()
