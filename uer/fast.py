"""Fast inference for the transformer encoder, with the plain modules as the fallback.

    fast = optimize_for_inference(model.embedding, model.encoder)      # mode="auto", fp32
    hidden = fast(fast.embed(src, seg), seg)                           # == model.encode(src, seg)

    ctx = fast.context(seg)                                            # FastBERT: one layer at a time
    hidden = fast.layer(0, fast.embed(src, seg), ctx)
    keep = ...; hidden, ctx = hidden[keep], ctx.select(keep)           # samples that have not exited

What the fused path does differently from ``TransformerEncoder`` (same maths, same weights):

* Unpadded linears. The projections and the feed-forward network (nearly all FLOPs) run on the
  real tokens only, packed to (N, H); padding costs nothing there. Attention runs on the padded
  grid, cut to the longest sequence of the batch, with the same mask as the encoder.
* oneDNN on x86 CPUs: weights reordered once into oneDNN's blocked layout, bias + GELU and the
  residual add fused into the GEMM (``torch.ops.mkldnn._linear_pointwise``, what inductor emits).
  Elsewhere (CUDA, ARM, no oneDNN) the same code runs with ``F.linear``.

Modes: ``fused``; ``eager`` (the model's own modules, the reference); ``auto`` = fused for a
``TransformerEncoder``, eager for any other encoder. ``dtype=torch.bfloat16`` computes in bf16
inside (inputs and outputs keep their dtype); never the default, and slower than fp32 on CPUs
without bf16 units (see bench/README.md).

``forward`` / ``forward_layers`` / ``layer`` give zeros at padding positions (the encoder leaves
garbage there; every pooling masks it). The embedding and encoder are put in eval mode. The fused
weights are a snapshot: build the object again after changing the model's weights.
"""
from __future__ import annotations

import copy
import platform
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from uer.encoders.base import Encoder, EncoderContext
from uer.encoders.transformer import TransformerEncoder, attention_mask

Mode = Literal["auto", "eager", "fused"]
MODES = ("auto", "eager", "fused")
# our activation -> (oneDNN post-op, its algorithm)
_MKLDNN_ACTS = {"gelu": ("gelu", "none"), "gelu_fast": ("gelu", "tanh"), "relu": ("relu", ""), "silu": ("swish", "")}


def mkldnn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN fused linears: x86 CPU builds with oneDNN (and bf16 support when asked for bf16)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return dtype == torch.float32


@dataclass
class FastContext(EncoderContext):
    """The encoder's context plus where the real tokens are, for the packed linears."""

    length: int = 0  # longest sequence (last real position + 1): attention runs on [:, :length]
    flat: torch.Tensor | None = None  # (N,) positions of real tokens in the (B * length) grid; None = no padding
    kind: str = "fully_visible"  # the encoder's mask

    @classmethod
    def build(cls, seg: torch.Tensor, mask_kind: str) -> "FastContext":
        """``seg`` (B, T) stays whole (``padding`` matches the hidden states); the rest is cut to length."""
        real = seg > 0  # (B, T)
        cols = real.any(0).nonzero()
        length = int(cols[-1]) + 1 if cols.numel() else 1
        real = real[:, :length]
        flat = None if bool(real.all()) else real.reshape(-1).nonzero().squeeze(1)
        mask = None if flat is None and mask_kind == "fully_visible" else attention_mask(seg[:, :length], mask_kind)
        return cls(seg, mask, length, flat, mask_kind)

    def select(self, index: torch.Tensor) -> "FastContext":
        """Rebuilt rather than sliced: the sub-batch may be shorter, or free of padding."""
        return FastContext.build(self.seg[index], self.kind)


class _Linear:
    """``act(x @ W.T + b) (+ residual)`` through a oneDNN-packed weight, or ``F.linear`` elsewhere."""

    def __init__(self, linear: nn.Linear, act: str | None, dtype: torch.dtype, mkldnn: bool) -> None:
        weight = linear.weight.detach().to(dtype)
        self.bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.mkldnn = mkldnn and (act is None or act in _MKLDNN_ACTS)
        if self.mkldnn:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 128)
            self.attr, self.algorithm = _MKLDNN_ACTS[act] if act is not None else ("none", "")
        else:
            self.weight = weight
            from uer.layers.activations import activation

            self.act = None if act is None else activation(act)

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:  # (N, in) -> (N, out)
        if self.mkldnn:
            if residual is not None:  # act is None here: the residual add is the post-op
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias, "add")
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.attr, [], self.algorithm)
        y = F.linear(x, self.weight, self.bias)
        if self.act is not None:
            y = self.act(y)
        return y if residual is None else y + residual


class _Block:
    """One transformer layer's weights, ready for packed execution."""

    def __init__(self, layer: nn.Module, act: str, dtype: torch.dtype, mkldnn: bool) -> None:
        attn = layer.self_attn
        self.heads, self.head_size = attn.heads_num, attn.head_size
        self.pre_norm = layer.pre_norm
        self.qkv = _Linear(attn.qkv, None, dtype, mkldnn)
        self.output = _Linear(attn.output, None, dtype, mkldnn)
        self.linear_1 = _Linear(layer.feed_forward.linear_1, act, dtype, mkldnn)
        self.linear_2 = _Linear(layer.feed_forward.linear_2, None, dtype, mkldnn)
        self.norm_1 = copy.deepcopy(layer.layer_norm_1).to(dtype).eval()
        self.norm_2 = copy.deepcopy(layer.layer_norm_2).to(dtype).eval()

    def attention(self, x: torch.Tensor, ctx: FastContext) -> torch.Tensor:
        """(N, H) packed -> (N, H) attention values, before the output projection."""
        b, t, h = ctx.seg.shape[0], ctx.length, x.shape[1]
        qkv = self.qkv(x)  # (N, 3H)
        if ctx.flat is not None:  # back onto the padded grid for attention
            qkv = qkv.new_zeros(b * t, 3 * h).index_copy_(0, ctx.flat, qkv)
        q, k, v = qkv.view(b, t, 3, self.heads, self.head_size).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, T, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.attn_mask)
        out = out.transpose(1, 2).reshape(b * t, h)
        return out if ctx.flat is None else out.index_select(0, ctx.flat)

    def __call__(self, x: torch.Tensor, ctx: FastContext) -> torch.Tensor:  # (N, H) -> (N, H)
        if self.pre_norm:
            x = self.output(self.attention(self.norm_1(x), ctx), residual=x)
            return self.linear_2(self.linear_1(self.norm_2(x)), residual=x)
        x = self.norm_1(self.output(self.attention(x, ctx), residual=x))
        return self.norm_2(self.linear_2(self.linear_1(x), residual=x))


class FastEncoder(nn.Module):
    """The per-layer API of :class:`uer.encoders.base.Encoder` over a fused, unpadded execution.

    ``mode``: the one in effect (``fused`` or ``eager``); ``reason``: why ``auto`` chose it.
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
        self.mode, self.reason = self._choose(mode, encoder)
        self.blocks: list[_Block] = []
        if self.mode == "fused":
            cfg = encoder.cfg
            mkldnn = mkldnn_usable(device, dtype)
            layers = [encoder.transformer[0 if cfg.parameter_sharing else i] for i in range(self.layers_num)]
            built: dict[int, _Block] = {}
            for layer in layers:  # ALBERT: one shared block
                built.setdefault(id(layer), _Block(layer, cfg.act, dtype, mkldnn))
                self.blocks.append(built[id(layer)])
            self.mask_kind = cfg.mask
            self.reason += "; oneDNN packed linears" if mkldnn else "; F.linear (no oneDNN for this device/dtype)"

    @staticmethod
    def _choose(mode: str, encoder: Encoder) -> tuple[str, str]:
        if mode == "eager":
            return "eager", "asked for eager"
        if not isinstance(encoder, TransformerEncoder):
            if mode == "fused":
                raise ValueError(f"mode 'fused' needs a TransformerEncoder, got {type(encoder).__name__}")
            return "eager", f"{type(encoder).__name__} has no fused path"
        return "fused", "fused transformer"

    # ------------------------------------------------------------------ the Encoder API
    def embed(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, H), fp32 out
        with torch.no_grad():
            return self.embedding(src, seg).float()

    def context(self, seg: torch.Tensor) -> EncoderContext:
        if self.mode == "eager":
            return self.encoder.context(seg)
        return FastContext.build(seg, self.mask_kind)

    def _pack(self, hidden: torch.Tensor, ctx: FastContext) -> torch.Tensor:  # (B, T, H) -> (N, H)
        x = hidden[:, : ctx.length].to(self.dtype)
        x = x.reshape(-1, x.shape[-1])
        return x if ctx.flat is None else x.index_select(0, ctx.flat)

    def _unpack(self, x: torch.Tensor, like: torch.Tensor, ctx: FastContext) -> torch.Tensor:  # (N, H) -> (B, T, H)
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
        return self._unpack(self.blocks[i](self._pack(hidden, ctx), ctx), hidden, ctx)

    @torch.no_grad()
    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.encoder.finish(hidden.to(self.dtype)).to(hidden.dtype)

    @torch.no_grad()
    def forward_layers(self, emb: torch.Tensor, seg: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, the last one finished: ``layers_num`` x (B, T, H)."""
        ctx = self.context(seg)
        if self.mode == "eager":
            return Encoder.forward_layers(self, emb, seg)
        x, outputs = self._pack(emb, ctx), []
        for i, block in enumerate(self.blocks):
            x = block(x, ctx)
            # The final norm (pre-LN) works per token: applied to real tokens, padding stays zero.
            outputs.append(self._unpack(self.encoder.finish(x) if i == self.layers_num - 1 else x, emb, ctx))
        return outputs

    @torch.no_grad()
    def forward(self, emb: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); the layers stay packed in between."""
        ctx = self.context(seg)
        if self.mode == "eager":
            return Encoder.forward(self, emb, seg)
        x = self._pack(emb, ctx)
        for block in self.blocks:
            x = block(x, ctx)
        return self._unpack(self.encoder.finish(x), emb, ctx)


def optimize_for_inference(
    embedding: nn.Module, encoder: Encoder, mode: Mode = "auto", dtype: torch.dtype = torch.float32
) -> FastEncoder:
    """A :class:`FastEncoder` for ``model.embedding`` + ``model.encoder`` (both put in eval mode).

    Example::

        fast = optimize_for_inference(model.embedding, model.encoder)
        hidden = fast(fast.embed(src, seg), seg)   # (B, T, H); zeros at padding
    """
    return FastEncoder(embedding, encoder, mode, dtype)
