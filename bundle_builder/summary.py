"""What `inspect` shows: a bundle's manifest and integrity facts, as a dict and as readable text; and which runtime
requirements its image needs (`requirements`)."""

from __future__ import annotations

import os
from typing import Any

from runtime.bundle import FORMAT, read_bundle
from runtime.engines import GENAI_MODEL
from runtime.manifest import parse_manifest


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read (and hash-check) a bundle; return the facts `inspect --json` prints."""
    bundle = read_bundle(path)
    m = parse_manifest(bundle.manifest, str(bundle.path))
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": bundle.format_version,
        "name": m.name,
        "task": m.task,
        "model_type": m.model_type,
        "architecture": m.architecture,
        "sha256": bundle.sha256,
        "dtype": m.dtype,
        "num_parameters": m.num_parameters,
        "size_bytes": bundle.size_bytes,
        # an onnxruntime-genai bundle's weights are inside its decoder graph, a file
        "weights_bytes": bundle.tensor_bytes()
        + (bundle.file_bytes(GENAI_MODEL) if bundle.has_file(GENAI_MODEL) else 0),
        "max_length": m.max_length,
        "engine": m.engine,
        "engines": list(m.engines),
        "engine_choice": dict(m.engine_choice) if m.engine_choice is not None else None,
        "quantization": dict(m.quantization) if m.quantization is not None else None,
        "budget": dict(m.budget) if m.budget is not None else None,
        "compiled": m.compiled,
        "versions": dict(m.versions),
        "files": bundle.file_names,
        "task_config": dict(m.task_config),
        "golden": [{"input": g.input, "parameters": dict(g.parameters), "output": _short(g.output)} for g in m.golden],
        "no_golden": m.no_golden,
    }
    if m.labels:
        out["labels"] = list(m.labels)
        out["problem_type"] = m.problem_type
    if m.pooling is not None:
        pooling = m.pooling
        out["pooling"] = {
            "modes": list(pooling.modes),
            "normalize": pooling.normalize,
            "include_prompt": pooling.include_prompt,
            "dense": [{"activation": d.activation, "bias": d.bias is not None} for d in pooling.dense],
            "prompts": {name: p.text for name, p in pooling.prompts.items()},
            "default_prompt_name": pooling.default_prompt_name,
            "similarity": pooling.similarity,
        }
    return out


# the engine a bundle is built for -> the requirements file of its runtime image (relative to the repository)
RUNTIME_REQUIREMENTS = {
    "torch": "requirements/runtime-torch.txt",
    "onnxruntime": "requirements/runtime-onnx.txt",
    "onnxruntime-genai": "requirements/runtime-genai.txt",
}


def runtime_requirements(path: str | os.PathLike[str]) -> str:
    """The requirements file the runtime image of this bundle installs: no torch for an onnxruntime bundle."""
    bundle = read_bundle(path)
    return RUNTIME_REQUIREMENTS[parse_manifest(bundle.manifest, str(bundle.path)).engine]


def _short(output: Any) -> Any:
    if isinstance(output, list) and output and isinstance(output[0], float):
        return {"dimensions": len(output), "head": [round(x, 5) for x in output[:4]]}
    return output


def render(info: dict[str, Any]) -> str:
    """Human-readable text for `inspect` without --json."""
    lines = [
        f"{info['name']}  ({info['task']}, {info['architecture']}, {info['model_type']})",
        f"  format        {info['format']} v{info['format_version']}",
        f"  sha256        {info['sha256']}",
        f"  size          {info['size_bytes'] / 1e6:.1f} MB ({info['weights_bytes'] / 1e6:.1f} MB weights)",
        f"  parameters    {info['num_parameters']:,} stored as {info['dtype']}",
        f"  max length    {info['max_length']} tokens",
        f"  engine        {info['engine']}" + (f" (holds {', '.join(info['engines'])})" if info["engines"] else ""),
        f"  compiled      {info['compiled']}",
        "  versions      " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
    ]
    if info["engine_choice"] is not None:
        choice = info["engine_choice"]
        measured = f"; measured on {choice['measured_on']}" if "measured_on" in choice else ""
        lines.append(f"  chosen by     {choice['reason']}{measured}")
    if info["quantization"] is not None and "teacher_forced_top1" in info["quantization"]:
        q = info["quantization"]
        lines.append(
            f"  quantized     {q['scheme']}: teacher-forced top-1 {q['teacher_forced_top1']} vs fp32 (floor "
            f"{q['floor']['teacher_forced_top1']}), identical greedy prefix mean {q['greedy_prefix']['mean']} / min "
            f"{q['greedy_prefix']['min']} of {q['new_tokens']} tokens, {q['greedy_equal']}/{q['prompts']} prompts equal"
        )
    elif info["quantization"] is not None:
        q = info["quantization"]
        tried = "; ".join(
            f"{t['scheme']} " + ", ".join(f"{k}={v}" for k, v in t.items() if k not in ("scheme", "passed"))
            for t in q["tried"]
        )
        lines.append(f"  quantized     int8, scheme {q['scheme']} (floors {q['floors']}; tried: {tried})")
    if info["budget"] is not None:
        from bundle_builder.budget import describe

        lines += [f"  budget        {line}" for line in describe(info["budget"])]
    if "labels" in info:
        kind = f" ({info['problem_type']})" if info.get("problem_type") else ""
        lines.append(f"  labels        {', '.join(info['labels'])}{kind}")
    if info.get("task_config"):
        lines.append("  task config   " + ", ".join(f"{k}={v!r}" for k, v in info["task_config"].items()))
    if "pooling" in info:
        p = info["pooling"]
        head = f", {len(p['dense'])} Dense" if p["dense"] else ""
        lines.append(f"  pooling       {'+'.join(p['modes'])}{head}, normalize={p['normalize']}")
        if p["prompts"]:
            lines.append(f"  prompts       {p['prompts']} (default: {p['default_prompt_name']})")
    if info["no_golden"] and not info["golden"]:
        lines.append("  golden examples  none: built with --no-golden (no init canary)")
    else:
        lines.append("  golden examples")
    for g in info["golden"]:
        params = f" {g['parameters']}" if g.get("parameters") else ""
        lines.append(f"    {g['input']!r}{params} -> {g['output']}")
    return "\n".join(lines)
