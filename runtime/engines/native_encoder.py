"""BERT-family encoders in plain PyTorch: the torch engine's forward pass for embeddings and classification.

Why: importing transformers' modeling code costs ~2 s at cold start (torch._dynamo, torch.distributed, sympy, ...)
for a forward pass of a few dozen lines. This module builds that same computation from the bundled config.json,
with every parameter named exactly as the transformers state_dict key, so the bundle's memory-mapped tensors are
assigned in place: load_state_dict(strict=True, assign=True) on a module built on the meta device (no random
init, no copy).

    model_type     feature-extraction   text-classification (and zero-shot-classification: the same NLI classifier)
    bert           BertModel            BertForSequenceClassification     (MiniLM is a bert)
    roberta        RobertaModel         RobertaForSequenceClassification
    xlm-roberta    XLMRobertaModel      XLMRobertaForSequenceClassification
    distilbert     DistilBertModel      DistilBertForSequenceClassification

Anything else, or a config option that changes the math (a decoder, cross-attention, relative positions, an
activation not in ACTIVATIONS, FFN chunking), gets None and the engine uses transformers: never silently wrong.
tests/test_native_encoder.py holds every served kind to the transformers output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,  # exact (erf)
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}
CLASSIFIER_TASKS = ("text-classification", "zero-shot-classification")  # tasks served by the sequence classifier
# model_type -> (family, feature-extraction class, text-classification class); the family fixes names and embeddings
ARCHITECTURES = {
    "bert": ("bert", "BertModel", "BertForSequenceClassification"),
    "roberta": ("roberta", "RobertaModel", "RobertaForSequenceClassification"),
    "xlm-roberta": ("roberta", "XLMRobertaModel", "XLMRobertaForSequenceClassification"),
    "distilbert": ("distilbert", "DistilBertModel", "DistilBertForSequenceClassification"),
}


@dataclass(frozen=True)
class EncoderConfig:
    family: str  # "bert" | "roberta" | "distilbert"
    vocab_size: int
    hidden: int  # H
    heads: int  # nh; head size hs = H // nh
    intermediate: int  # FFN width
    layers: int
    max_positions: int
    type_vocab: int  # token type (segment) embeddings; 0 = none (DistilBERT)
    eps: float  # LayerNorm epsilon
    act: str  # a key of ACTIVATIONS
    pad_id: int  # RoBERTa numbers positions from pad_id + 1


def unsupported(config: dict[str, Any], task: str, architecture: str) -> str | None:
    """Why this model cannot run natively (a reason for the log), or None when it can."""
    if config.get("model_type") not in ARCHITECTURES:
        return f"model_type {config.get('model_type')!r} is not one of {sorted(ARCHITECTURES)}"
    family, base, classifier = ARCHITECTURES[config["model_type"]]
    expected = base if task == "feature-extraction" else classifier if task in CLASSIFIER_TASKS else None
    if architecture != expected:
        served = f"{base} for feature-extraction, {classifier} for {' and '.join(CLASSIFIER_TASKS)}"
        return f"{architecture!r} for {task} (native: {served})"
    act = config.get("activation" if family == "distilbert" else "hidden_act")
    changes_the_math = {
        "is_decoder": config.get("is_decoder", False),  # causal self-attention
        "add_cross_attention": config.get("add_cross_attention", False),
        "position_embedding_type": config.get("position_embedding_type", "absolute") != "absolute",
        "chunk_size_feed_forward": config.get("chunk_size_feed_forward", 0) != 0,
        f"activation {act!r}": not isinstance(act, str) or act not in ACTIVATIONS,
        "pad_token_id None": family == "roberta" and config.get("pad_token_id") is None,
    }
    found = [name for name, present in changes_the_math.items() if present]
    return f"config has {', '.join(found)}" if found else None


def _encoder_config(config: dict[str, Any]) -> EncoderConfig:
    family = ARCHITECTURES[config["model_type"]][0]
    if family == "distilbert":  # DistilBERT's own key names; its LayerNorm epsilon is fixed in transformers
        return EncoderConfig(
            family,
            config["vocab_size"],
            config["dim"],
            config["n_heads"],
            config["hidden_dim"],
            config["n_layers"],
            config["max_position_embeddings"],
            0,
            1e-12,
            config["activation"],
            config.get("pad_token_id") or 0,
        )
    return EncoderConfig(
        family,
        config["vocab_size"],
        config["hidden_size"],
        config["num_attention_heads"],
        config["intermediate_size"],
        config["num_hidden_layers"],
        config["max_position_embeddings"],
        config["type_vocab_size"],
        config["layer_norm_eps"],
        config["hidden_act"],
        config.get("pad_token_id") or 0,
    )


def _embedding(num: int, dim: int) -> nn.Embedding:
    # given a weight, nn.Embedding skips its init, whose normal_ on the meta device imports torch._dynamo (~1 s)
    return nn.Embedding.from_pretrained(torch.empty(num, dim))


def _group(**modules: nn.Module) -> nn.ModuleDict:
    """Modules under one name, so parameter names nest as transformers' do (attention.self.query.weight)."""
    return nn.ModuleDict(modules)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    """Multi-head self-attention on (B, T, H) projections -> (B, T, H); mask (B, 1, 1, T), True = attend."""
    B, T, H = q.shape
    q, k, v = (x.view(B, T, heads, H // heads).transpose(1, 2) for x in (q, k, v))  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=(H // heads) ** -0.5)  # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, H)


class Embeddings(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.c = c
        self.word_embeddings = _embedding(c.vocab_size, c.hidden)
        self.position_embeddings = _embedding(c.max_positions, c.hidden)
        if c.type_vocab:
            self.token_type_embeddings = _embedding(c.type_vocab, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        _, T = input_ids.shape
        if self.c.family == "roberta":  # real tokens count up from pad_id + 1; pads sit at pad_id (fairseq)
            real = input_ids.ne(self.c.pad_id).int()  # (B, T)
            positions = (torch.cumsum(real, dim=1).type_as(real) * real).long() + self.c.pad_id
        else:
            positions = torch.arange(T, device=input_ids.device)[None]  # (1, T)
        x = self.word_embeddings(input_ids)  # (B, T, H); sums in transformers' order, so rounding matches
        if self.c.type_vocab:  # absent ids -> segment 0, as transformers
            segments = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(segments)
        return self.LayerNorm(x + self.position_embeddings(positions))


class BertLayer(nn.Module):
    """Post-LayerNorm block (BERT, RoBERTa): x = LN(x + attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        H, I = c.hidden, c.intermediate
        self.heads, self.act = c.heads, ACTIVATIONS[c.act]
        self.attention = _group(
            self=_group(query=nn.Linear(H, H), key=nn.Linear(H, H), value=nn.Linear(H, H)),
            output=_group(dense=nn.Linear(H, H), LayerNorm=nn.LayerNorm(H, eps=c.eps)),
        )
        self.intermediate = _group(dense=nn.Linear(H, I))
        self.output = _group(dense=nn.Linear(I, H), LayerNorm=nn.LayerNorm(H, eps=c.eps))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # x (B, T, H)
        # _group nests ModuleDicts, but ModuleDict's [] is typed as returning any Module
        sa, out = cast(nn.ModuleDict, self.attention["self"]), cast(nn.ModuleDict, self.attention["output"])
        x = out["LayerNorm"](
            out["dense"](attention(sa["query"](x), sa["key"](x), sa["value"](x), mask, self.heads)) + x
        )
        return self.output["LayerNorm"](self.output["dense"](self.act(self.intermediate["dense"](x))) + x)


class DistilBertLayer(nn.Module):
    """The same block under DistilBERT's names."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        H, I = c.hidden, c.intermediate
        self.heads, self.act = c.heads, ACTIVATIONS[c.act]
        self.attention = _group(
            q_lin=nn.Linear(H, H), k_lin=nn.Linear(H, H), v_lin=nn.Linear(H, H), out_lin=nn.Linear(H, H)
        )
        self.sa_layer_norm = nn.LayerNorm(H, eps=c.eps)
        self.ffn = _group(lin1=nn.Linear(H, I), lin2=nn.Linear(I, H))
        self.output_layer_norm = nn.LayerNorm(H, eps=c.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # x (B, T, H)
        a = self.attention
        x = self.sa_layer_norm(
            a["out_lin"](attention(a["q_lin"](x), a["k_lin"](x), a["v_lin"](x), mask, self.heads)) + x
        )
        return self.output_layer_norm(self.ffn["lin2"](self.act(self.ffn["lin1"](x))) + x)


class Encoder(nn.Module):
    """The base model (BertModel, RobertaModel, DistilBertModel): ids (B, T) -> last_hidden_state (B, T, H)."""

    def __init__(self, c: EncoderConfig, *, pooler: bool) -> None:
        super().__init__()
        self.embeddings = Embeddings(c)
        layer = DistilBertLayer if c.family == "distilbert" else BertLayer
        self.stack = "transformer" if c.family == "distilbert" else "encoder"
        setattr(self, self.stack, _group(layer=nn.ModuleList(layer(c) for _ in range(c.layers))))
        if pooler:  # in the state_dict of BertModel and RobertaModel; only BERT's classifier uses it
            self.pooler = _group(dense=nn.Linear(c.hidden, c.hidden))

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) int64
        attention_mask: torch.Tensor | None = None,  # (B, T), 1 = real token, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, T) segment ids
    ) -> torch.Tensor:
        mask = None  # no padding: no mask, as transformers does, so SDPA may take its fastest kernel
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): every query attends to the real keys
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        for block in getattr(self, self.stack).layer:
            x = block(x, mask)
        return x


class SequenceClassifier(nn.Module):
    """*ForSequenceClassification: the first token's state ([CLS] / <s>) through the family's head -> logits (B, L)."""

    def __init__(self, c: EncoderConfig, num_labels: int) -> None:
        super().__init__()
        self.family = c.family
        self.num_labels = num_labels  # the logits' width, as the loaded head's tensors have it
        setattr(self, c.family, Encoder(c, pooler=c.family == "bert"))  # "bert." / "roberta." / "distilbert." names
        H = c.hidden
        if c.family == "roberta":
            self.classifier: nn.ModuleDict | nn.Linear = _group(
                dense=nn.Linear(H, H), out_proj=nn.Linear(H, num_labels)
            )
        else:
            if c.family == "distilbert":
                self.pre_classifier = nn.Linear(H, H)
            self.classifier = nn.Linear(H, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) int64
        attention_mask: torch.Tensor | None = None,  # (B, T), 1 = real token, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, T) segment ids
    ) -> torch.Tensor:
        encoder = getattr(self, self.family)
        first = encoder(input_ids, attention_mask, token_type_ids)[:, 0]  # (B, H)
        if self.family == "bert":  # pooler: dense + tanh
            return self.classifier(torch.tanh(encoder.pooler.dense(first)))
        if isinstance(self.classifier, nn.ModuleDict):  # RoBERTa's head (the only group): dense + tanh, out_proj
            return self.classifier["out_proj"](torch.tanh(self.classifier["dense"](first)))
        return self.classifier(F.relu(self.pre_classifier(first)))


def build_native_encoder(
    config: dict[str, Any], tensors: dict[str, torch.Tensor], task: str, architecture: str
) -> nn.Module | None:
    """The model as a plain PyTorch module with the bundle's tensors assigned in place, or None when not served.

    Args:
        config: the bundled config.json.
        tensors: the bundle's tensors under transformers' state_dict names, already in the compute dtype.
        task: "feature-extraction" (the module returns last_hidden_state (B, T, H)), "text-classification" or
            "zero-shot-classification" (logits (B, L)).
        architecture: the transformers class the bundle was built with (manifest.architecture).

    Returns:
        An eval-mode module called as module(input_ids, attention_mask=None, token_type_ids=None) with (B, T) int64
        tensors; None when `unsupported` gives a reason or the tensors do not fit (the transformers path then
        serves the model, or says precisely what is wrong with the bundle).
    """
    if unsupported(config, task, architecture) is not None:
        return None
    try:
        c = _encoder_config(config)
        num_labels = len(config["id2label"]) if task in CLASSIFIER_TASKS else 0
    except (KeyError, TypeError):  # an incomplete config.json: transformers fills defaults, so let it decide
        return None
    if c.hidden % c.heads:
        return None
    with torch.device("meta"):  # shapes only: the parameters are replaced by the bundle's tensors below
        if task in CLASSIFIER_TASKS:
            model: nn.Module = SequenceClassifier(c, num_labels)
        else:  # BertModel and RobertaModel carry a pooler (unused here), DistilBertModel none
            model = Encoder(c, pooler=c.family != "distilbert")
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError:
        return None
    return model.eval()
