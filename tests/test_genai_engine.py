"""The onnxruntime-genai engine: causal LMs decoded by the runtime's own loop on ONNX Runtime GenAI's decoder graph.

Peers: transformers' `model.generate` on the source folder (greedy and repetition-penalty answers token for token),
transformers' own logits processors (each scoring step of the loop), and the torch engine's bundle (stop strings).
The tiny random llama proves the mechanics in seconds; SmolLM2-135M-Instruct (tests marked slow) proves the exact
path on a real model, on prompts that are not its golden examples.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bundle_builder.build import build_bundle
from bundle_builder.errors import SourceError
from bundle_builder.quantize import Floors
from runtime.errors import InvalidParametersError
from runtime.loader import load_model
from runtime.tasks import decode_loop
from support import ROOT
from test_generation import PROMPTS, Source, predictor_for

GENAI = "onnxruntime-genai"
HELD_OUT = ["a robot walks into a bar", "1 2 3 4 5", "The quick brown fox", "¿Dónde está la biblioteca?"]


@pytest.fixture(scope="module")
def llama(tiny_model, tiny_bundle) -> tuple[Source, Any]:
    return Source(tiny_model("llama", "text-generation")), predictor_for(tiny_bundle("llama", "text-generation", engine=GENAI))


def alone(src: Source, prompt: Any, **kwargs: Any) -> str:
    _, [text] = src.generate([prompt], **kwargs)
    return text


# --- the loop against model.generate --------------------------------------------------------------------------------


def test_bundle_is_served_by_the_genai_engine_with_its_graph_inside(llama) -> None:
    _, pred = llama
    m = pred.model.manifest
    assert (m.engine, m.engines, pred.model.engine.name) == (GENAI, (GENAI,), GENAI)
    assert pred.model.bundle.has_file("genai/model.onnx") and pred.model.bundle.tensor_names == []
    assert pred.model.engine.model is None  # no torch module behind it


@pytest.mark.parametrize("params", [{}, {"repetition_penalty": 1.3}, {"repetition_penalty": 0.7}], ids=["greedy", "penalty", "reward"])
def test_each_prompt_equals_source_generate_token_for_token(llama, params: dict[str, Any]) -> None:
    src, pred = llama
    for prompt in [*PROMPTS, *HELD_OUT]:
        out, [text] = src.generate([prompt], max_new_tokens=16, **params)
        new = out[0, src.encode([prompt])["input_ids"].shape[1] :].tolist()  # one prompt: no padding after an eos
        checked = pred.task.check_parameters({"max_new_tokens": 16, **params})
        assert pred.task.forward(pred.task.preprocess([prompt], checked), checked).new_tokens[0] == new, prompt
        assert pred.predict([prompt], {"max_new_tokens": 16, **params}).outputs == [{"generated_text": text}]


def test_a_batch_is_answered_as_each_prompt_alone(llama) -> None:
    src, pred = llama
    prediction = pred.predict(HELD_OUT, {"max_new_tokens": 10})
    assert [o["generated_text"] for o in prediction.outputs] == [alone(src, p, max_new_tokens=10) for p in HELD_OUT]
    assert prediction.timing_fields()["generated_tokens"] == 10 * len(HELD_OUT)


def test_stop_strings_cut_as_on_the_torch_engine(llama, tiny_bundle) -> None:
    src, pred = llama
    torch_pred = predictor_for(tiny_bundle("llama", "text-generation"))
    for prompt in HELD_OUT:
        stop = alone(src, prompt, max_new_tokens=12).strip()[2:4]
        params = {"max_new_tokens": 12, "stop": [stop], "details": True}
        [got], [want] = pred.predict([prompt], params).outputs, torch_pred.predict([prompt], params).outputs
        got_logprobs = [t.pop("logprob") for t in got["details"]["tokens"]]
        assert got_logprobs == pytest.approx([t.pop("logprob") for t in want["details"]["tokens"]], abs=1e-4)
        assert got == want and got["details"]["finish_reason"] == "stop_sequence"


def test_beam_search_is_refused_with_the_engine_named(llama) -> None:
    _, pred = llama
    with pytest.raises(InvalidParametersError, match="'num_beams' must be 1 on this bundle's onnxruntime-genai engine"):
        pred.predict(["hi"], {"num_beams": 3})


# --- each scoring step against transformers' logits processors ------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.7},
        {"top_k": 5},
        {"top_p": 0.8},
        {"temperature": 1.3, "top_k": 20, "top_p": 0.9},
        {"top_k": 0, "top_p": 0.5},
        {"top_p": 0.001},
    ],
)
def test_warping_equals_transformers_warpers(settings: dict[str, Any]) -> None:
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = np.random.default_rng(0).normal(0, 3, size=(1, 300)).astype(np.float32)
    full = {**decode_loop.DEFAULTS, **settings}
    warpers = LogitsProcessorList()
    if full["temperature"] != 1.0:
        warpers.append(TemperatureLogitsWarper(full["temperature"]))
    if full["top_k"]:
        warpers.append(TopKLogitsWarper(full["top_k"]))
    if full["top_p"] < 1.0:
        warpers.append(TopPLogitsWarper(full["top_p"]))
    expected = warpers(torch.zeros(1, 1, dtype=torch.long), torch.from_numpy(scores.copy()))[0].numpy()
    got = decode_loop._warped(scores[0], settings)
    assert np.array_equal(np.isinf(got), np.isinf(expected.astype(np.float32)))
    assert np.allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], rtol=1e-6)


@pytest.mark.parametrize("penalty", [1.5, 0.5])
def test_repetition_penalty_equals_transformers_processor(penalty: float) -> None:
    from transformers import RepetitionPenaltyLogitsProcessor

    scores = np.random.default_rng(1).normal(0, 3, size=(1, 300)).astype(np.float32)
    seen = [3, 7, 7, 250, 3, 0]
    expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([seen]), torch.from_numpy(scores.copy()))[0]
    got = decode_loop._penalised(scores[0], np.unique(np.asarray(seen)), penalty)
    assert np.array_equal(got, expected.numpy())


def test_sampling_draws_from_the_warped_distribution() -> None:
    """Many draws from one step's scores: the frequencies match the softmax of the warped scores (chi-square bound)."""
    scores = np.array([2.0, 1.5, 1.0, 0.0, -1.0, -5.0], dtype=np.float32)
    settings = {"temperature": 0.8, "top_k": 4, "top_p": 1.0}
    warped = decode_loop._warped(scores, settings)
    p = decode_loop._softmax(warped)
    rng = np.random.default_rng(7)
    counts = np.bincount([decode_loop._sample(warped, rng) for _ in range(20000)], minlength=6)
    assert counts[4] == counts[5] == 0  # outside the top 4: never drawn
    expected = p[:4] * 20000
    chi2 = float(np.sum((counts[:4] - expected) ** 2 / expected))
    assert chi2 < 16.27, (counts, expected)  # p = 0.001 for 3 degrees of freedom


# --- what the builder decides ---------------------------------------------------------------------------------------


def test_an_encoder_decoder_model_is_refused_with_the_reason(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="onnxruntime-genai serves decoder-only .causal. models; t5 is an encoder-decoder"):
        build_bundle(tiny_model("t5", "text-generation"), tmp_path / "t5.bundle", engine=GENAI)


def test_auto_keeps_an_encoder_decoder_model_on_torch_and_records_why(tiny_model, tmp_path: Path) -> None:
    result = build_bundle(tiny_model("bart", "text-generation"), tmp_path / "bart.bundle")
    assert result.engine_choice["chosen"] == "torch"
    assert "bart is an encoder-decoder model" in result.engine_choice["reason"]
    info = subprocess.run(
        [sys.executable, "-m", "bundle_builder", "inspect", str(result.path)], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert "engine        torch (holds torch)" in info and "bart is an encoder-decoder model" in info


def test_a_generation_setting_the_loop_lacks_keeps_the_model_on_torch(tiny_model, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_model("llama", "text-generation"), tmp_path / "src")
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "no_repeat_ngram_size": 3}))
    with pytest.raises(SourceError, match=r"generation_config sets \['no_repeat_ngram_size'\], which the runtime's"):
        build_bundle(folder, tmp_path / "x.bundle", engine=GENAI)
    result = build_bundle(folder, tmp_path / "auto.bundle")
    assert result.engine_choice["chosen"] == "torch" and "no_repeat_ngram_size" in result.engine_choice["reason"]


def test_engines_for_another_task_are_refused(tiny_model, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="task 'text-generation' is built for the onnxruntime-genai or torch engine"):
        build_bundle(tiny_model("llama", "text-generation"), tmp_path / "a.bundle", engine="onnxruntime")
    with pytest.raises(SourceError, match="--engine onnxruntime-genai serves text-generation; this model's task is"):
        build_bundle(tiny_model("bert"), tmp_path / "b.bundle", engine=GENAI)


def test_int8_records_its_fidelity_and_refuses_below_the_floor(tiny_model, tmp_path: Path) -> None:
    folder = tiny_model("llama", "text-generation")
    result = build_bundle(folder, tmp_path / "int8.bundle", quantize="int8", floors=Floors(token_top1=0.0))
    m = load_model(result.path)
    q = m.manifest.quantization
    assert (m.manifest.engine, m.manifest.dtype, m.dtype) == (GENAI, "int8", "int8")
    assert q["prompts"] == len(m.manifest.golden) + 10 and q["floor"] == {"teacher_forced_top1": 0.0}
    assert 0.0 <= q["teacher_forced_top1"] <= 1.0 and 0 <= q["greedy_prefix"]["min"] <= q["greedy_prefix"]["mean"]
    assert result.size_bytes < (tmp_path / "int8.bundle").stat().st_size * 2
    with pytest.raises(SourceError, match=r"below the floor 1.01; build without --quantize, or lower the floor"):
        build_bundle(folder, tmp_path / "refused.bundle", quantize="int8", floors=Floors(token_top1=1.01))
    assert not (tmp_path / "refused.bundle").exists()


def test_serving_a_genai_bundle_imports_neither_torch_nor_transformers(llama) -> None:
    _, pred = llama
    code = (
        "import sys; from runtime.predictor import Predictor; from runtime.settings import Settings\n"
        f"p = Predictor.load(Settings(model_bundle={str(pred.model.bundle.path)!r}, device='cpu'))\n"
        "out = p.predict(['hello'], {'max_new_tokens': 4, 'details': True, 'decoder_input_details': True})\n"
        "assert out.outputs[0]['details']['generated_tokens'] == 4\n"
        "print(sorted(m for m in ('torch', 'transformers', 'bundle_builder') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


# --- SmolLM2-135M-Instruct: the default build, exact ----------------------------------------------------------------

SMOL_HELD_OUT = [
    [{"role": "user", "content": "Write one sentence about autumn leaves."}],
    [{"role": "user", "content": "How many legs does a spider have?"}],
    [{"role": "system", "content": "You answer tersely."}, {"role": "user", "content": "Is water wet?"}],
]


@pytest.fixture(scope="module")
def smol_genai(smollm2_folder, tmp_path_factory) -> tuple[Path, Any]:
    """The default build (engine auto) of the converted SmolLM2 folder."""
    result = build_bundle(smollm2_folder, tmp_path_factory.mktemp("smol-genai") / "smol.bundle")
    return smollm2_folder, result


@pytest.mark.slow
def test_smollm2_default_build_chooses_genai_by_measurement(smol_genai) -> None:
    _, result = smol_genai
    choice = result.engine_choice
    assert choice["chosen"] == GENAI and set(choice["p50_ms"]) == {"torch", GENAI}, choice
    assert choice["p50_ms"][GENAI] < choice["p50_ms"]["torch"]


@pytest.mark.slow
def test_smollm2_greedy_equals_model_generate_on_prompts_it_was_not_built_with(smol_genai) -> None:
    folder, result = smol_genai
    src = Source(folder)
    pred = predictor_for(result.path, num_threads=2)
    for chat in SMOL_HELD_OUT:
        out, [text] = src.generate([chat], max_new_tokens=40)
        new = out[0, src.encode([chat])["input_ids"].shape[1] :].tolist()
        answer = pred.predict([chat], {"max_new_tokens": 40, "details": True}).outputs[0]
        assert [t["id"] for t in answer["details"]["tokens"]] == new, chat
        assert answer["generated_text"] == text


@pytest.mark.parametrize("engine", ["torch", GENAI])
def test_the_deployment_budget_measures_the_longest_prompt_a_request_may_send(tiny_model, tmp_path: Path, engine: str) -> None:
    """A generation prompt is never cut: the maximal request is the longest one the function accepts with the default
    max_new_tokens (the tiny llama's 128 positions less 32), not a max-length text the function would refuse."""
    result = build_bundle(tiny_model("llama", "text-generation"), tmp_path / "b.bundle", engine=engine, budget=True)
    measured = result.budget["measured"]
    assert measured["maximal_request"] == "a 96-token prompt + 32 new tokens"
    assert measured["typical_p50_ms"] > 0 and measured["rss_peak_mb"] >= measured["rss_init_mb"] > 0
