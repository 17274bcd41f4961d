"""The bundle's manifest as frozen dataclasses: parsed and checked once, when the bundle is read.

The builder writes the manifest as JSON (runtime/bundle.py stores it in the header); `parse_manifest` turns it into
these values. Nothing after that reads a manifest key by string. A missing or ill-typed field is a
BundleCorruptError that names the field, never a KeyError or TypeError at first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runtime.bundle import FORMAT
from runtime.engines import ENGINES
from runtime.errors import BundleCorruptError
from runtime.golden import PRECISION_ORDER
from runtime.tasks import TASKS

T = TypeVar("T")

PADDING_SIDES = ("left", "right")
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
DENSE_ACTIVATIONS = ("tanh", "identity", "relu", "sigmoid")
HEAD_PREFIX = "sentence_transformers_head."  # bundle tensors applied after pooling, not part of the model's state dict
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TokenizerManifest:
    """How the bundled tokenizer.json is used: truncation length, padding, the inputs the model takes."""

    max_length: int
    pad_token: str | None
    pad_id: int | None
    padding_side: str = "right"
    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Dense:
    """A sentence-transformers Dense layer after pooling: activation(x @ weight.T + bias), tensors in the bundle."""

    weight: str  # bundle tensor name, (out, in) fp32
    bias: str | None
    activation: str  # one of DENSE_ACTIVATIONS


@dataclass(frozen=True)
class Prompt:
    text: str  # prepended to the input, as sentence-transformers does
    tokens: int  # its token count without a trailing special token (excluded from pooling when include_prompt=False)


@dataclass(frozen=True)
class Pooling:
    """feature-extraction: how token states become one sentence embedding (sentence-transformers' modules)."""

    modes: tuple[str, ...] = ("mean",)  # several modes are concatenated, in order
    normalize: bool = False
    include_prompt: bool = True
    dense: tuple[Dense, ...] = ()
    prompts: Mapping[str, Prompt] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity: str | None = None

    @property
    def default_prompt(self) -> Prompt | None:
        return self.prompts[self.default_prompt_name] if self.default_prompt_name else None


@dataclass(frozen=True)
class GenerationManifest:
    """text-generation: the source's generation defaults, decoding clean-up and chat template."""

    is_encoder_decoder: bool = False
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    default_max_new_tokens: int = 32
    generation_config: Mapping[str, Any] = field(default_factory=dict)  # the source's, as saved (use_diff)
    clean_up_tokenization_spaces: bool = False  # decode as transformers' clean_up_tokenization does
    chat_template: str | None = None
    special_tokens: Mapping[str, Any] = field(default_factory=dict)  # bos_token, eos_token, ... for the template


@dataclass(frozen=True)
class GoldenExample:
    """An input, its parameters, and the output the source model gave at build time."""

    input: Any
    parameters: Mapping[str, Any]
    output: Any


@dataclass(frozen=True)
class Manifest:
    name: str
    task: str
    model_type: str
    architecture: str
    auto_class: str
    dtype: str  # storage dtype of the floating tensors
    max_length: int
    tokenizer: TokenizerManifest
    golden: tuple[GoldenExample, ...]
    no_golden: bool = False  # built with --no-golden: no examples on purpose, so no canary and no replay
    engine: str = "torch"  # the engine the bundle was built for (ENGINE=auto picks it)
    engines: tuple[str, ...] = ()  # the engines whose weights it holds; () in bundles older than the field
    engine_choice: Mapping[str, Any] | None = None  # how the build chose `engine`: measured p50s and the reason
    quantization: Mapping[str, Any] | None = None  # int8 bundles: the scheme, the floors and the fidelity measured
    budget: Mapping[str, Any] | None = None  # the deployment budget the build measured (bundle_builder.budget)
    compiled: str | None = None
    num_parameters: int = 0
    versions: Mapping[str, Any] = field(default_factory=dict)
    pooling: Pooling | None = None  # feature-extraction
    labels: tuple[str, ...] = ()  # text-classification
    problem_type: str | None = None  # text-classification
    generation: GenerationManifest | None = None  # text-generation
    # what the other tasks need to know of the source, as the builder recorded it (zero-shot: "entailment_id";
    # fill-mask: "mask_token", "mask_token_id"; ...): each task reads and checks its own keys when it is built
    task_config: Mapping[str, Any] = field(default_factory=dict)


class _Fields:
    """Typed reads of one JSON object; every failure names the field's path in the manifest."""

    def __init__(self, where: str, path: str, raw: Any) -> None:
        self.where, self.path = where, path
        if not isinstance(raw, Mapping):
            raise self.bad(path, "must be a JSON object", raw)
        self.raw = raw

    def bad(self, name: str, why: str, value: Any) -> BundleCorruptError:
        return field_error(self.where, name, why, value)

    def get(self, key: str, check: Callable[[Any], bool], why: str, default: Any = ...) -> Any:
        name = f"{self.path}.{key}" if self.path else key
        if key not in self.raw or (self.raw[key] is None and default is not ...):
            if default is ...:
                raise BundleCorruptError(
                    f"{self.where}: manifest has no field {name!r}; rebuild the bundle with bundle_builder"
                )
            return default
        value = self.raw[key]
        if not check(value):
            raise self.bad(name, why, value)
        return value

    def text(self, key: str, default: Any = ...) -> Any:
        return self.get(key, lambda v: isinstance(v, str), "must be a string", default)

    def integer(self, key: str, lo: int = 0, default: Any = ...) -> Any:
        return self.get(key, lambda v: _is_int(v) and v >= lo, f"must be an integer >= {lo}", default)

    def flag(self, key: str, default: Any = ...) -> Any:
        return self.get(key, lambda v: isinstance(v, bool), "must be true or false", default)

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        return self.get(key, lambda v: v in choices, f"must be one of {list(choices)}", default)

    def obj(self, key: str, default: Any = ...) -> Any:
        return self.get(key, lambda v: isinstance(v, Mapping), "must be a JSON object", default)

    def strings(self, key: str, default: Any = ...) -> Any:
        value = self.get(
            key,
            lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
            "must be a list of strings",
            default,
        )
        return tuple(value)

    def members(self, key: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(
            key,
            lambda v: isinstance(v, list) and all(x in choices for x in v),
            f"must be a list of {list(choices)}",
            default,
        )
        return tuple(value)

    def child(self, key: str) -> _Fields:
        return _Fields(self.where, f"{self.path}.{key}" if self.path else key, self.obj(key))


def field_error(where: str, name: str, why: str, value: Any, fix: str = "") -> BundleCorruptError:
    """ "<bundle>: manifest field 'name' <why>, got <value>; rebuild the bundle with bundle_builder<fix>"."""
    return BundleCorruptError(
        f"{where}: manifest field {name!r} {why}, got {_short(value)}; rebuild the bundle with bundle_builder{fix}"
    )


def parse_manifest(raw: Any, where: str) -> Manifest:
    """The header's manifest JSON -> Manifest.

    Args:
        raw: the decoded "manifest" object of the bundle header.
        where: the bundle's path, for error messages.

    Raises:
        BundleCorruptError: a field is missing or has the wrong type; the message names it.
    """
    m = _Fields(where, "", raw)
    m.choice("format", (FORMAT,), None)  # the builder's copy of the header's format
    task = m.choice("task", tuple(TASKS))
    tok = m.child("tokenizer")
    tokenizer = TokenizerManifest(
        max_length=tok.integer("max_length", 1),
        pad_token=tok.text("pad_token", None),
        pad_id=tok.integer("pad_id", 0, None),
        padding_side=tok.choice("padding_side", PADDING_SIDES, "right"),
        model_input_names=tok.members("model_input_names", MODEL_INPUTS, ["input_ids", "attention_mask"]),
    )
    golden = m.get("golden", lambda v: isinstance(v, list), "must be a list of examples")
    examples = []
    for i, ex in enumerate(golden):
        g = _Fields(where, f"golden[{i}]", ex)
        if "input" not in g.raw or "output" not in g.raw:
            raise g.bad(f"golden[{i}]", 'must have "input" and "output"', sorted(g.raw))
        examples.append(GoldenExample(input=g.raw["input"], parameters=g.obj("parameters", {}), output=g.raw["output"]))
    pooling = None
    if "pooling" in m.raw and m.raw["pooling"] is not None:
        pooling = _pooling(m.child("pooling"))
    generation = None
    if "generation" in m.raw and m.raw["generation"] is not None:
        generation = _generation(m.child("generation"))
    return Manifest(
        name=m.text("name"),
        task=task,
        model_type=m.text("model_type", ""),
        architecture=m.text("architecture", ""),
        auto_class=m.text("auto_class"),
        dtype=m.choice("dtype", PRECISION_ORDER),
        max_length=m.integer("max_length", 1),
        tokenizer=tokenizer,
        golden=tuple(examples),
        no_golden=m.flag("no_golden", False),
        engine=m.choice("engine", tuple(ENGINES), "torch"),
        engines=m.members("engines", tuple(ENGINES), []),
        engine_choice=m.obj("engine_choice", None),
        quantization=m.obj("quantization", None),
        budget=m.obj("budget", None),
        compiled=m.text("compiled", None),
        num_parameters=m.integer("num_parameters", 0, 0),
        versions=m.obj("versions", {}),
        pooling=pooling,
        labels=m.strings("labels", []),
        problem_type=m.text("problem_type", None),
        generation=generation,
        task_config=m.obj("task_config", {}),
    )


def _pooling(p: _Fields) -> Pooling:
    first = p.choice("mode", POOLING_MODES, "mean")
    modes = p.get(
        "modes",
        lambda v: isinstance(v, list) and bool(v) and all(x in POOLING_MODES for x in v),
        f"must be a non-empty list of {list(POOLING_MODES)}",
        [first],
    )
    dense = []
    for i, raw in enumerate(p.get("dense", lambda v: isinstance(v, list), "must be a list", [])):
        d = _Fields(p.where, f"{p.path}.dense[{i}]", raw)
        dense.append(Dense(d.text("weight"), d.text("bias", None), d.choice("activation", DENSE_ACTIVATIONS)))
    prompts = {}
    for name in p.obj("prompts", {}):
        q = p.child("prompts").child(name)
        prompts[str(name)] = Prompt(text=q.text("text"), tokens=q.integer("tokens", 0))
    default = p.text("default_prompt_name", None)
    if default is not None and default not in prompts:
        raise p.bad(f"{p.path}.default_prompt_name", f"must name one of the prompts {sorted(prompts)}", default)
    return Pooling(
        modes=tuple(modes),
        normalize=p.flag("normalize", False),
        include_prompt=p.flag("include_prompt", True),
        dense=tuple(dense),
        prompts=prompts,
        default_prompt_name=default,
        similarity=p.text("similarity", None),
    )


def _generation(g: _Fields) -> GenerationManifest:
    eos = g.get(
        "eos_token_id",
        lambda v: _is_int(v) or (isinstance(v, list) and all(_is_int(x) for x in v)),
        "must be a token id or a list of them",
        None,
    )
    return GenerationManifest(
        is_encoder_decoder=g.flag("is_encoder_decoder", False),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=g.integer("pad_token_id", 0, None),
        default_max_new_tokens=g.integer("default_max_new_tokens", 1, 32),
        generation_config=g.obj("generation_config", {}),
        clean_up_tokenization_spaces=g.flag("clean_up_tokenization_spaces", False),
        chat_template=g.text("chat_template", None),
        special_tokens=g.obj("special_tokens", {}),
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
