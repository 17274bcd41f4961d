"""Subprocess entry: `python -m bench.generation_subjects SPEC.json RESULT.json` measures one generation subject in a
fresh process, for bench.generation_llama.

Subjects (spec["subject"]), each greedy on the same chat, `max_new_tokens` new tokens, `threads` threads:
    ours          this project's function: Function.load (the Lambda init: read the bundle, build the engine, run
                  the canary), then Predictor.predict on the chat, rendered with the bundle's own template; on the
                  default build of the GGUF-converted folder
    ours-int8     the same code on the same folder's `--quantize int8` build (spec["bundle"] names it)
    transformers  AutoModelForCausalLM.from_pretrained on the folder the bundle was built from, then
                  apply_chat_template + model.generate
    llama-cpp     llama_cpp.Llama on the GGUF file itself, then create_completion(stream=True) on the chat text
                  rendered by the orchestrator with the bundle's template (runs in .venv-llama)

Each child loads, answers the chat once (the cold run: its first token, stamped with time.monotonic_ns, is compared
by the parent with its spawn time), then `repeats` more times (the warm runs). Every run is timed from the call with
the request (chat or text) to the first new token and to the end, so tokenising is in every subject's time to first
token. Peak RSS is the kernel's high-water mark (VmHWM) of the whole process at exit: load, cold and warm runs.

Only the stdlib is imported at module level: the llama-cpp child runs in a venv without torch or this project's
runtime requirements.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# one run -> (call, first new token, end: time.monotonic_ns stamps; new tokens; new text)
Generate = Callable[[], tuple[int, int, int, int, str]]


def _ours(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    from runtime.function import Function
    from runtime.settings import Settings

    fn = Function.load(Settings(model_bundle=spec["bundle"], num_threads=spec["threads"]))
    predictor = fn.predictor
    messages = spec["messages"]
    params = {"max_new_tokens": spec["max_new_tokens"], "do_sample": False, "num_beams": 1}
    task: Any = predictor.task  # the text-generation task: render_chat and its tokenizer, for the prompt check
    prompt_ids = task.tokenizer.encode([task.render_chat(messages)], add_special_tokens=False, truncate=False)
    info = {
        "init_ms": fn.init_ms,
        "model": fn.served.model,  # engine and implementation, as every answer reports them
        "dtype": fn.served.dtype,
        "threads": fn.served.threads,
        "prompt_ids": prompt_ids["input_ids"][0].tolist(),
    }

    def generate() -> tuple[int, int, int, int, str]:
        timer = predictor.new_timer()
        t0 = time.monotonic_ns()
        p = predictor.predict([messages], dict(params), timer=timer)
        end = time.monotonic_ns()
        if p.generated_tokens is None or p.time_to_first_token_ms is None:
            raise ValueError(f"{spec['bundle']}: no generated_tokens or time_to_first_token_ms; not text-generation?")
        # the first token is stamped inside predict, from the start of its inference stage, which follows the
        # preprocess stage (chat rendering + tokenising) by microseconds
        first = t0 + timer.stages_ns.get("preprocess", 0) + round(p.time_to_first_token_ms * 1e6)
        return t0, first, end, p.generated_tokens, p.outputs[0]["generated_text"]

    return generate, info


def _transformers(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    import torch
    import transformers

    from bench.generation import FirstTokenStreamer

    torch.set_num_threads(spec["threads"])
    folder = spec["folder"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = spec["messages"]
    params = {"max_new_tokens": spec["max_new_tokens"], "do_sample": False, "num_beams": 1}
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    info = {
        "rendered": rendered,
        "prompt_ids": tokenizer(rendered, add_special_tokens=False)["input_ids"],
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }

    def generate() -> tuple[int, int, int, int, str]:
        clock = FirstTokenStreamer(time.monotonic_ns)
        t0 = time.monotonic_ns()
        # return_dict=True gives a BatchEncoding; its annotation is the union of every output form
        enc: Any = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.inference_mode():
            out = model.generate(**enc, **params, streamer=clock)
        start = enc["input_ids"].shape[1]
        text = tokenizer.decode(out[0, start:], skip_special_tokens=True)
        end = time.monotonic_ns()
        if clock.first_token_ns is None:
            raise RuntimeError("generate() finished without streaming a first new token")
        return t0, clock.first_token_ns, end, int(out.shape[1] - start), str(text)

    return generate, info


def _llama_cpp(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    import llama_cpp

    t = spec["threads"]
    llm = llama_cpp.Llama(
        model_path=spec["gguf"], n_threads=t, n_threads_batch=t, n_ctx=spec["n_ctx"], seed=0, verbose=False
    )
    text = spec["text"]
    info = {
        "prompt_ids": llm.tokenize(text.encode(), add_bos=True, special=True),
        "versions": {"llama_cpp_python": llama_cpp.__version__},
    }
    greedy = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0}

    def generate() -> tuple[int, int, int, int, str]:
        llm.reset()  # no prompt prefix reused from the previous run: every run evaluates the whole prompt
        first: int | None = None
        parts: list[str] = []
        tokens = 0
        t0 = time.monotonic_ns()
        for chunk in llm.create_completion(text, max_tokens=spec["max_new_tokens"], stream=True, **greedy):
            choice = chunk["choices"][0]
            if first is None:
                first = time.monotonic_ns()
            if choice["finish_reason"] is None:
                tokens += 1  # one chunk per new token; the last chunk only carries the finish reason
            parts.append(choice["text"])
        end = time.monotonic_ns()
        if first is None:
            raise RuntimeError("create_completion streamed nothing")
        return t0, first, end, tokens, "".join(parts)

    return generate, info


SUBJECTS: dict[str, Callable[[dict[str, Any]], tuple[Generate, dict[str, Any]]]] = {
    "ours": _ours,
    "ours-int8": _ours,  # another bundle, the same function
    "transformers": _transformers,
    "llama-cpp": _llama_cpp,
}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load spec["subject"], answer the chat once (cold) and spec["repeats"] times (warm); see the module docstring.

    Returns:
        {"loaded_ns", "cold": run, "warm": [run, ...], "peak_rss_bytes", "rss_after_load_bytes", **subject info};
        a run is {"first_token_ns", "ttft_ms", "total_ms", "decode_tokens_per_s", "tokens", "text"}.
    """
    from bench.measure import proc_status_bytes

    generate, info = SUBJECTS[spec["subject"]](spec)
    loaded_ns = time.monotonic_ns()
    rss_after_load = proc_status_bytes("VmRSS")
    runs = [_run(generate) for _ in range(1 + spec["repeats"])]
    return {
        **info,
        "loaded_ns": loaded_ns,
        "cold": runs[0],
        "warm": runs[1:],
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": proc_status_bytes("VmHWM"),
    }


def _run(generate: Generate) -> dict[str, Any]:
    t0, first, end, tokens, text = generate()
    decode_s = (end - first) / 1e9
    return {
        "first_token_ns": first,
        "ttft_ms": round((first - t0) / 1e6, 3),
        "total_ms": round((end - t0) / 1e6, 3),
        # the tokens after the first, over the time after the first: prefill is in ttft_ms only
        "decode_tokens_per_s": round((tokens - 1) / decode_s, 3) if tokens > 1 and decode_s > 0 else None,
        "tokens": tokens,
        "text": text,
    }


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result = measure(json.loads(spec_path.read_text()))
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
