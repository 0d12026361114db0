"""Fused inference for the transformer encoder, with the plain modules as the fallback.

    fused = optimize_for_inference(model.embedding, model.encoder)     # mode="auto", fp32
    fused.mode, fused.reason                                           # "fused" / "eager", and why
    hidden = fused(fused.embed(src, seg), seg)                         # == model.encode(src, seg)

    ctx = fused.context(seg)                                           # FastBERT: one layer at a time
    hidden = fused.layer(0, fused.embed(src, seg), ctx)
    keep = ...; hidden, ctx = hidden[keep], ctx.select(keep)           # samples that have not exited

The maths is the layer's own: ``TransformerLayer.compute`` is written once as calls on an
executor (``uer.layers.executor``), and this module only executes those calls differently:

* Unpadded linears. The projections and the feed-forward network (nearly all FLOPs) run on the
  real tokens only, packed to (N, H); padding costs nothing there. Attention runs on the padded
  grid, cut to the longest sequence of the batch, with the same mask as the encoder.
* oneDNN on x86 CPUs: weights reordered once into oneDNN's blocked layout, bias + GELU and the
  residual add fused into the GEMM (``torch.ops.mkldnn._linear_pointwise``, what inductor emits).
  Elsewhere (CUDA, ARM, no oneDNN) the same code runs with ``F.linear``.

It fails closed: the fused path runs only for a ``TransformerEncoder`` made of exactly the
modules it knows (``type(layer) is TransformerLayer``, ...) and a config whose every field is in
:data:`SUPPORTED`. Anything else (a new option, a subclassed layer) runs eager, and ``reason``
says why; ``mode="fused"`` then raises with that reason.

Modes: ``fused``; ``eager`` (the model's own modules, the reference); ``auto`` = fused where
supported, eager otherwise (no measurement: the measured choice between engines is the runtime's,
``uer.runtime``). ``dtype=torch.bfloat16`` computes in bf16 inside (inputs and outputs keep their
dtype); never the default, and slower than fp32 on CPUs without bf16 units.

The pieces are public for the other executors of the same maths (token exit runs the layer on
the tokens still in the network): :class:`PackedLinear` (one linear, oneDNN-packed or
``F.linear``), :class:`PackedExecutor` (``TransformerLayer.compute`` on packed real tokens),
:class:`FusedContext` and :func:`mkldnn_usable`.

``forward`` / ``forward_layers`` / ``layer`` give zeros at padding positions (the encoder leaves
garbage there; every pooling masks it). The embedding and encoder are put in eval mode. The fused
weights are a snapshot: build the object again after changing the model's weights.
``embed`` is the embedding alone: a model with a subencoder embeds with ``model.embed``.
"""
from __future__ import annotations

import copy
import dataclasses
import platform
from dataclasses import dataclass
from typing import Iterable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from uer.choices import ACTIVATIONS
from uer.encoders.base import Encoder, EncoderContext, real_length
from uer.encoders.transformer import TransformerConfig, TransformerEncoder, encoder_mask
from uer.layers import FeedForward, MultiHeadAttention, TransformerLayer, activation
from uer.layers.executor import attend

Mode = Literal["auto", "eager", "fused"]
MODES = ("auto", "eager", "fused")
ANY = None  # a size or a rate: every value is executed the same way
# Every TransformerConfig field and the values this executor implements. A field that is not
# here (a new option) or a value outside its tuple makes the encoder run eager, saying why.
SUPPORTED: dict[str, tuple | None] = {
    "hidden_size": ANY, "layers_num": ANY, "heads_num": ANY, "feedforward_size": ANY,
    "dropout": ANY, "attention_dropout": ANY,  # inference: dropout is off
    "act": ACTIVATIONS,  # through oneDNN's post-op where it has one, else uer.layers.activation
    "mask": ("fully_visible", "causal", "causal_with_prefix"),  # uer's own attention_mask
    "layernorm_positioning": ("post", "pre"),  # the layer's compute() decides
    "layernorm": ("normal", "rms"),  # the norm modules themselves run
    "layernorm_eps": ANY,
    "parameter_sharing": (False, True),
    "bias": (True, False),
    "position_bias": ("none", "alibi"),  # ALiBi: uer's own alibi_mask on the padded grid
}
NORMS = (nn.LayerNorm, nn.RMSNorm)
# our activation -> (oneDNN post-op, its algorithm); tanh: the exit branches' activation
_MKLDNN_ACTS = {"gelu": ("gelu", "none"), "gelu_fast": ("gelu", "tanh"), "relu": ("relu", ""), "silu": ("swish", ""),
                "tanh": ("tanh", "")}


def _act(name: str, y: torch.Tensor) -> torch.Tensor:
    return torch.tanh(y) if name == "tanh" else activation(name)(y)


def mkldnn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN fused linears: x86 CPU builds with oneDNN (and bf16 support when asked for bf16)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return dtype == torch.float32


def unsupported_config(cfg: object) -> str | None:
    """Why the fused path cannot run a transformer of encoder config ``cfg``, or None when it can
    (what the config alone says: :func:`unsupported` also checks the built modules)."""
    if type(cfg) is not TransformerConfig:
        return f"config {type(cfg).__name__} is not TransformerConfig"
    for f in dataclasses.fields(cfg):
        if f.name not in SUPPORTED:
            return f"TransformerConfig.{f.name} is not known to uer.fused"
        allowed, value = SUPPORTED[f.name], getattr(cfg, f.name)
        if allowed is not ANY and value not in allowed:
            return f"TransformerConfig.{f.name}={value!r} is not supported by uer.fused"
    return None


def unsupported(encoder: Encoder) -> str | None:
    """Why the fused path cannot run ``encoder`` exactly, or None when it can."""
    if type(encoder) is not TransformerEncoder:
        return f"{type(encoder).__name__} has no fused path"
    why = unsupported_config(encoder.cfg)
    if why is not None:
        return why
    for i in range(encoder.layers_num):
        block = encoder.block(i)
        parts = {"layer": (block, TransformerLayer), "attention": (block.self_attn, MultiHeadAttention),
                 "feed-forward": (block.feed_forward, FeedForward)}
        for what, (module, cls) in parts.items():
            if type(module) is not cls:
                return f"layer {i}: {what} {type(module).__name__} is not {cls.__name__}"
        for norm in (block.layer_norm_1, block.layer_norm_2):
            if type(norm) not in NORMS:
                return f"layer {i}: norm {type(norm).__name__} is not one of {', '.join(n.__name__ for n in NORMS)}"
    return None


@dataclass
class FusedContext(EncoderContext):
    """The encoder's context plus where the real tokens are, for the packed linears."""

    length: int = 0  # longest sequence (last real position + 1): attention runs on [:, :length]
    flat: torch.Tensor | None = None  # (N,) positions of real tokens in the (B * length) grid; None = no padding
    kind: str = "fully_visible"  # the encoder's mask
    alibi_heads: int = 0  # > 0: ALiBi scores for this many heads (the encoder's position_bias)

    @classmethod
    def build(cls, seg: torch.Tensor, mask_kind: str, alibi_heads: int = 0) -> "FusedContext":
        """``seg`` (B, T) stays whole (``real`` matches the hidden states); the rest is cut to length."""
        length = real_length(seg)
        real = seg[:, :length] > 0
        flat = None if bool(real.all()) else real.reshape(-1).nonzero().squeeze(1)
        plain = flat is None and mask_kind == "fully_visible" and not alibi_heads  # nothing to mask or add
        mask = None if plain else encoder_mask(seg[:, :length], mask_kind, alibi_heads)
        return cls(seg, mask, length, flat, mask_kind, alibi_heads)

    def select(self, index: torch.Tensor) -> "FusedContext":
        """Rebuilt rather than sliced: the sub-batch may be shorter, or free of padding."""
        return FusedContext.build(self.seg[index], self.kind, self.alibi_heads)


class PackedLinear:
    """``act(x @ W.T + b) (+ residual)`` through a oneDNN-packed weight, or ``F.linear`` where oneDNN
    cannot run (``mkldnn=False``). ``rows``: only these output rows of ``linear`` (a split of the
    fused Q/K/V projection). ``act``: one of ``uer.layers.activation``'s names, or ``"tanh"``."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, mkldnn: bool, rows: slice = slice(None)) -> None:
        weight = linear.weight.detach()[rows].to(dtype)
        self.bias = None if linear.bias is None else linear.bias.detach()[rows].to(dtype)
        self.mkldnn = mkldnn
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 128) if mkldnn else weight

    def __call__(self, x: torch.Tensor, act: str | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:  # (N, in) -> (N, out)
        if self.mkldnn and (act is None or act in _MKLDNN_ACTS):
            if residual is not None and act is None:  # the residual add is the post-op
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias, "add")
            attr, algorithm = _MKLDNN_ACTS[act] if act is not None else ("none", "")
            y = torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, attr, [], algorithm)
        elif self.mkldnn:  # an activation oneDNN has no post-op for
            y = _act(act, torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], ""))
        else:
            y = F.linear(x, self.weight, self.bias)
            if act is not None:
                y = _act(act, y)
        return y if residual is None else residual + y


def pack_linears(modules: Iterable[nn.Module], dtype: torch.dtype, mkldnn: bool) -> dict[nn.Module, PackedLinear]:
    """A :class:`PackedLinear` for every ``nn.Linear`` inside ``modules``, each packed once (ALBERT: a
    shared block)."""
    linears: dict[nn.Module, PackedLinear] = {}
    for root in modules:
        for module in root.modules():
            if isinstance(module, nn.Linear) and module not in linears:
                linears[module] = PackedLinear(module, dtype, mkldnn)
    return linears


class PackedExecutor:
    """``LayerExecutor[Tensor, Tensor]`` of ``TransformerLayer.compute`` on packed (N, H) real tokens
    (inference only: dropout is off)."""

    __slots__ = ("linears", "ctx")

    def __init__(self, linears: dict[nn.Module, PackedLinear], ctx: FusedContext) -> None:
        self.linears, self.ctx = linears, ctx

    def linear(self, module: nn.Linear, x: torch.Tensor, act: str | None = None, dropout: nn.Module | None = None,
               residual: torch.Tensor | None = None) -> torch.Tensor:
        return self.linears[module](x, act, residual)

    def qkv(self, module: nn.Linear, x: torch.Tensor, norm: nn.Module | None) -> torch.Tensor:  # (N, H) -> (N, 3H)
        return self.linears[module](x if norm is None else norm(x))

    def attend(self, qkv: torch.Tensor, heads_num: int, dropout_p: float = 0.0) -> torch.Tensor:  # (N, 3H) -> (N, H)
        ctx = self.ctx
        b, t = ctx.seg.shape[0], ctx.length
        if ctx.flat is not None:  # back onto the padded grid for attention
            qkv = qkv.new_zeros(b * t, qkv.shape[1]).index_copy_(0, ctx.flat, qkv)
        out = attend(qkv.view(b, t, -1), heads_num, ctx.attn_mask).reshape(b * t, -1)
        return out if ctx.flat is None else out.index_select(0, ctx.flat)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)


class FusedEncoder(nn.Module):
    """The per-layer API of :class:`uer.encoders.base.Encoder` over a fused, unpadded execution.

    ``mode``: the one in effect (``fused`` or ``eager``); ``reason``: why.
    Same dtype in and out; ``dtype=torch.bfloat16`` computes inside in bf16 (never the default).
    """

    def __init__(
        self, embedding: nn.Module, encoder: Encoder, mode: Mode = "auto", dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
        self.dtype = dtype
        self.layers_num = encoder.layers_num
        self.output_size = encoder.output_size
        device = next(encoder.parameters()).device
        # The modules themselves: the eager path and the embedding. Copies only when the dtype changes.
        self.embedding = (copy.deepcopy(embedding).to(dtype) if dtype != torch.float32 else embedding).eval()
        self.encoder = (copy.deepcopy(encoder).to(dtype) if dtype != torch.float32 else encoder).eval()
        self.mode, self.reason = self._choose(mode, self.encoder)
        self.linears: dict[nn.Module, PackedLinear] = {}
        if self.mode == "fused":
            mkldnn = mkldnn_usable(device, dtype)
            self.linears = pack_linears((self.encoder.block(i) for i in range(self.layers_num)), dtype, mkldnn)
            self.mask_kind = self.encoder.cfg.mask
            self.alibi_heads = self.encoder.alibi_heads
            self.reason += "; oneDNN packed linears" if mkldnn else "; F.linear (no oneDNN for this device/dtype)"

    @staticmethod
    def _choose(mode: str, encoder: Encoder) -> tuple[str, str]:
        if mode == "eager":
            return "eager", "asked for eager"
        why = unsupported(encoder)
        if why is not None:
            if mode == "fused":
                raise ValueError(f"mode 'fused': {why}")
            return "eager", why
        return "fused", "fused transformer"

    # ------------------------------------------------------------------ the Encoder API
    def embed(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, H), fp32 out
        with torch.no_grad():
            return self.embedding(src, seg).float()

    def context(self, seg: torch.Tensor) -> EncoderContext:
        if self.mode == "eager":
            return self.encoder.context(seg)
        return FusedContext.build(seg, self.mask_kind, self.alibi_heads)

    def _pack(self, hidden: torch.Tensor, ctx: FusedContext) -> torch.Tensor:  # (B, T, H) -> (N, H)
        x = hidden[:, : ctx.length].to(self.dtype)
        x = x.reshape(-1, x.shape[-1])
        return x if ctx.flat is None else x.index_select(0, ctx.flat)

    def _unpack(self, x: torch.Tensor, like: torch.Tensor, ctx: FusedContext) -> torch.Tensor:  # (N, H) -> (B, T, H)
        b, t = like.shape[:2]
        grid = x if ctx.flat is None else x.new_zeros(b * ctx.length, x.shape[-1]).index_copy_(0, ctx.flat, x)
        grid = grid.view(b, ctx.length, -1).to(like.dtype)
        if t == ctx.length:
            return grid
        out = like.new_zeros(b, t, x.shape[-1])  # columns after the longest sequence: padding only
        out[:, : ctx.length] = grid
        return out

    @torch.no_grad()
    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:
        """Layer ``i`` (0-based): (B, T, H) -> (B, T, H), in the dtype of ``hidden``."""
        if self.mode == "eager":
            return self.encoder.layer(i, hidden.to(self.dtype), ctx).to(hidden.dtype)
        x = self.encoder.block(i).compute(self._pack(hidden, ctx), PackedExecutor(self.linears, ctx))
        return self._unpack(x, hidden, ctx)

    @torch.no_grad()
    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.encoder.finish(hidden.to(self.dtype)).to(hidden.dtype)

    @torch.no_grad()
    def forward_layers(self, emb: torch.Tensor, seg: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, the last one finished: ``layers_num`` x (B, T, H)."""
        ctx = self.context(seg)
        if self.mode == "eager":
            return Encoder.forward_layers(self, emb, seg)
        x, outputs, ex = self._pack(emb, ctx), [], PackedExecutor(self.linears, ctx)
        for i in range(self.layers_num):
            x = self.encoder.block(i).compute(x, ex)
            # The final norm (pre-LN) works per token: applied to real tokens, padding stays zero.
            outputs.append(self._unpack(self.encoder.finish(x) if i == self.layers_num - 1 else x, emb, ctx))
        return outputs

    @torch.no_grad()
    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); the layers stay packed in between."""
        ctx = self.context(seg)
        if self.mode == "eager":
            return Encoder.forward(self, emb, seg)
        x, ex = self._pack(emb, ctx), PackedExecutor(self.linears, ctx)
        for i in range(self.layers_num):
            x = self.encoder.block(i).compute(x, ex)
        return self._unpack(self.encoder.finish(x), emb, ctx)


def optimize_for_inference(
    embedding: nn.Module, encoder: Encoder, mode: Mode = "auto", dtype: torch.dtype = torch.float32
) -> FusedEncoder:
    """A :class:`FusedEncoder` for ``model.embedding`` + ``model.encoder`` (both put in eval mode).

    Example::

        fused = optimize_for_inference(model.embedding, model.encoder)
        hidden = fused(fused.embed(src, seg), seg)   # (B, T, H); zeros at padding
        print(fused.mode, fused.reason)           # e.g. "eager", "LstmEncoder has no fused path"
    """
    return FusedEncoder(embedding, encoder, mode, dtype)
