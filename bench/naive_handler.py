"""The naive baseline, written the way most tutorials write a Hugging Face Lambda: the "before" of the table.

A module-level `transformers.pipeline("feature-extraction", model=...)` built at import, and a handler that calls it
per request, mean-pools the token vectors and L2-normalises them in numpy (all-MiniLM-L6-v2's own pooling; with one
unpadded input the plain mean over tokens is exactly the masked mean). This is deliberately the pattern STYLE.md says
not to copy; it is here only to be measured against.

The model folder comes from NAIVE_MODEL_DIR (set by bench.engines before the import).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from transformers import pipeline

EXTRACTOR = pipeline("feature-extraction", model=os.environ["NAIVE_MODEL_DIR"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """{"inputs": "text"} -> {"outputs": [384 floats]}, unit length."""
    tokens = np.asarray(EXTRACTOR(event["inputs"])[0], dtype=np.float32)  # (T, H): one vector per token
    embedding = tokens.mean(axis=0)
    embedding /= np.linalg.norm(embedding)
    return {"outputs": embedding.tolist()}
