"""Generation speed: this project's predictor on a bundle vs plain `model.generate` on the source folder.

Same settings (greedy, one prompt, `max_new_tokens`), same process, same torch threads, measured alternately
(`repeats` rounds of one run each, ours first in even rounds, the peer first in odd ones) after one warm-up of each,
so that neither side gets a quieter machine or a warmer cache. Reported per side, as medians:

    time_to_first_token_ms   generate() called -> first new token chosen (prefill + one step)
    tokens_per_s             new tokens / the whole generate() call (what the handler reports as tokens_per_s)
    decode_tokens_per_s      (new tokens - 1) / the time after the first token

Run: python -m bench.generation --bundle B --source FOLDER [--prompt TEXT | --chat TEXT] [--max-new-tokens N]
(`python -m bench` runs it as its generation row, on SmolLM2-135M-Instruct; see bench.bundles)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class FirstTokenStreamer:
    """The peer's clock: a transformers streamer; generate() first puts the prompt (or decoder start), then tokens.

    `clock` stamps the first new token (bench.generation_subjects passes time.monotonic_ns to compare across processes).
    """

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.puts = 0
        self.first_token_ns: int | None = None
        self._clock = clock

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first_token_ns = self._clock()

    def end(self) -> None:
        pass


def bench_generation(
    bundle_path: str | Path,
    source_folder: str | Path,
    prompt: str | list[dict[str, str]],
    max_new_tokens: int,
    *,
    repeats: int = 5,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time to first token and tokens/s of our predictor and of `model.generate` on the source, greedy.

    Args:
        bundle_path: a text-generation bundle built from `source_folder`.
        source_folder: the save_pretrained folder the bundle was built from (for GGUF: the converted folder).
        prompt: a text, or a chat ([{"role", "content"}, ...]) rendered with the chat template on both sides.
        max_new_tokens: new tokens per run (fewer when the model ends with eos first; both sides stop alike).
        repeats: timed runs per side, after one warm-up each.
        threads: torch intra-op threads for both sides; default torch's current setting.

    Returns:
        {"ours": {...}, "peer": {...}, "same_text": bool, "ratio_tokens_per_s": ours/peer, "threads", "settings"}.
    """
    import torch
    import transformers

    from runtime.predictor import Predictor
    from runtime.settings import Settings
    from runtime.timing import StageTimer

    threads = threads or torch.get_num_threads()
    predictor = Predictor.load(Settings(model_bundle=str(bundle_path), device="cpu", canary=False, num_threads=threads))

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source_folder))
    config = transformers.AutoConfig.from_pretrained(str(source_folder))
    auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(str(source_folder), dtype=torch.float32).eval()
    if isinstance(prompt, list):
        enc = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        if not isinstance(enc, transformers.BatchEncoding):  # return_dict=True gives one; typed as any output
            raise TypeError(f"apply_chat_template(return_dict=True) returned {type(enc).__name__}, not BatchEncoding")
    else:
        enc = tokenizer(prompt, return_tensors="pt")
    start = 1 if config.is_encoder_decoder else enc["input_ids"].shape[1]
    params = {"max_new_tokens": max_new_tokens, "do_sample": False, "num_beams": 1}

    def ours() -> dict[str, Any]:
        timer = StageTimer()
        prediction = predictor.predict([prompt], dict(params), timer=timer)
        total_ms = timer.stages_ns["inference"] / 1e6
        text = prediction.outputs[0]["generated_text"]
        tokens, ttft_ms = prediction.generated_tokens, prediction.time_to_first_token_ms
        if tokens is None or ttft_ms is None:
            raise ValueError(
                f"{bundle_path}: the prediction has no generated_tokens or time_to_first_token_ms; "
                "is it a text-generation bundle?"
            )
        return _row(tokens, ttft_ms, total_ms, text)

    def peer() -> dict[str, Any]:
        clock = FirstTokenStreamer()
        t0 = time.perf_counter_ns()
        with torch.inference_mode():
            out = model.generate(**enc, **params, streamer=clock)
        total_ms = (time.perf_counter_ns() - t0) / 1e6
        text = tokenizer.decode(out[0, start:], skip_special_tokens=True)
        if clock.first_token_ns is None:
            raise RuntimeError("generate() finished without streaming a first new token")
        if not isinstance(text, str):  # one sequence decodes to one str; typed str | list[str]
            raise TypeError(f"decode of one sequence returned {type(text).__name__}, not str")
        return _row(out.shape[1] - start, (clock.first_token_ns - t0) / 1e6, total_ms, text)

    ours(), peer()  # warm-up: first-call allocations, lazy imports
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "peer": []}
    sides = {"ours": ours, "peer": peer}
    for i in range(repeats):
        for side in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):  # neither side always runs first
            runs[side].append(sides[side]())
    result: dict[str, Any] = {side: _median(rows) for side, rows in runs.items()}
    result["same_text"] = all(r["text"] == runs["peer"][0]["text"] for r in runs["ours"] + runs["peer"])
    result["ratio_tokens_per_s"] = round(result["ours"]["tokens_per_s"] / result["peer"]["tokens_per_s"], 3)
    result["threads"] = threads
    result["settings"] = {**params, "prompt_tokens": int(enc["input_ids"].shape[1]), "repeats": repeats}
    return result


def _row(tokens: int, ttft_ms: float, total_ms: float, text: str) -> dict[str, Any]:
    decode_s = (total_ms - ttft_ms) / 1e3
    return {
        "generated_tokens": int(tokens),
        "time_to_first_token_ms": ttft_ms,
        "total_ms": total_ms,
        "tokens_per_s": tokens / (total_ms / 1e3),
        "decode_tokens_per_s": (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
        "text": text,
    }


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"generated_tokens": rows[0]["generated_tokens"], "text": rows[0]["text"]}
    for key in ("time_to_first_token_ms", "total_ms", "tokens_per_s", "decode_tokens_per_s"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--source", required=True, help="the folder the bundle was built from")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prompt", default="The capital of France is")
    group.add_argument("--chat", help="one user message, rendered with the chat template")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    prompt: Any = [{"role": "user", "content": args.chat}] if args.chat else args.prompt
    result = bench_generation(
        args.bundle, args.source, prompt, args.max_new_tokens, repeats=args.repeats, threads=args.threads
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
