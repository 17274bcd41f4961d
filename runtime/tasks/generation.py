"""text-generation: causal and encoder-decoder models through `model.generate`, with time to first token."""

from __future__ import annotations

import time
from typing import Any

from runtime.errors import InvalidInputError, PayloadTooLargeError
from runtime.tasks import params as p


class _FirstTokenClock:
    """A generate() streamer that only notes when the first new token arrives."""

    def __init__(self, is_encoder_decoder: bool) -> None:
        # generate() first puts the prompt (decoder-only) or the decoder start token (seq2seq); the next put is the
        # first generated token.
        self._puts = 0
        self.first_token_ns: int | None = None

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2 and self.first_token_ns is None:
            self.first_token_ns = time.perf_counter_ns()

    def end(self) -> None:
        pass


class GenerationTask:
    name = "text-generation"

    def __init__(self, loaded: Any, *, max_new_tokens_limit: int = 256, max_input_tokens: int | None = None) -> None:
        m = loaded.manifest
        gen = m.get("generation") or {}
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = loaded.device
        self.is_encoder_decoder: bool = bool(gen.get("is_encoder_decoder", False))
        self.eos_token_id = gen.get("eos_token_id")
        self.pad_token_id = gen.get("pad_token_id")
        self.default_max_new_tokens = min(int(gen.get("default_max_new_tokens", 32)), max_new_tokens_limit)
        self.max_new_tokens_limit = max_new_tokens_limit
        self.max_input_tokens = max_input_tokens or loaded.tokenizer.spec.max_length
        self.chat_template: str | None = gen.get("chat_template")
        self.special_tokens: dict[str, str] = gen.get("special_tokens", {})
        self.last_clock: _FirstTokenClock | None = None

    def check_parameters(self, params: dict[str, Any]) -> dict[str, Any]:
        out = p.check(
            self.name,
            params,
            {
                "max_new_tokens": p.integer(1, self.max_new_tokens_limit),
                "do_sample": p.boolean,
                "temperature": p.number(0.0, 100.0, lo_open=True),
                "top_p": p.number(0.0, 1.0, lo_open=True),
                "top_k": p.integer(1),
                "repetition_penalty": p.number(0.0, 100.0, lo_open=True),
                "num_beams": p.integer(1, 8),
                "stop": _stop_list,
                "return_full_text": p.boolean,
            },
        )
        out.setdefault("max_new_tokens", self.default_max_new_tokens)
        return out

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """Apply the bundled chat template (Jinja, sandboxed) with a generation prompt, as transformers does."""
        if not self.chat_template:
            raise InvalidInputError(
                "chat-style inputs need a chat template, and this model's bundle has none; send plain text inputs"
            )
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            return env.from_string(self.chat_template).render(
                messages=messages, add_generation_prompt=True, **self.special_tokens
            )
        except TemplateError as e:
            raise InvalidInputError(f"the chat messages do not fit the model's chat template: {e}") from None

    def preprocess(self, inputs: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        texts = [self.render_chat(x) if isinstance(x, list) else x for x in inputs]
        # A rendered chat template already holds the special tokens.
        add_special = not any(isinstance(x, list) for x in inputs)
        batch = self.tokenizer.encode(texts, add_special_tokens=add_special)
        n = int(batch["attention_mask"].sum(axis=1).max())
        if n >= self.max_input_tokens:
            raise PayloadTooLargeError(
                f"the prompt has {n} tokens or more; this function accepts fewer than {self.max_input_tokens} "
                "(set MAX_INPUT_TOKENS or shorten the input)"
            )
        import torch

        return {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}

    def forward(self, batch: dict[str, Any], params: dict[str, Any]) -> Any:
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        sampling = params.get("do_sample", False)
        config = GenerationConfig(
            max_new_tokens=params["max_new_tokens"],
            do_sample=sampling,
            temperature=params.get("temperature", 1.0) if sampling else None,
            top_p=params.get("top_p", 1.0) if sampling else None,
            top_k=params.get("top_k", 50) if sampling else None,
            repetition_penalty=params.get("repetition_penalty", 1.0),
            num_beams=params.get("num_beams", 1),
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )
        stops = params.get("stop") or []
        prompt_len = 0 if self.is_encoder_decoder else batch["input_ids"].shape[1]
        tokenizer = self.tokenizer

        class _StopOnStrings(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                import torch

                done = [any(s in tokenizer.decode(row[prompt_len:].tolist()) for s in stops) for row in input_ids]
                return torch.tensor(done, device=input_ids.device)

        clock = _FirstTokenClock(self.is_encoder_decoder)
        self.last_clock = clock
        criteria = StoppingCriteriaList([_StopOnStrings()]) if stops else None
        # streamer only supports batch size 1
        streamer = clock if batch["input_ids"].shape[0] == 1 and config.num_beams == 1 else None
        import torch

        with torch.inference_mode():
            return self.model.generate(**batch, generation_config=config, stopping_criteria=criteria, streamer=streamer)

    def postprocess(self, sequences: Any, batch: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        prompt_len = 0 if self.is_encoder_decoder else batch["input_ids"].shape[1]
        out = []
        for row, prompt in zip(sequences.cpu().tolist(), batch["input_ids"].cpu().tolist()):
            new = row[prompt_len:]
            text = self.tokenizer.decode(new)
            for s in params.get("stop") or []:
                cut = text.find(s)
                if cut >= 0:
                    text = text[:cut]
            if params.get("return_full_text") and not self.is_encoder_decoder:
                text = self.tokenizer.decode(prompt) + text
            n_new = sum(1 for t in new if t != self.pad_token_id)
            out.append({"generated_text": text, "generated_tokens": n_new})
        return out


def _stop_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value) or len(value) > 8:
        raise p.InvalidParametersError(f"parameter {name!r} must be a string or a list of up to 8 non-empty strings, got {value!r}")
    return value
