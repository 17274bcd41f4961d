"""`--engine onnxruntime-genai`: a causal LM's decoder graph, made by ONNX Runtime GenAI's model builder.

The builder (`python -m onnxruntime_genai.models.builder`, run in its own process) reads the source folder and writes
a graph with the KV cache as inputs and outputs, fused attention (GroupQueryAttention) and rotary embeddings, plus
its genai_config.json. The bundle stores the graph with its weights inside (one raw file, so the runtime maps it) and
the config; the tokenizer stays the bundle's own tokenizer.json, which the runtime encodes and decodes with.

Precisions:
    fp32   the weights as they are: greedy answers equal model.generate's token for token (verify replays the
           golden examples; the runtime's canary too)
    int8   `--quantize int8`: the builder's int8 weights (MatMulNBits, 8 bits, blocks of 32); the build measures
           teacher-forced top-1 agreement with the fp32 model and the identical greedy prefix on the golden prompts plus
           GENERATION_PROMPTS, records them ("quantization"), and refuses below the floor (Floors.token_top1)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bundle_builder.engine_choice import Contents
from bundle_builder.errors import SourceError
from bundle_builder.quantize import Floors
from runtime.bundle import write_bundle
from runtime.engines import GENAI_CONFIG, GENAI_MODEL
from runtime.tasks.decode_loop import LOOP_SETTINGS

ENGINE = "onnxruntime-genai"
PRECISIONS = {"float32": "fp32", "int8": "int8"}
# generation_config keys that do not change how tokens are chosen
_INERT = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "max_length",
    "use_cache",
    "transformers_version",
    "_from_model_config",
    "return_dict_in_generate",
    "output_scores",
    "output_logits",
    "output_attentions",
    "output_hidden_states",
    "stop_strings",  # the runtime's own stop strings
)
FIDELITY_NEW_TOKENS = 32
# varied prompts for the int8 fidelity measurement, rendered as chats when the model has a chat template
GENERATION_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "List three prime numbers greater than 50.",
    "Translate 'good morning, how are you?' into French.",
    "def fibonacci(n):",
    "Give me a short recipe for pancakes.",
    "What is 17 multiplied by 23?",
    "Summarise the plot of Romeo and Juliet in one sentence.",
    "Name a few uses of a paperclip.",
)


def unsupported(source: Any, generation_config: dict[str, Any]) -> str | None:
    """Why the onnxruntime-genai engine cannot serve this model exactly, or None when it can."""
    if source.task != "text-generation":
        return f"onnxruntime-genai serves text-generation; this model's task is {source.task}"
    if source.is_encoder_decoder:
        return (
            f"onnxruntime-genai serves decoder-only (causal) models; {source.model_type} is an encoder-decoder model, "
            "which the torch engine serves"
        )
    extra = sorted(k for k in generation_config if k not in LOOP_SETTINGS and k not in _INERT)
    if extra:
        return (
            f"the model's generation_config sets {extra}, which the runtime's decoding loop does not implement; the "
            "torch engine (model.generate) serves it"
        )
    if (generation_config.get("num_beams") or 1) > 1:
        return "the model's generation_config asks for beam search; the torch engine (model.generate) serves it"
    return None


def run_builder(folder: Path, out: Path, precision: str) -> tuple[bytes, bytes]:
    """(graph with its weights inside, genai_config.json) from ONNX Runtime GenAI's model builder.

    Raises:
        SourceError: the builder does not take this model, or the graph does not fit in one protobuf (2 GiB).
    """
    import onnx

    cache = out.parent / "builder-cache"
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(folder), "-o", str(out)]
    cmd += ["-p", precision, "-e", "cpu", "-c", str(cache)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0 or not (out / "model.onnx").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SourceError(f"ONNX Runtime GenAI's model builder did not take this model: {' / '.join(tail)}")
    graph = onnx.load(str(out / "model.onnx"))  # with its external data
    if graph.ByteSize() >= 2**31:
        raise SourceError(
            f"the {precision} decoder graph is {graph.ByteSize() / 2**30:.1f} GiB, over the 2 GiB one ONNX file holds "
            "with its weights inside; build --engine torch, or --quantize int8 to make it smaller"
        )
    config = json.loads((out / "genai_config.json").read_text())
    config["model"]["decoder"]["filename"] = "model.onnx"
    return graph.SerializeToString(), json.dumps(config, sort_keys=True, indent=1).encode()


def genai_contents(
    source: Any,
    model: Any,
    files: dict[str, bytes],
    manifest: dict[str, Any],
    *,
    quantize: str | None = None,
    floors: Floors | None = None,
    tokenizer: Any = None,
) -> Contents:
    """The onnxruntime-genai bundle of a causal LM: fp32, or int8 measured against `model` (the fp32 source).

    Raises:
        SourceError: the model is not one this engine serves exactly, the builder fails, or int8 misses the floor.
    """
    import onnxruntime_genai as og

    why = unsupported(source, manifest.get("generation", {}).get("generation_config", {}))
    if why:
        raise SourceError(why)
    dtype = "int8" if quantize == "int8" else "float32"
    with tempfile.TemporaryDirectory(prefix="genai-build-") as tmp:
        graph, config = run_builder(source.path, Path(tmp) / "out", PRECISIONS[dtype])
    compiled = (
        "ahead of time: decoder graph with KV cache built by ONNX Runtime GenAI's model builder at build time "
        f"({GENAI_MODEL}); nothing is compiled at cold start"
    )
    contents = Contents(
        {
            **manifest,
            "engine": ENGINE,
            "engines": [ENGINE],
            "dtype": dtype,
            "compiled": compiled,
            "versions": {**manifest["versions"], "onnxruntime_genai": og.__version__},
        },
        {},
        {**files, GENAI_MODEL: graph, GENAI_CONFIG: config},
    )
    if dtype == "int8":
        record = measure_fidelity(contents, model, tokenizer)
        floor = (floors or Floors()).token_top1
        record["floor"] = {"teacher_forced_top1": floor}
        if record["teacher_forced_top1"] < floor:
            raise SourceError(
                f"int8 keeps {record['teacher_forced_top1']:.3f} of the fp32 model's next tokens (teacher-forced top-1 "
                f"on {record['prompts']} prompts), below the floor {floor}; build without --quantize, or lower the "
                "floor with --min-token-top1"
            )
        contents.manifest["quantization"] = record
    return contents


def fidelity_prompts(manifest: dict[str, Any], tokenizer: Any) -> list[list[int]]:
    """Token ids of the golden prompts, then GENERATION_PROMPTS (as chats when the model has a chat template)."""
    out = [tokenizer(ex["input"])["input_ids"] for ex in manifest["golden"]]
    chat = getattr(tokenizer, "chat_template", None)
    for text in GENERATION_PROMPTS:
        if chat:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            out.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        else:
            out.append(tokenizer(text)["input_ids"])
    return out


def measure_fidelity(contents: Contents, model: Any, tokenizer: Any) -> dict[str, Any]:
    """A quantized bundle against the fp32 model it came from, on fidelity_prompts():

    teacher_forced_top1   share of positions where the bundle's highest-scoring next token is the fp32 model's,
                          both reading the fp32 model's greedy continuation
    greedy_prefix         the identical greedy prefix, in tokens (mean, min), out of FIDELITY_NEW_TOKENS
    greedy_equal          prompts whose whole greedy continuation is identical
    """
    import numpy as np
    import torch

    from runtime.loader import load_model
    from runtime.tasks import decode_loop

    prompts = fidelity_prompts(contents.manifest, tokenizer)
    eos = set(_ids(contents.manifest["generation"]["eos_token_id"]))
    with tempfile.TemporaryDirectory(prefix="genai-fidelity-") as tmp:
        path = Path(tmp) / "candidate.bundle"
        write_bundle(path, manifest=contents.manifest, tensors=contents.tensors, files=contents.files)
        engine = load_model(path, verify_hash=False).engine
        agree = total = equal = 0
        prefixes = []
        for prompt in prompts:
            with torch.inference_mode():
                x = torch.tensor([prompt])
                out = model.generate(
                    x,
                    attention_mask=torch.ones_like(x),
                    max_new_tokens=FIDELITY_NEW_TOKENS,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=contents.manifest["generation"]["pad_token_id"],
                )
            ref = out[0, len(prompt) :].tolist()
            ref = ref[: next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))]
            rows = engine.start(prompt + ref[:-1], 1).all_logits()[len(prompt) - 1 :]  # type: ignore[attr-defined]
            agree += int(np.sum(np.argmax(rows, axis=-1) == np.asarray(ref)))
            total += len(ref)
            settings = {"max_new_tokens": FIDELITY_NEW_TOKENS, "do_sample": False}
            got = decode_loop.decode(engine, prompt, settings, eos=eos, deadline=decode_loop.Deadline(0), rng=None)
            prefix = next(
                (i for i, (a, b) in enumerate(zip(got.tokens, ref)) if a != b), min(len(got.tokens), len(ref))
            )
            prefixes.append(prefix)
            equal += got.tokens == ref
        del engine
    return {
        "scheme": "onnxruntime-genai int8 (MatMulNBits, 8-bit weights in blocks of 32, activations fp32)",
        "prompts": len(prompts),
        "new_tokens": FIDELITY_NEW_TOKENS,
        "teacher_forced_top1": round(agree / max(total, 1), 4),
        "greedy_prefix": {"mean": round(sum(prefixes) / len(prefixes), 1), "min": min(prefixes)},
        "greedy_equal": equal,
    }


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
