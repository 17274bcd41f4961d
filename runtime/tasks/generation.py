"""text-generation: causal and encoder-decoder models through `model.generate`, with time to first token.

Parameters a request leaves out take the model's own generation_config (stored in the bundle at build time, so
`decoder_start_token_id`, `forced_bos_token_id`, `no_repeat_ngram_size`, `num_beams`... are those of the source),
except `do_sample`, which defaults to false: greedy, reproducible answers unless sampling is asked for. `stop` strings
end a sequence when its new text contains one; the answer is cut just before the first stop string.

Decoding stops before Lambda's timeout: after each step the invocation's time left (runtime/deadline.py) must cover
the slowest step so far plus DEADLINE_MARGIN_MS, else the answer is what was decoded, with finish_reason
"time_limit". `"details": true` adds Text Generation Inference's details: finish_reason ("length", "eos_token",
"stop_sequence", "time_limit"), generated_tokens, seed, the tokens with their log-probabilities, the prompt's
(`decoder_input_details`) and the top alternatives of each step (`top_n_tokens`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import InvalidInputError, InvalidParametersError, PayloadTooLargeError
from runtime.golden import GoldenCheck, text_match
from runtime.loader import LoadedModel
from runtime.manifest import GenerationManifest
from runtime.settings import Settings
from runtime.tasks import Chunk, decode_loop
from runtime.tasks import params as p
from runtime.tasks.chat import ChatTemplate

# generation_config keys that say where the config came from, not how to generate
_VOLATILE = ("transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash")
_SAMPLING = ("temperature", "top_p", "top_k")
# Measured with transformers' generate(): temperature or repetition_penalty under about 1e-38 (1e-300 is 0 in float32)
# turns the float32 scores into inf/NaN and sampling fails. 0.01 is far from that, and already greedy in effect.
_TEMPERATURE_FLOOR = (
    "below 0.01 sampling is greedy decoding in effect, and below about 1e-38 the float32 scores overflow"
)
_PENALTY_FLOOR = (
    "below 0.01 repeated tokens' scores are scaled over 100-fold, and below about 1e-38 the float32 scores overflow"
)


@dataclass(frozen=True)
class Generated:
    """The engine's output: each input's new tokens (torch: with the padding generate() adds after an early eos), when
    the first new token existed, whether the time limit stopped it, each row's per-step log-probabilities of the
    processed scores (when details ask for them) and the seed of a sampled answer."""

    new_tokens: list[list[int]]
    first_token_ns: int | None
    time_limited: bool = False
    logprobs: list[list[np.ndarray]] | None = None
    seed: int | None = None


class GenerationTask:
    name = "text-generation"
    length_buckets = False  # prompts keep their order: each pass decodes its prompts together

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        m = model.manifest
        gen = m.generation or GenerationManifest()
        max_new_tokens_limit = settings.max_new_tokens
        max_input_tokens = settings.max_input_tokens or None
        self.model = model.model
        self.engine = model.engine
        # a step engine (onnxruntime-genai) is decoded by the runtime's own loop; torch by model.generate
        self.stepped = hasattr(model.engine, "start")
        self.tokenizer = model.tokenizer
        self.device = model.device
        self.is_encoder_decoder = gen.is_encoder_decoder
        base = {k: v for k, v in gen.generation_config.items() if k not in _VOLATILE}
        eos = list(gen.eos_token_id) if isinstance(gen.eos_token_id, tuple) else gen.eos_token_id
        base.setdefault("eos_token_id", eos)
        base.setdefault("pad_token_id", gen.pad_token_id)
        # transformers' own stop_strings need its tokenizer object: the model's default stops become ours
        stops = base.pop("stop_strings", None) or []
        self.default_stop: list[str] = [stops] if isinstance(stops, str) else list(stops)
        self._base_config = base
        self.eos_token_ids: set[int] = set(_ids(base["eos_token_id"]))
        self.max_length = m.max_length
        # encoder-decoder models with learned decoder positions (BART) cannot decode past them
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        self.max_new_tokens_limit = max_new_tokens_limit
        self.max_new_tokens_why = "MAX_NEW_TOKENS"
        if self.is_encoder_decoder and isinstance(positions, int) and positions - 1 < max_new_tokens_limit:
            self.max_new_tokens_limit, self.max_new_tokens_why = positions - 1, f"the decoder's {positions} positions"
        self.default_max_new_tokens = min(gen.default_max_new_tokens, self.max_new_tokens_limit)
        # A prompt is never cut (its end is what generate continues): over the limit it is refused with its real
        # count. A decoder-only prompt leaves at least one of the model's positions for a new token.
        window = self.max_length if self.is_encoder_decoder else self.max_length - 1
        if max_input_tokens and max_input_tokens <= window:
            self.max_input_tokens, self.max_input_tokens_why = max_input_tokens, "MAX_INPUT_TOKENS"
        elif self.is_encoder_decoder:
            self.max_input_tokens, self.max_input_tokens_why = window, "the model's max length"
        else:
            self.max_input_tokens = window
            self.max_input_tokens_why = f"the model's {self.max_length} positions, less one for a new token"
        self.max_generation_tokens = settings.max_generation_tokens
        self.deadline_margin_ms = settings.deadline_margin_ms
        self.cleanup_spaces = gen.clean_up_tokenization_spaces
        self.special_ids = self.tokenizer.special_ids()
        template = gen.chat_template
        self.chat = ChatTemplate(template, dict(gen.special_tokens)) if template else None

    def check_inputs(self, inputs: list[Any]) -> None:
        """Text prompts and chats both go (a chat is rendered with the model's template in preprocess)."""
        if any(isinstance(x, dict) for x in inputs):
            raise InvalidInputError(
                'text pairs and rerank requests are for text-classification models; send {"inputs": "prompt"} or a chat'
            )

    def check_parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = p.check(
            self.name,
            params,
            {
                "max_new_tokens": self._max_new_tokens,
                "do_sample": p.boolean,
                "temperature": p.number(0.01, 100.0, why=_TEMPERATURE_FLOOR),
                "top_p": p.number(0.0, 1.0, lo_open=True),
                "top_k": p.integer(0, why="0: no top-k filtering"),
                "repetition_penalty": p.number(0.01, 100.0, why=_PENALTY_FLOOR),
                "num_beams": p.integer(1, 8),
                "stop": _stop_list,
                "return_full_text": p.boolean,
                "seed": p.integer(0, 2**32 - 1),
                "details": p.boolean,
                "decoder_input_details": p.boolean,
                "top_n_tokens": p.integer(1, 5),
            },
        )
        if (out.get("decoder_input_details") or out.get("top_n_tokens")) and not out.get("details"):
            raise InvalidParametersError(
                "parameters 'decoder_input_details' and 'top_n_tokens' shape the details: send \"details\": true too"
            )
        if self.stepped and out.get("num_beams", 1) > 1:
            raise InvalidParametersError(
                f"parameter 'num_beams' must be 1 on this bundle's {self.engine.name} engine, which decodes one "
                "sequence per prompt; build the bundle with --engine torch for beam search"
            )
        if out.get("details") and out.get("num_beams", self._base_config.get("num_beams") or 1) > 1:
            raise InvalidParametersError(
                "parameter 'details' needs num_beams 1: a beam search's scores are not per-token log-probabilities"
            )
        out.setdefault("max_new_tokens", self.default_max_new_tokens)
        if self.default_stop and "stop" not in out:
            out["stop"] = self.default_stop
        return out

    def _max_new_tokens(self, name: str, value: Any) -> int:
        hi = self.max_new_tokens_limit
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise InvalidParametersError(
                f"parameter {name!r} must be an integer between 1 and {hi} ({self.max_new_tokens_why}), got {value!r}"
            )
        return value

    def maximal_request(self, text: str, items: int) -> tuple[list[str], dict[str, Any]]:
        """The deployment budget's maximal request: one prompt of as many tokens as a request may send with the default
        max_new_tokens (a prompt is never cut, so a longer one would be refused), cut from `text`."""
        room = self.max_input_tokens
        if not self.is_encoder_decoder:
            room = min(room, self.max_length - self.default_max_new_tokens)
        ids = self.tokenizer.encode([text], add_special_tokens=False, truncate=False)["input_ids"][0].tolist()
        specials = len(self.tokenizer.encode([""], add_special_tokens=True, truncate=False)["input_ids"][0])
        keep = max(room - specials, 1)
        prompt = self._decode(ids[:keep])
        while keep > 1 and self._prompt_tokens(prompt) > room:  # decoding and encoding again may merge differently
            keep -= 1
            prompt = self._decode(ids[:keep])
        return [prompt], {"max_new_tokens": self.default_max_new_tokens}

    def _prompt_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode([text], add_special_tokens=True, truncate=False)["input_ids"][0])

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of a chat: the bundled chat template with a generation prompt, as transformers renders it."""
        if self.chat is None:
            raise InvalidInputError(
                "chat-style inputs need a chat template, and this model's bundle has none; send plain text inputs"
            )
        return self.chat.render(messages)

    def preprocess(self, inputs: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        prompts = []
        which = "the prompt" if len(inputs) == 1 else "a prompt"
        for x in inputs:
            # A rendered chat already holds its special tokens (transformers encodes it with add_special_tokens=False).
            text, add_special = (self.render_chat(x), False) if isinstance(x, list) else (x, True)
            ids = self.tokenizer.encode([text], add_special_tokens=add_special, truncate=False)["input_ids"][0].tolist()
            self._check_length(which, len(ids), params["max_new_tokens"])
            prompts.append(ids)
        self._check_budget([len(ids) for ids in prompts], params)
        # one (B, T) batch, padded on the tokenizer's side (left for decoder-only models: generate continues the end)
        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.spec.pad_id if self.tokenizer.spec.pad_id is not None else 0
        input_ids = np.full((len(prompts), width), pad, dtype=np.int64)
        mask = np.zeros((len(prompts), width), dtype=np.int64)
        for row, ids in enumerate(prompts):
            cols = slice(width - len(ids), width) if self.tokenizer.spec.padding_side == "left" else slice(0, len(ids))
            input_ids[row, cols], mask[row, cols] = ids, 1
        return {"input_ids": input_ids, "attention_mask": mask, "prompts": prompts}

    def _check_length(self, which: str, n: int, max_new_tokens: int) -> None:
        if n > self.max_input_tokens:
            raise PayloadTooLargeError(
                f"{which} has {n} tokens; the limit is {self.max_input_tokens} ({self.max_input_tokens_why})"
            )
        if not self.is_encoder_decoder and n + max_new_tokens > self.max_length:
            raise PayloadTooLargeError(
                f"{which} has {n} tokens and max_new_tokens is {max_new_tokens}: {n + max_new_tokens} positions, more "
                f"than the model's {self.max_length}; shorten the prompt or lower max_new_tokens"
            )

    def _check_budget(self, lengths: list[int], params: dict[str, Any]) -> None:
        """One generate() call's work, before it runs: (inputs x beams x return sequences) rows, each as long as the
        longest prompt (the batch is padded to it) plus max_new_tokens, within MAX_GENERATION_TOKENS."""
        beams = params.get("num_beams") or self._base_config.get("num_beams") or 1
        sequences = self._base_config.get("num_return_sequences") or 1
        width, new = max(lengths), params["max_new_tokens"]
        cost = len(lengths) * beams * sequences * (width + new)
        if cost > self.max_generation_tokens:
            prompt = f"{width} prompt tokens" if len(lengths) == 1 else f"{width} tokens of the longest prompt"
            raise PayloadTooLargeError(
                f"the generation work asked for is {_many(len(lengths), 'input')} x {_many(beams, 'beam')} x "
                f"{_many(sequences, 'sequence')} x ({prompt} + {new} new tokens) = {cost} tokens; the limit is "
                f"{self.max_generation_tokens} (MAX_GENERATION_TOKENS): send fewer inputs or beams, shorter prompts "
                "or a lower max_new_tokens"
            )

    def settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """The model's stored generation_config with this request's parameters on top."""
        settings = {**self._base_config, "max_new_tokens": params["max_new_tokens"]}
        settings["do_sample"] = params.get("do_sample", False)
        for name in ("repetition_penalty", "num_beams", *_SAMPLING):
            if name in params:
                settings[name] = params[name]
        if not settings["do_sample"]:
            for name in _SAMPLING:  # greedy: sampling knobs have no effect (and transformers warns about them)
                settings.pop(name, None)
        settings.pop("max_length", None)  # max_new_tokens decides
        return settings

    def generation_config(self, params: dict[str, Any]) -> Any:
        """settings() as a transformers GenerationConfig (torch engine)."""
        from transformers import GenerationConfig

        return GenerationConfig(**self.settings(params))

    def forward(self, batch: dict[str, Any], params: dict[str, Any]) -> Generated:
        settings = self.settings(params)
        seed = None
        if settings["do_sample"]:  # a sampled answer is reproducible from the seed its details report
            seed = params.get("seed", random.randrange(2**32))
        stops = params.get("stop") or []
        stopped = (lambda new: any(s in self._decode(new) for s in stops)) if stops else None
        deadline = decode_loop.Deadline(self.deadline_margin_ms)
        details = bool(params.get("details"))
        if self.stepped:
            rows = []
            for prompt in batch["prompts"]:
                rng = np.random.default_rng(seed) if seed is not None else None
                rows.append(
                    decode_loop.decode(
                        self.engine,
                        prompt,
                        settings,
                        eos=self.eos_token_ids,
                        deadline=deadline,
                        rng=rng,
                        stopped=stopped,
                        keep_logprobs=details,
                    )
                )
            return Generated(
                [r.tokens for r in rows],
                rows[0].first_token_ns,
                any(r.time_limited for r in rows),
                [r.logprobs or [] for r in rows] if details else None,
                seed,
            )
        from runtime.tasks import generate_torch

        config = self.generation_config(params)
        config.return_dict_in_generate = config.output_scores = details  # on the config: generate() warns of kwargs
        out = generate_torch.generate(
            self.model,
            self.device,
            batch,
            config,
            deadline=deadline,
            stopped=stopped,
            new_tokens_start=self._new_tokens_start(batch),
            seed=seed,
        )
        return Generated(out.new_tokens, out.first_token_ns, deadline.fired, out.logprobs, seed)

    def _new_tokens_start(self, batch: dict[str, Any]) -> int:
        # decoder-only: the output repeats the (padded) prompt; encoder-decoder: it starts with decoder_start_token_id
        return 1 if self.is_encoder_decoder else batch["input_ids"].shape[1]

    def postprocess(self, generated: Generated, batch: dict[str, Any], params: dict[str, Any]) -> Chunk:
        stops = params.get("stop") or []
        out = []
        total = 0
        facts: list[dict[str, Any]] = []
        for i, (new, prompt) in enumerate(zip(generated.new_tokens, batch["prompts"])):
            n = self._generated_count(new, stops)
            text = self._decode(new[:n])
            stopped = False
            for s in stops:
                cut = text.find(s)
                if cut >= 0:
                    text, stopped = text[:cut], True
            if params.get("return_full_text") and not self.is_encoder_decoder:
                text = self._decode(prompt) + text
            answer: dict[str, Any] = {"generated_text": text}
            reason = self._finish_reason(new[:n], stopped, generated.time_limited, params["max_new_tokens"])
            details = self._details(generated, i, new[:n], prompt, reason, params)
            if params.get("details") or reason == "time_limit":  # a cut answer always says why
                answer["details"] = details
            out.append(answer)
            facts.append({k: details[k] for k in ("finish_reason", "generated_tokens", "input_tokens")})
            total += n
        return Chunk(out, generated_tokens=total, first_token_ns=generated.first_token_ns, facts=facts)

    def _finish_reason(self, new: list[int], stopped: bool, time_limited: bool, max_new_tokens: int) -> str:
        if new and new[-1] in self.eos_token_ids:
            return "eos_token"
        if stopped:
            return "stop_sequence"
        if time_limited and len(new) < max_new_tokens:
            return "time_limit"
        return "length"

    def _details(
        self, generated: Generated, row: int, new: list[int], prompt: list[int], reason: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Text Generation Inference's details of one answer (log-probabilities only when details were asked)."""
        details: dict[str, Any] = {
            "finish_reason": reason,
            "generated_tokens": len(new),
            "input_tokens": len(prompt),
            "seed": generated.seed,
        }
        if not params.get("details"):
            return details
        steps = (generated.logprobs or [[]])[row][: len(new)]
        details["prefill"] = self._prefill(prompt) if params.get("decoder_input_details") else []
        details["tokens"] = [self._token(t, float(lp[t])) for t, lp in zip(new, steps)]
        if params.get("top_n_tokens"):
            n = params["top_n_tokens"]
            best = [np.argsort(-lp, kind="stable")[:n] for lp in steps]  # highest first; ties: the lower id
            details["top_tokens"] = [[self._token(int(t), float(lp[t])) for t in ids] for ids, lp in zip(best, steps)]
        return details

    def _prefill(self, prompt: list[int]) -> list[dict[str, Any]]:
        """The prompt's tokens, each with its log-probability given the ones before it (the first has none)."""
        if self.is_encoder_decoder:  # the prompt is the encoder's input: the model never predicts it
            return [{"id": t, "text": self._token_text(t), "logprob": None} for t in prompt]
        if self.stepped:
            logprobs = decode_loop.prompt_logprobs(self.engine, prompt)
        else:
            from runtime.tasks import generate_torch

            logprobs = generate_torch.prompt_logprobs(self.model, self.device, prompt)
        return [
            {"id": t, "text": self._token_text(t), "logprob": None if k == 0 else float(logprobs[k - 1, t])}
            for k, t in enumerate(prompt)
        ]

    def _token(self, token: int, logprob: float) -> dict[str, Any]:
        return {"id": token, "text": self._token_text(token), "logprob": logprob, "special": token in self.special_ids}

    def _token_text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    def compare(self, expected: list[Any], actual: list[Any], precision: str) -> GoldenCheck:
        return text_match(expected, actual, precision)

    def _generated_count(self, new: list[int], stops: list[str]) -> int:
        """Tokens the model produced for one sequence: up to its first eos (included) or the token that completed a
        stop string; what follows is padding generate() adds once a sequence is done (pad may equal eos: SmolLM2)."""
        n = next((i + 1 for i, t in enumerate(new) if t in self.eos_token_ids), len(new))
        if stops:
            n = next((k for k in range(1, n + 1) if any(s in self._decode(new[:k]) for s in stops)), n)
        return n

    def _decode(self, ids: list[int]) -> str:
        """Like transformers' tokenizer.decode(ids, skip_special_tokens=True) with the source tokenizer's clean-up."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return clean_up_tokenization(text) if self.cleanup_spaces else text


def _many(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def clean_up_tokenization(text: str) -> str:
    """transformers' PreTrainedTokenizerBase.clean_up_tokenization (spaces before punctuation and contractions)."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


def _stop_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value) or len(value) > 8:
        raise InvalidParametersError(
            f"parameter {name!r} must be a string or a list of up to 8 non-empty strings, got {value!r}"
        )
    return value
