"""The four added encoder tasks on architectures beyond the BERT / RoBERTa / XLM-R of their own tests: DistilBERT,
ELECTRA, ALBERT and DeBERTa-v2, each a tiny RANDOM model built from its config with a tokenizer the tests trained,
built for the onnxruntime engine (the path a new architecture is most likely to break: export, fusions, inputs) and
answered as the transformers pipeline answers on the same folder (question-answering: 4.57.6's, see
test_task_question_answering.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.golden import max_nested_diff
from support import FakeContext, new_function
from test_task_question_answering import PEER_DIR, PEER_SCRIPT, PEER_VERSION, install_peer
from tiny_models import NER_LABELS, NLI_LABELS

ARCHITECTURES = {"distilbert": "bert", "electra": "bert", "albert": "xlm-roberta", "deberta-v2": "xlm-roberta"}
LONG = " ".join(["the battery lasts all day"] * 20)
CASES: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "token-classification": [
        ("Zoë lives in Paris and 東京 😀 today.", {"aggregation_strategy": strategy})
        for strategy in ("none", "simple", "first", "average", "max")
    ]
    + [(LONG, {"aggregation_strategy": "simple", "stride": 8})],
    "zero-shot-classification": [
        ("the battery lasts all day", {"candidate_labels": ["battery", "support", "cloud"]}),
        ("the battery lasts all day", {"candidate_labels": "battery, support", "multi_label": True,
                                       "hypothesis_template": "It is about {}."}),
    ],
    "question-answering": [
        ({"question": "what is the capital?", "context": "the capital of france is paris and the seine flows"}, {}),
        ({"question": "what lasts?", "context": LONG}, {"top_k": 2, "doc_stride": 16}),
    ],
    "fill-mask": [("the capital of france is MASK.", {}), ("MASK capital of MASK", {"top_k": 2})],
}


def config(arch: str, tokenizer: Any, labels: dict[str, Any]) -> Any:
    import transformers as tf

    small = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    vocab = len(tokenizer)
    if arch == "distilbert":
        return tf.DistilBertConfig(vocab_size=vocab, n_layers=2, dim=32, n_heads=2, hidden_dim=37,
                                   max_position_embeddings=64, **labels)
    if arch == "electra":
        return tf.ElectraConfig(vocab_size=vocab, embedding_size=16, hidden_size=32, **small, **labels)
    if arch == "albert":
        return tf.AlbertConfig(vocab_size=vocab, embedding_size=16, hidden_size=32, **small, **labels)
    return tf.DebertaV2Config(vocab_size=vocab, hidden_size=32, pad_token_id=tokenizer.pad_token_id, type_vocab_size=0,
                              **small, **labels)


@pytest.fixture(scope="module")
def folder(tiny_model, tmp_path_factory) -> Any:
    import transformers as tf

    auto = {
        "token-classification": tf.AutoModelForTokenClassification,
        "zero-shot-classification": tf.AutoModelForSequenceClassification,
        "question-answering": tf.AutoModelForQuestionAnswering,
        "fill-mask": tf.AutoModelForMaskedLM,
    }

    def make(arch: str, task: str) -> Path:
        tokenizer = tf.AutoTokenizer.from_pretrained(str(tiny_model(ARCHITECTURES[arch], "fill-mask")))
        if arch == "distilbert":  # DistilBERT's own tokenizer class: no token_type_ids, which its forward does not take
            tokenizer = tf.DistilBertTokenizerFast(
                tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map, model_max_length=64
            )
        names = {"token-classification": NER_LABELS, "zero-shot-classification": NLI_LABELS}.get(task)
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
        torch.manual_seed(0)
        model = auto[task].from_config(config(arch, tokenizer, labels)).eval()
        if task == "zero-shot-classification":  # wider weights: scores far enough apart that their order means something
            with torch.no_grad():
                for param in model.parameters():
                    param.normal_(0.0, 0.3)
        out = tmp_path_factory.mktemp(f"{arch}-{task}") / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return out

    return make


def pipeline_answers(source: Path, task: str, cases: list[tuple[Any, dict[str, Any]]]) -> list[Any]:
    if task == "question-answering":
        install_peer()
        env = {**os.environ, "PYTHONPATH": str(PEER_DIR), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        payload = [{"model": str(source), "inputs": x, "parameters": p} for x, p in cases]
        done = subprocess.run([sys.executable, str(PEER_SCRIPT)], input=json.dumps(payload), env=env,
                              capture_output=True, text=True, timeout=600, check=True)
        answer = json.loads(done.stdout)
        assert answer["version"] == PEER_VERSION
        assert all("output" in r for r in answer["results"]), answer["results"]
        return [r["output"] for r in answer["results"]]
    import transformers

    pipe = transformers.pipeline(task=task, model=str(source), tokenizer=str(source), device="cpu")
    return [json.loads(json.dumps(pipe(x, **p), default=lambda o: o.item())) for x, p in cases]


@pytest.mark.parametrize("task", sorted(CASES))
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_other_architectures_answer_as_the_pipeline_on_onnxruntime(arch: str, task: str, folder, tmp_path) -> None:
    from bundle_builder.build import build_bundle

    source = folder(arch, task)
    out = tmp_path / "model.bundle"
    build_bundle(source, out, task=task, engine="onnxruntime")
    fn = new_function(out)
    mask = json.loads((source / "tokenizer_config.json").read_text()).get("mask_token")
    cases = [(x.replace("MASK", mask) if isinstance(x, str) else x, p) for x, p in CASES[task]]
    expected = pipeline_answers(source, task, cases)
    got = []
    for x, p in cases:
        answer = fn.handle({"inputs": x, "parameters": p}, FakeContext())
        assert "outputs" in answer, answer
        got.append(answer["outputs"])
    check = max_nested_diff(expected, got, "float32")
    assert check.ok, (check, expected, got)
