"""Read a sentence-transformers folder (2.x to 6.x layouts): modules, pooling, Dense heads, Normalize, prompts.

sentence-transformers names each module by its class path in modules.json; 5.x/6.x moved the classes
(`sentence_transformers.base.modules.transformer.Transformer`, `...sentence_transformer.modules.pooling.Pooling`,
...) while 2.x wrote `sentence_transformers.models.Transformer`. Modules are matched by their class name, so both
read the same; any other module is refused by name, with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle_builder.errors import SourceError
from runtime.manifest import HEAD_PREFIX

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# legacy boolean keys of a 2.x Pooling config -> mode
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Dense activation_function class path -> the runtime's name for it
ACTIVATIONS = {
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
}


@dataclass
class StLayout:
    """What the runtime needs to reproduce `SentenceTransformer.encode` after the transformer."""

    pooling: dict[str, Any]  # the manifest's "pooling" object
    dense: dict[str, Any] = field(default_factory=dict)  # bundle tensor name -> torch tensor (fp32)
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SourceError(f"{path} cannot be read as JSON ({e}); the model folder is incomplete or corrupt") from None


def _kind(type_path: str) -> str:
    return type_path.rsplit(".", 1)[-1]


def read_st_layout(path: Path) -> StLayout:
    """modules.json and the module folders -> StLayout.

    Raises:
        SourceError: a module the runtime does not serve (named), modules in an order it cannot reproduce, a pooling
            mode or Dense activation it does not implement, or a cross-encoder folder.
    """
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise SourceError(f"{path / 'modules.json'} is not a list of modules with a 'type'")
    kinds = [_kind(str(m["type"])) for m in modules]
    served = ("Transformer", "Pooling", "Dense", "Normalize")
    for m, kind in zip(modules, kinds):
        if kind not in served or not str(m["type"]).startswith("sentence_transformers."):
            raise SourceError(
                f"{path} is a sentence-transformers model with module {m['type']!r}; the runtime reproduces "
                "Transformer -> Pooling -> Dense* -> Normalize pipelines only, so it cannot compute what this module does"
            )
    order = "".join({"Transformer": "T", "Pooling": "P", "Dense": "D", "Normalize": "N"}[k] for k in kinds)
    if not re.fullmatch(r"TPD*N?", order):
        raise SourceError(
            f"{path}: modules {kinds} are in an order the runtime does not reproduce; it serves "
            "Transformer, Pooling, then any Dense layers, then an optional Normalize"
        )
    layout = StLayout(pooling={})
    for m, kind in zip(modules, kinds):
        folder = path / str(m.get("path", ""))
        if kind == "Transformer":
            _read_transformer(path, folder, layout)
        elif kind == "Pooling":
            layout.pooling.update(_read_pooling(folder))
        elif kind == "Dense":
            _read_dense(folder, layout)
    layout.pooling["normalize"] = kinds[-1] == "Normalize"
    _read_prompts(path, layout)
    return layout


def _read_transformer(root: Path, folder: Path, layout: StLayout) -> None:
    for name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
        for where in (folder, root):
            cfg_path = where / name
            if cfg_path.is_file():
                cfg = _read_json(cfg_path)
                if isinstance(cfg.get("max_seq_length"), int):
                    layout.max_seq_length = cfg["max_seq_length"]
                layout.do_lower_case = bool(cfg.get("do_lower_case", False))
                return


def _read_pooling(folder: Path) -> dict[str, Any]:
    cfg = _read_json(folder / "config.json")
    if "pooling_mode" in cfg:
        modes = cfg["pooling_mode"] if isinstance(cfg["pooling_mode"], list) else [cfg["pooling_mode"]]
    else:
        modes = [mode for key, mode in LEGACY_POOLING_KEYS.items() if cfg.get(key)]
        unknown = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k not in LEGACY_POOLING_KEYS]
        if unknown:
            raise SourceError(
                f"{folder}: pooling {unknown[0]!r} is not a mode the runtime implements ({POOLING_MODES})"
            )
    bad = [mode for mode in modes if mode not in POOLING_MODES]
    if not modes or bad:
        raise SourceError(f"{folder}: pooling mode {bad or modes!r} is not one of {list(POOLING_MODES)}")
    return {"mode": modes[0], "modes": list(modes), "include_prompt": bool(cfg.get("include_prompt", True))}


def _read_dense(folder: Path, layout: StLayout) -> None:
    import torch

    cfg = _read_json(folder / "config.json")
    activation = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in ACTIVATIONS:
        raise SourceError(
            f"{folder}: Dense activation {activation!r} is not one the runtime implements ({sorted(ACTIVATIONS)})"
        )
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    else:
        raise SourceError(f"{folder} has no model.safetensors; re-save the model with sentence-transformers >= 3")
    if cfg.get("use_residual") or "residual.weight" in state:
        raise SourceError(f"{folder}: a Dense layer with use_residual is not one the runtime implements")
    weight = state.get("linear.weight")
    if weight is None or weight.ndim != 2:
        raise SourceError(f"{folder}/model.safetensors has no 2-D 'linear.weight'; found {sorted(state)}")
    index = len(layout.pooling.get("dense", []))
    entry: dict[str, Any] = {"weight": f"{HEAD_PREFIX}dense.{index}.weight", "bias": None}
    layout.dense[entry["weight"]] = weight.to(torch.float32).contiguous()
    if "linear.bias" in state:
        entry["bias"] = f"{HEAD_PREFIX}dense.{index}.bias"
        layout.dense[entry["bias"]] = state["linear.bias"].to(torch.float32).contiguous()
    entry["activation"] = ACTIVATIONS[activation]
    layout.pooling.setdefault("dense", []).append(entry)


def _read_prompts(path: Path, layout: StLayout) -> None:
    cfg_path = path / "config_sentence_transformers.json"
    if not cfg_path.is_file():
        return
    cfg = _read_json(cfg_path)
    if cfg.get("model_type") not in (None, "SentenceTransformer"):
        raise SourceError(
            f"{path} is a sentence-transformers {cfg.get('model_type')} folder; this build serves SentenceTransformer "
            "embedding models (build a CrossEncoder's folder with --task text-classification)"
        )
    prompts = cfg.get("prompts") or {}
    layout.prompts = {str(k): str(v) for k, v in prompts.items() if isinstance(v, str)}
    default = cfg.get("default_prompt_name")
    if default is not None and default not in layout.prompts:
        raise SourceError(f"{cfg_path}: default_prompt_name {default!r} is not one of the prompts {sorted(prompts)}")
    layout.default_prompt_name = default
    if cfg.get("similarity_fn_name"):
        layout.pooling["similarity"] = cfg["similarity_fn_name"]
