"""Text Generation Inference's `details`, seeds, and decoding that stops before Lambda's timeout.

The peer is transformers' own generate() on the source folder: the same tokens, the log-probabilities it scores them
with (output_scores), the prompt's log-probabilities from one forward pass. The deadline tests drive the decoding loop
with a context whose remaining time runs out, directly and through the official runtime emulator.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from devtools.rie import RieFunction
from support import new_function
from test_generation import Source, predictor_for

PROMPT = "the capital of france is"


ENGINES = ["torch", "onnxruntime-genai"]  # generate() with criteria, and the runtime's own loop on the GenAI graph


@pytest.fixture(scope="module", params=ENGINES)
def llama(request, tiny_model, tiny_bundle) -> tuple[Source, Any]:
    bundle = tiny_bundle("llama", "text-generation", engine=request.param)
    return Source(tiny_model("llama", "text-generation")), predictor_for(bundle)


def answer(pred: Any, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = pred.predict([prompt], params).outputs[0]
    return out


def source_scores(src: Source, prompt: str, **kwargs: Any) -> tuple[list[int], list[torch.Tensor]]:
    """The new tokens generate() picks and the log-softmax of the scores it picked them from, step by step."""
    enc = src.encode([prompt])
    with torch.inference_mode():
        out = src.model.generate(
            **enc, do_sample=False, return_dict_in_generate=True, output_scores=True, **kwargs
        )
    new = out.sequences[0, enc["input_ids"].shape[1] :].tolist()
    return new, [torch.log_softmax(s[0].float(), dim=-1) for s in out.scores]


def test_details_carry_the_tokens_and_log_probabilities_generate_scored(llama) -> None:
    src, pred = llama
    out = answer(pred, PROMPT, {"max_new_tokens": 12, "details": True, "top_n_tokens": 3})
    new, steps = source_scores(src, PROMPT, max_new_tokens=12)
    details = out["details"]
    assert [t["id"] for t in details["tokens"]] == new[: details["generated_tokens"]]
    assert details["generated_tokens"] == len(details["tokens"]) > 0
    for token, lp in zip(details["tokens"], steps):
        assert token["logprob"] == pytest.approx(float(lp[token["id"]]), abs=1e-4)
        assert token["text"] == src.tokenizer.decode([token["id"]])
        assert token["special"] == (token["id"] in src.tokenizer.all_special_ids)
    for top, lp in zip(details["top_tokens"], steps):
        best = torch.topk(lp, 3)
        assert [t["id"] for t in top] == best.indices.tolist()
        assert [t["logprob"] for t in top] == pytest.approx(best.values.tolist(), abs=1e-4)
    eos = src.model.generation_config.eos_token_id
    expected = "eos_token" if new[-1] == eos and len(new) < 12 else "length"
    assert details["finish_reason"] == expected
    assert details["input_tokens"] == len(src.encode([PROMPT])["input_ids"][0])
    assert details["seed"] is None and details["prefill"] == []  # greedy: no seed; prefill only when asked


def test_decoder_input_details_score_the_prompt_as_the_model_does(llama) -> None:
    src, pred = llama
    out = answer(pred, PROMPT, {"max_new_tokens": 2, "details": True, "decoder_input_details": True})
    ids = src.encode([PROMPT])["input_ids"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(src.model(input_ids=ids).logits[0].float(), dim=-1)
    prefill = out["details"]["prefill"]
    assert [t["id"] for t in prefill] == ids[0].tolist()
    assert prefill[0]["logprob"] is None
    for k, token in enumerate(prefill[1:], start=1):
        assert token["logprob"] == pytest.approx(float(logprobs[k - 1, token["id"]]), abs=1e-4)


def test_a_stop_string_is_the_finish_reason(llama) -> None:
    src, pred = llama
    _, [text] = src.generate([PROMPT], max_new_tokens=12)
    stop = text.strip()[:2]
    assert stop, "the tiny model generated no text to stop on"
    out = answer(pred, PROMPT, {"max_new_tokens": 12, "stop": [stop], "details": True})
    assert out["details"]["finish_reason"] == "stop_sequence"
    assert stop not in out["generated_text"]


def test_a_seed_reproduces_a_sampled_answer_and_details_report_it(llama) -> None:
    _, pred = llama
    params = {"max_new_tokens": 16, "do_sample": True, "temperature": 1.5, "details": True}
    first = answer(pred, PROMPT, {**params, "seed": 1234})
    again = answer(pred, PROMPT, {**params, "seed": 1234})
    assert first == again and first["details"]["seed"] == 1234
    texts = {answer(pred, PROMPT, {**params, "seed": s})["generated_text"] for s in range(6)}
    assert len(texts) > 1, "six seeds gave one text: the seed does not reach the sampler"
    unseeded = answer(pred, PROMPT, params)["details"]["seed"]
    assert isinstance(unseeded, int)  # chosen by the function, reported so the answer can be reproduced
    assert answer(pred, PROMPT, {**params, "seed": unseeded}) == answer(pred, PROMPT, {**params, "seed": unseeded})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"top_n_tokens": 2}, "send \"details\": true too"),
        ({"decoder_input_details": True}, "send \"details\": true too"),
        ({"details": True, "num_beams": 2}, "needs num_beams 1|must be 1 on this bundle's onnxruntime-genai engine"),
        ({"details": True, "top_n_tokens": 6}, "'top_n_tokens' must be an integer between 1 and 5"),
        ({"seed": -1}, "'seed' must be an integer between 0 and"),
    ],
)
def test_details_parameters_are_checked(llama, params: dict[str, Any], message: str) -> None:
    from runtime.errors import InvalidParametersError

    _, pred = llama
    with pytest.raises(InvalidParametersError, match=message):
        answer(pred, PROMPT, params)


# --- the deadline ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def long_llama(request, tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """A random llama with the tiny one's tokenizer, 4096 positions and enough width (512, 6 layers) that decoding 4000
    tokens takes seconds on either engine (the tiny one decodes 4000 tokens in 0.3 s on onnxruntime-genai)."""
    import transformers

    from bundle_builder.build import build_bundle

    folder = tmp_path_factory.mktemp("long-llama") / "model"
    shutil.copytree(tiny_model("llama", "text-generation"), folder)
    config = transformers.AutoConfig.from_pretrained(str(folder))
    config.update(
        {"max_position_embeddings": 4096, "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 6,
         "num_attention_heads": 8, "num_key_value_heads": 2}
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    values = json.loads((folder / "tokenizer_config.json").read_text())
    values["model_max_length"] = 4096
    (folder / "tokenizer_config.json").write_text(json.dumps(values))
    out = folder.parent / "long-llama.bundle"
    build_bundle(folder, out, engine=request.param)
    return folder, out


class Expiring:
    """A Lambda context whose invocation ends `budget_ms` after it is made."""

    aws_request_id = "req-deadline"
    function_name = "test-function"

    def __init__(self, budget_ms: float) -> None:
        self.ends = time.monotonic() + budget_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


def test_decoding_stops_before_the_deadline_with_what_it_has(long_llama) -> None:
    folder, bundle = long_llama
    fn = new_function(bundle, MAX_NEW_TOKENS="4000", DEADLINE_MARGIN_MS="300", MAX_GENERATION_TOKENS="100000")
    event = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4000}}
    started = time.monotonic()
    out = fn.handle(event, Expiring(800))["outputs"]
    took_ms = (time.monotonic() - started) * 1000
    details = out["details"]
    assert details["finish_reason"] == "time_limit", details
    assert 0 < details["generated_tokens"] < 4000
    assert took_ms < 800, f"answered {took_ms:.0f} ms after an 800 ms deadline"
    # what it has is the greedy answer's beginning: generate() alone, told to stop at as many tokens
    _, [text] = Source(folder).generate([PROMPT], max_new_tokens=details["generated_tokens"])
    assert out["generated_text"] == text
    # with time to spare the same request runs to its length, and says so only when details are asked
    short = fn.handle({"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}, Expiring(60_000))["outputs"]
    assert "details" not in short


def test_through_the_runtime_emulator_a_long_answer_returns_before_the_timeout(long_llama) -> None:
    """A 20 s timeout with DEADLINE_MARGIN_MS 19 s leaves about 1 s to decode 4000 tokens, which this tiny model cannot
    do: the answer comes back cut, with finish_reason time_limit, instead of the invocation timing out. (A warm-up
    first: the RIE counts init in the first invocation's time.)"""
    _, bundle = long_llama
    env = {"MODEL_BUNDLE": str(bundle), "MAX_NEW_TOKENS": "4000", "DEADLINE_MARGIN_MS": "19000",
           "MAX_GENERATION_TOKENS": "100000"}
    with RieFunction("handler.handler", env=env, timeout_s=20) as fn:
        assert fn.invoke({"inputs": "warm up", "parameters": {"max_new_tokens": 2}}).ok
        result = fn.invoke({"inputs": PROMPT, "parameters": {"max_new_tokens": 4000}})
        assert result.ok, (result.body, fn.logs)
    details = result.body["outputs"]["details"]
    assert details["finish_reason"] == "time_limit"
    assert 0 < details["generated_tokens"] < 4000
