"""Issue #14 items 6-8: one budget on the work a generation request asks for, ranges for every generation parameter,
and truncation that is never silent (every task, every route).

Peers: transformers' `model.generate` on the source folder (what breaks at tiny temperatures, what top_k=0 means),
the source tokenizer (token counts named in the errors), `apply_chat_template` (the tokens a chat counts).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import test_generation
import torch
from support import FakeContext, load_event, new_function
from test_generation import LONG, Source, assert_refused, http_event

from runtime.batch import BatchRun, Failed
from runtime.errors import InputTooLongError, PayloadTooLargeError
from runtime.events import SqsRecord
from runtime.logs import get_logger

chat_model = test_generation.chat_model  # fixture: the tiny llama with a chat template, (source folder, bundle)
BUDGET_FIX = "send fewer inputs or beams, shorter prompts or a lower max_new_tokens"


class Collect:
    """A result sink that keeps what it is given (the SQS results, by messageId)."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def send(self, results: list[Any]) -> set[str]:
        self.results.update((r.message_id, r.body) for r in results)
        return set()


def outcomes_of(fn: Any, event: dict[str, Any]) -> dict[str, Any]:
    """What the batch processor makes of each record (by messageId), without delivering anything."""
    run = BatchRun([SqsRecord(r) for r in event["Records"]], fn.settings.limits, get_logger("WARNING"))
    return {o.message_id: o for chunk in run.chunks(fn.settings.max_batch_items) for o in run.predict(chunk, fn.predictor)}


def sqs_event(bodies: dict[str, Any]) -> dict[str, Any]:
    """events/sqs_batch.json with one record per (messageId, body)."""
    event = load_event("sqs_batch.json")
    template = event["Records"][0]
    event["Records"] = [dict(copy.deepcopy(template), messageId=mid, body=json.dumps(b)) for mid, b in bodies.items()]
    return event


def no_generate(fn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make generate() fail loudly: a refused request must be refused before any compute."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generate() ran for a request over the budget")

    monkeypatch.setattr(fn.predictor.task.model, "generate", refuse)


@pytest.fixture(scope="module")
def t5_tokens(tiny_model) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model("t5", "text-generation")))
    return lambda text: len(tok(text)["input_ids"])


@pytest.fixture(scope="module")
def llama_tokens(tiny_model) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model("llama", "text-generation")))
    return lambda text: len(tok(text)["input_ids"])


# --- item 6: one budget on inputs x beams x sequences x (prompt + new tokens) ------------------------------------


def test_32_inputs_x_8_beams_x_256_new_tokens_is_refused_by_the_default_budget(
    tiny_bundle, t5_tokens, monkeypatch
) -> None:
    """Every parameter is within its own limit (32 inputs, 8 beams, 256 new tokens); the product is not."""
    fn = new_function(tiny_bundle("t5", "text-generation"))  # t5: no position limit on prompt + new tokens
    no_generate(fn, monkeypatch)
    n = t5_tokens("hello")
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": ["hello"] * 32, "parameters": {"num_beams": 8, "max_new_tokens": 256}}, FakeContext())
    cost = 32 * 8 * (n + 256)
    assert str(info.value) == (
        f"the generation work asked for is 32 inputs x 8 beams x 1 sequence x ({n} tokens of the longest prompt + 256 "
        f"new tokens) = {cost} tokens; the limit is 16384 (MAX_GENERATION_TOKENS): {BUDGET_FIX}"
    )
    assert info.value.status == 413


def test_a_normal_request_passes_the_default_budget(tiny_bundle) -> None:
    """1 input x 1 beam x (prompt + 256 new tokens), and a greedy batch of 32 short prompts, are served."""
    fn = new_function(tiny_bundle("t5", "text-generation"))
    assert fn.settings.max_generation_tokens == 16384
    assert fn.handle({"inputs": "hello", "parameters": {"max_new_tokens": 256}}, FakeContext())["outputs"]
    assert (
        len(fn.handle({"inputs": ["hello"] * 32, "parameters": {"max_new_tokens": 64}}, FakeContext())["outputs"]) == 32
    )


def test_budget_counts_the_longest_prompt_and_is_a_413_over_http(tiny_bundle, llama_tokens, monkeypatch) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_GENERATION_TOKENS="100")
    no_generate(fn, monkeypatch)
    n = llama_tokens(LONG)
    response = fn.handle(http_event({"inputs": ["ok", LONG], "parameters": {"max_new_tokens": 8}}), FakeContext())
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"] == {
        "type": "PayloadTooLargeError",
        "message": f"the generation work asked for is 2 inputs x 1 beam x 1 sequence x ({n} tokens of the longest "
        f"prompt + 8 new tokens) = {2 * (n + 8)} tokens; the limit is 100 (MAX_GENERATION_TOKENS): {BUDGET_FIX}",
        "request_id": "req-test-1",
    }


def test_budget_at_its_limit_passes_and_one_token_over_is_refused(tiny_bundle, llama_tokens) -> None:
    n = llama_tokens("hello")
    # a budget this small refuses the bundle's own golden example too: no canary at init
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_GENERATION_TOKENS=str(2 * (n + 4)), CANARY="false")
    assert fn.handle({"inputs": "hello", "parameters": {"num_beams": 2, "max_new_tokens": 4}}, FakeContext())
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": "hello", "parameters": {"num_beams": 2, "max_new_tokens": 5}}, FakeContext())
    assert str(info.value) == (
        f"the generation work asked for is 1 input x 2 beams x 1 sequence x ({n} prompt tokens + 5 new tokens) = "
        f"{2 * (n + 5)} tokens; the limit is {2 * (n + 4)} (MAX_GENERATION_TOKENS): {BUDGET_FIX}"
    )


def test_budget_counts_the_beams_of_the_models_own_generation_config(tiny_bundle, llama_tokens, monkeypatch) -> None:
    """A request that leaves num_beams out gets the model's stored value, and is charged for it."""
    n = llama_tokens("hello")
    budget = str(3 * (n + 4) - 1)
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_GENERATION_TOKENS=budget, CANARY="false")
    monkeypatch.setitem(fn.predictor.task._base_config, "num_beams", 3)
    no_generate(fn, monkeypatch)
    with pytest.raises(PayloadTooLargeError, match=rf"1 input x 3 beams x 1 sequence x \({n} prompt tokens"):
        fn.handle({"inputs": "hello", "parameters": {"max_new_tokens": 4}}, FakeContext())


def test_budget_counts_the_rendered_chat_template_tokens(chat_model, monkeypatch) -> None:
    """A chat is charged the tokens of its rendered template (roles, markup and special tokens), as transformers'
    apply_chat_template tokenises it."""
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the capital of france is"}]
    src = Source(chat_model[0])
    n = len(
        src.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )
    assert n > len(src.tokenizer("be brief the capital of france is")["input_ids"])
    fn = new_function(chat_model[1], MAX_GENERATION_TOKENS=str(n + 3))
    assert fn.handle({"inputs": chat, "parameters": {"max_new_tokens": 3}}, FakeContext())["outputs"]
    no_generate(fn, monkeypatch)
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": chat, "parameters": {"max_new_tokens": 4}}, FakeContext())
    assert f"x ({n} prompt tokens + 4 new tokens) = {n + 4} tokens; the limit is {n + 3}" in str(info.value)


def test_chat_roles_count_against_the_character_limit(tiny_bundle) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_INPUT_CHARS="100")
    chat = [{"role": "x" * 99, "content": "hi"}]
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": chat}, FakeContext())
    assert str(info.value) == "the chat has 101 characters (roles and contents); the limit is 100 (MAX_INPUT_CHARS)"


def test_sqs_record_over_the_budget_fails_alone_and_a_merged_pass_over_it_is_served_per_record(
    tiny_bundle, llama_tokens
) -> None:
    """Records that share parameters share a forward pass; the budget bounds each pass, and a pass over it falls back
    to one pass per record, so records within the budget are answered and the one over it is reported."""
    n = llama_tokens(LONG)
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_GENERATION_TOKENS=str(n + 4))
    fn._sink = sink = Collect()
    params = {"max_new_tokens": 4}
    event = sqs_event(
        {
            "a": {"inputs": LONG, "parameters": params},
            "b": {"inputs": LONG, "parameters": params},  # a and b merged: 2 x (n + 4), over the budget
            "c": {"inputs": [LONG, "ok"], "parameters": params},  # over the budget on its own
        }
    )
    assert fn.handle(event, FakeContext()) == {"batchItemFailures": [{"itemIdentifier": "c"}]}
    assert set(sink.results) == {"a", "b"}
    failed = outcomes_of(fn, event)["c"]
    assert isinstance(failed, Failed) and isinstance(failed.error, PayloadTooLargeError)
    assert str(failed.error).startswith("the generation work asked for is 2 inputs x 1 beam x 1 sequence")


def test_budget_setting_must_be_positive() -> None:
    from runtime.settings import Settings, SettingsError

    with pytest.raises(SettingsError) as info:
        Settings.from_env({"MODEL_BUNDLE": "x", "MAX_GENERATION_TOKENS": "0"})
    assert str(info.value) == (
        "environment variable MAX_GENERATION_TOKENS='0' is not allowed: use a whole number from 1 to 1000000000"
    )


# --- item 7: every generation parameter in its range ---------------------------------------------------------------

SAMPLE = {"do_sample": True, "max_new_tokens": 4}
TEMPERATURE_RULE = (
    "parameter 'temperature' must be a number >= 0.01 and <= 100.0 (below 0.01 sampling is greedy decoding in effect, "
    "and below about 1e-38 the float32 scores overflow), got "
)
PENALTY_RULE = (
    "parameter 'repetition_penalty' must be a number >= 0.01 and <= 100.0 (below 0.01 repeated tokens' scores are "
    "scaled over 100-fold, and below about 1e-38 the float32 scores overflow), got "
)
TOP_P_RULE = "parameter 'top_p' must be a number > 0.0 and <= 1.0, got "
BAD_VALUES = [
    ("temperature-1e-300", {**SAMPLE, "temperature": 1e-300}, TEMPERATURE_RULE + "1e-300"),
    ("temperature-0.001", {**SAMPLE, "temperature": 0.001}, TEMPERATURE_RULE + "0.001"),
    ("temperature-zero", {**SAMPLE, "temperature": 0}, TEMPERATURE_RULE + "0"),
    ("temperature-negative", {"temperature": -1}, TEMPERATURE_RULE + "-1"),
    ("temperature-nan", {**SAMPLE, "temperature": math.nan}, TEMPERATURE_RULE + "nan"),
    ("temperature-inf", {**SAMPLE, "temperature": math.inf}, TEMPERATURE_RULE + "inf"),
    ("penalty-1e-300", {**SAMPLE, "repetition_penalty": 1e-300}, PENALTY_RULE + "1e-300"),
    ("penalty-zero", {"repetition_penalty": 0}, PENALTY_RULE + "0"),
    ("penalty-inf", {"repetition_penalty": math.inf}, PENALTY_RULE + "inf"),
    ("penalty-nan", {"repetition_penalty": math.nan}, PENALTY_RULE + "nan"),
    ("top-p-zero", {**SAMPLE, "top_p": 0}, TOP_P_RULE + "0"),
    ("top-p-over-one", {**SAMPLE, "top_p": 1.5}, TOP_P_RULE + "1.5"),
    ("top-p-nan", {**SAMPLE, "top_p": math.nan}, TOP_P_RULE + "nan"),
    ("top-p-minus-inf", {**SAMPLE, "top_p": -math.inf}, TOP_P_RULE + "-inf"),
    (
        "top-k-negative",
        {**SAMPLE, "top_k": -1},
        "parameter 'top_k' must be an integer >= 0 (0: no top-k filtering), got -1",
    ),
    (
        "top-k-float",
        {**SAMPLE, "top_k": 2.5},
        "parameter 'top_k' must be an integer >= 0 (0: no top-k filtering), got 2.5",
    ),
    ("beams-zero", {"num_beams": 0}, "parameter 'num_beams' must be an integer between 1 and 8, got 0"),
    ("beams-nine", {"num_beams": 9}, "parameter 'num_beams' must be an integer between 1 and 8, got 9"),
    (
        "max-new-tokens-zero",
        {"max_new_tokens": 0},
        "parameter 'max_new_tokens' must be an integer between 1 and 256 (MAX_NEW_TOKENS), got 0",
    ),
    ("do-sample-number", {"do_sample": 1}, "parameter 'do_sample' must be true or false, got 1"),
]


@pytest.mark.parametrize("params, message", [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES])
def test_out_of_range_generation_parameters_are_a_422_naming_value_and_range(tiny_bundle, params, message) -> None:
    # over HTTP, NaN and Infinity arrive as the JSON extensions Python's json module reads
    assert_refused(new_function(tiny_bundle("llama", "text-generation")), params, message)


def test_tiny_sampling_values_break_transformers_generate_too(source_llama) -> None:
    """The peer: transformers' own generate() fails on these values (the 500 of the issue), which is why they are
    refused up front; at the lower bound it samples."""
    for params in ({"temperature": 1e-300}, {"repetition_penalty": 1e-300}, {"temperature": 1e-40}):
        with pytest.raises(RuntimeError, match="probability tensor contains either `inf`, `nan` or element < 0"):
            source_llama.generate(["hello"], max_new_tokens=4, do_sample=True, **params)
    source_llama.generate(["hello"], max_new_tokens=4, do_sample=True, temperature=0.01, repetition_penalty=0.01)


def test_sqs_record_with_a_tiny_temperature_fails_as_invalid_parameters_not_internal(tiny_bundle) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"))
    event = sqs_event({"tiny": {"inputs": "hello", "parameters": {**SAMPLE, "temperature": 1e-300}}})
    [outcome] = outcomes_of(fn, event).values()
    assert isinstance(outcome, Failed) and outcome.error.error_type == "InvalidParametersError"


@pytest.fixture(scope="module")
def source_llama(tiny_model) -> Source:
    return Source(tiny_model("llama", "text-generation"))


@pytest.mark.parametrize(
    "params",
    [{"top_k": 0}, {"temperature": 0.01}, {"repetition_penalty": 0.01, "top_k": 0, "top_p": 1e-9}],
    ids=["top-k-zero", "temperature-at-its-bound", "bounds"],
)
def test_sampling_values_at_their_bounds_equal_source_generate(params, tiny_bundle, source_llama) -> None:
    """top_k=0 is transformers' "no top-k filtering"; the lower bounds are served and sample what generate samples."""
    fn = new_function(tiny_bundle("llama", "text-generation"))
    prompts = ["the capital of france is", "once upon a time"]
    torch.manual_seed(7)
    _, texts = source_llama.generate(prompts, max_new_tokens=6, do_sample=True, **params)
    answer = fn.handle(  # the request's seed seeds torch's generator right before generate()
        {"inputs": prompts, "parameters": {"max_new_tokens": 6, "do_sample": True, "seed": 7, **params}}, FakeContext()
    )
    assert [o["generated_text"] for o in answer["outputs"]] == texts


# --- item 8: truncation is never silent ----------------------------------------------------------------------------


def test_generation_prompt_past_the_window_names_its_token_count(tiny_bundle, llama_tokens) -> None:
    """A prompt is never cut: over the window it is a 413 naming its real token count (not "128 or more")."""
    very_long = LONG * 4
    n = llama_tokens(very_long)
    assert n > 128
    fn = new_function(tiny_bundle("llama", "text-generation"))
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": very_long}, FakeContext())
    assert str(info.value) == (
        f"the prompt has {n} tokens; the limit is 127 (the model's 128 positions, less one for a new token)"
    )
    response = fn.handle(http_event({"inputs": ["ok", very_long]}), FakeContext())
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"]["message"] == (
        f"a prompt has {n} tokens; the limit is 127 (the model's 128 positions, less one for a new token)"
    )


def test_generation_chat_past_the_window_names_its_rendered_token_count(chat_model) -> None:
    chat = [{"role": "user", "content": LONG * 4}]
    src = Source(chat_model[0])
    n = len(
        src.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )
    fn = new_function(chat_model[1])
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": chat}, FakeContext())
    assert str(info.value) == (
        f"the prompt has {n} tokens; the limit is 127 (the model's 128 positions, less one for a new token)"
    )


def test_generation_reports_no_truncation_for_a_prompt_that_fits(tiny_bundle) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"))
    answer = fn.handle({"inputs": LONG, "parameters": {"max_new_tokens": 4}}, FakeContext())
    assert "truncated_inputs" not in answer["timing"]


OVER = "the capital of france is paris and the battery lasts all day " * 8  # over the tiny encoders' 64 tokens
ENCODERS = [("bert", "feature-extraction"), ("bert", "text-classification")]


def _ask(fn: Any, how: str, inputs: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """The answer's timing (or the error body) of one request, sent the way `how` says."""
    if how == "direct":
        return fn.handle({"inputs": inputs, "parameters": params}, FakeContext())["timing"]
    if how == "http":
        response = fn.handle(http_event({"inputs": inputs, "parameters": params}), FakeContext())
        return json.loads(response["body"]).get("timing") or {
            "status": response["statusCode"],
            **json.loads(response["body"]),
        }
    fn._sink = sink = Collect()
    answer = fn.handle(sqs_event({"m1": {"inputs": inputs, "parameters": params}}), FakeContext())
    if answer["batchItemFailures"]:
        return {"failed": True}
    return sink.results["m1"]["timing"]


@pytest.mark.parametrize("how", ["direct", "http", "sqs"])
@pytest.mark.parametrize("kind, task", ENCODERS, ids=[t for _, t in ENCODERS])
def test_encoder_answers_say_which_inputs_were_cut(kind: str, task: str, how: str, tiny_bundle) -> None:
    fn = new_function(tiny_bundle(kind, task))
    assert _ask(fn, how, ["ok", OVER, "fine", OVER], {})["truncated_inputs"] == [1, 3]
    assert "truncated_inputs" not in _ask(fn, how, ["ok", "fine"], {})


@pytest.mark.parametrize("kind, task", ENCODERS, ids=[t for _, t in ENCODERS])
def test_encoder_truncate_false_is_a_413_naming_tokens_and_limit(kind: str, task: str, tiny_bundle, tiny_model) -> None:
    from transformers import AutoTokenizer

    n = len(AutoTokenizer.from_pretrained(str(tiny_model(kind, task)))(OVER)["input_ids"])
    fn = new_function(tiny_bundle(kind, task))
    message = (
        f'"inputs"[1] has {n} tokens; the limit is 64 (the model\'s max length); shorten it, or send "truncate": '
        "true to cut it"
    )
    with pytest.raises(InputTooLongError) as info:
        fn.handle({"inputs": ["ok", OVER], "parameters": {"truncate": False}}, FakeContext())
    assert str(info.value) == message and info.value.status == 413
    body = _ask(fn, "http", ["ok", OVER], {"truncate": False})
    assert body["status"] == 413 and body["error"]["message"] == message
    assert _ask(fn, "sqs", ["ok", OVER], {"truncate": False}) == {"failed": True}


def _route(fn: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    from test_routes import http_event as route_event

    response = fn.handle(route_event(path, body), FakeContext())
    return response["statusCode"], response["headers"], json.loads(response["body"])


@pytest.mark.parametrize(
    "path, body", [("/embed", {"inputs": ["ok", OVER]}), ("/v1/embeddings", {"input": ["ok", OVER], "model": "m"})]
)
def test_embedding_routes_say_which_inputs_were_cut_in_their_headers(path: str, body: dict, tiny_bundle) -> None:
    """TEI's and OpenAI's bodies have no place for it: the X-Truncated-Inputs header and the timing header do."""
    fn = new_function(tiny_bundle("bert", "feature-extraction"))
    status, headers, _ = _route(fn, path, body)
    assert status == 200
    assert json.loads(headers["X-Timing"])["truncated_inputs"] == [1]
    assert headers["X-Truncated-Inputs"] == "1"
    status, headers, _ = _route(fn, path, {**body, ("inputs" if "inputs" in body else "input"): ["ok"]})
    assert status == 200 and "X-Truncated-Inputs" not in headers


def test_rerank_route_says_its_request_was_cut(cross_encoder) -> None:
    fn = new_function(cross_encoder[1])
    status, headers, _ = _route(fn, "/rerank", {"query": "a question", "texts": ["short", OVER]})
    assert status == 200 and headers["X-Truncated-Inputs"] == "0"
    status, _, body = _route(fn, "/rerank", {"query": "a question", "texts": ["short", OVER], "truncate": False})
    assert status == 413 and body["error"].startswith('"inputs"[0] (text 1) has ')
