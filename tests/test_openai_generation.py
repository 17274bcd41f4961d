"""/v1/chat/completions and /v1/completions called by the real, pinned `openai` client through `make serve`'s local
HTTP front (Function URL events, the official RIE). The peer for every text is transformers' generate() on the source
folder (the chat rendered with apply_chat_template), greedy or seeded.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from test_generation import CHATS, Source, chat_model  # noqa: F401  (chat_model: the tiny llama with a chat template)

PROMPTS = ["the capital of france is", "once upon a time there was a small model"]


@pytest.fixture(scope="module")
def source(chat_model) -> Source:
    return Source(chat_model[0])


@pytest.fixture(scope="module")
def client(chat_model) -> Any:
    import openai

    from devtools.rie import RieFunction
    from devtools.serve import HANDLER, LocalServer

    env = {"MODEL_BUNDLE": str(chat_model[1])}
    with RieFunction(HANDLER, env=env, timeout_s=120) as fn, LocalServer(fn) as srv:
        http = openai.DefaultHttpxClient(trust_env=False)  # no proxy from the environment: 127.0.0.1 only
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="local", max_retries=0, http_client=http)
        http.close()


def generated_count(source: Source, prompt: Any, **kwargs: Any) -> int:
    [count] = source.new_token_counts([prompt], **kwargs)
    return count


def test_chat_completion_equals_generate_on_the_rendered_template(client, source) -> None:
    for chat in CHATS:
        answer = client.chat.completions.create(model="tiny", messages=chat, max_tokens=10)
        _, [text] = source.generate([chat], max_new_tokens=10)
        [choice] = answer.choices
        assert choice.message.role == "assistant" and choice.message.content == text
        new = generated_count(source, chat, max_new_tokens=10)
        assert choice.finish_reason == ("length" if new == 10 else "stop")
        prompt_tokens = len(source.encode([chat])["input_ids"][0])
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt_tokens, new)
        assert answer.usage.total_tokens == prompt_tokens + new
        assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")


def test_completions_answer_every_prompt_n_times_in_order(client, source) -> None:
    answer = client.completions.create(model="tiny", prompt=PROMPTS, max_tokens=6, n=2)
    _, texts = source.generate(PROMPTS, max_new_tokens=6)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert [c.text for c in answer.choices] == [texts[0], texts[0], texts[1], texts[1]]  # greedy: n equal answers
    counts = source.new_token_counts(PROMPTS, max_new_tokens=6)
    prompt_tokens = sum(len(source.encode([p])["input_ids"][0]) for p in PROMPTS)  # each prompt counted once
    assert answer.usage.prompt_tokens == prompt_tokens
    assert answer.usage.completion_tokens == 2 * sum(counts)


def test_a_temperature_samples_and_the_seed_reproduces_it(client, source) -> None:
    kwargs = {"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 8, "temperature": 1.3, "seed": 42}
    first = client.completions.create(**kwargs).choices[0].text
    assert client.completions.create(**kwargs).choices[0].text == first
    torch.manual_seed(42)  # what the seed does: seeds torch's generator right before generate()
    _, [text] = source.generate([PROMPTS[0]], max_new_tokens=8, do_sample=True, temperature=1.3)
    assert first == text
    others = {client.completions.create(**{**kwargs, "seed": s}).choices[0].text for s in range(5)}
    assert len(others) > 1


def test_a_stop_string_finishes_with_stop(client, source) -> None:
    _, [text] = source.generate([PROMPTS[1]], max_new_tokens=12)
    stop = text.strip()[:2]
    answer = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=12, stop=[stop])
    assert answer.choices[0].finish_reason == "stop" and stop not in answer.choices[0].text


def test_the_client_raises_with_the_reason_and_the_function_keeps_serving(client) -> None:
    import openai

    with pytest.raises(openai.UnprocessableEntityError, match="is not served: this function answers with one"):
        client.chat.completions.create(model="tiny", messages=CHATS[0], stream=False, extra_body={"stream": True})
    with pytest.raises(openai.UnprocessableEntityError, match="'max_new_tokens' must be an integer between 1"):
        client.completions.create(model="tiny", prompt="x", max_tokens=0)
    with pytest.raises(openai.BadRequestError, match='"messages" must be a non-empty list'):
        client.chat.completions.create(model="tiny", messages=[])
    assert client.completions.create(model="tiny", prompt="ok", max_tokens=2).choices[0].text is not None
