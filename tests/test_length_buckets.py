"""A request (or an SQS batch) of mixed lengths runs in passes of similar length, and answers in input order.

One long text must not pad nine short ones: the predictor groups texts by length for encoder tasks, and the outputs
are the ones each text gets alone.
"""

from __future__ import annotations

import numpy as np

from runtime.predictor import Predictor
from runtime.settings import Settings

SHORT = ["ok", "fine thanks", "great", "bad", "meh", "so so", "nice one", "no"]
LONG = "the parcel arrived broken and nobody answered my emails " * 3


def predictor(bundle) -> Predictor:
    return Predictor.load(Settings(model_bundle=str(bundle), device="cpu", canary=False, num_threads=1))


def count_passes(p: Predictor) -> list[int]:
    sizes: list[int] = []
    forward = p.task.forward

    def counted(batch, params):
        sizes.append(len(batch.arrays["input_ids"]))
        return forward(batch, params)

    p.task.forward = counted  # type: ignore[method-assign]
    return sizes


def test_a_long_text_runs_apart_and_outputs_stay_in_order(tiny_bundle) -> None:
    p = predictor(tiny_bundle("bert", task="feature-extraction"))
    inputs = SHORT[:4] + [LONG] + SHORT[4:]
    alone = [p.predict([x]).outputs[0] for x in inputs]
    sizes = count_passes(p)
    together = p.predict(inputs).outputs
    assert sorted(sizes) == [1, 8]  # the short texts in one pass, the long one in its own
    np.testing.assert_allclose(np.asarray(together), np.asarray(alone), atol=1e-5)


def test_truncated_inputs_are_reported_at_their_own_index(tiny_bundle) -> None:
    p = predictor(tiny_bundle("bert", task="feature-extraction"))
    inputs = ["short", "word " * 200, "also short", "x " * 300, "end"]  # the tiny model's limit is 64 tokens
    assert p.predict(inputs).truncated_inputs == (1, 3)


def test_classification_keeps_each_label_list_with_its_text(tiny_bundle) -> None:
    p = predictor(tiny_bundle("bert"))
    inputs = [LONG, "ok", LONG + " indeed", "fine"]
    together = p.predict(inputs).outputs
    for text, got in zip(inputs, together, strict=True):
        want = p.predict([text]).outputs[0]
        assert [d["label"] for d in got] == [d["label"] for d in want]
        assert max(abs(g["score"] - w["score"]) for g, w in zip(got, want)) < 1e-5
