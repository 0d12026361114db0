"""Token-level early exit for sequence labelling.

The rule. After layer ``l`` every token still in the network gets its branch's tag distribution
``p``; the token *exits* at layer ``l`` when its normalised entropy ``H(p) / log(tags)`` is below
``speed`` (with ``window = w > 0``: when the largest normalised entropy among the real tokens at
positions ``i - w .. i + w``, itself included, is below ``speed``; a neighbour that has already
exited counts with the entropy it exited with). An exited token keeps its state: its tag
distribution is the one it exited with, and its hidden vector is frozen from then on. It is
still attended to by the tokens that remain: in every later layer its frozen vector gives keys
and values, so the layer computes keys and values for every real token, but queries, the
attention output, the feed-forward block and the branch only for the tokens still in. After the
last layer every remaining token exits. ``speed = 0`` never exits early (entropy is >= 0) and is
exactly the full model (backbone + last branch); ``speed >= 1`` exits every token after layer 1.

Every operation is per sentence (masked attention, position-wise layers), so a sentence's tags
do not depend on the other sentences of its batch or on padding. A sentence whose tokens have
all exited leaves the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uer.encoders.transformer import TransformerEncoder
from uer.tagging.targets import TokenExitTarget


def normalized_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (...) entropy / log(C), in [0, 1]."""
    return (-torch.special.xlogy(probs, probs).sum(-1) / math.log(probs.shape[-1])).clamp(0.0, 1.0)


def token_exit_target(model: nn.Module) -> TokenExitTarget:
    for component in model.target.components.values():
        if isinstance(component, TokenExitTarget):
            return component
    raise ValueError(f"the model has no token_exit target (targets: {', '.join(model.target.components)})")


def trim_padding(src: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cols = (seg > 0).any(0).nonzero()
    width = int(cols[-1]) + 1 if cols.numel() else 1
    return src[:, :width], seg[:, :width]


@dataclass
class TokenExitResult:
    probs: torch.Tensor  # (B, T, C) tag distribution at each token's exit layer (padding: zeros)
    exit_layer: torch.Tensor  # (B, T) long, 1-based; 0 at padding


class TokenExit:
    """A trained ``token_exit`` model prepared for inference (eager modules, eval mode).

    Example::

        runner = TokenExit(model)
        out = runner.predict(src, seg, speed=0.3, window=1)    # out.probs (B, T, C), out.exit_layer (B, T)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.target = token_exit_target(model)
        self.encoder = model.encoder
        self.layers_num = len(self.target.branches)
        self.labels_num = self.target.labels_num
        # Queries-only-for-remaining-tokens needs the layer's pieces; other encoders fall back to
        # running the whole layer and keeping the exited tokens' old vectors (same results, no saving).
        self.partial = isinstance(self.encoder, TransformerEncoder) and self.encoder.cfg.mask == "fully_visible"

    # ------------------------------------------------------------------ one layer on the remaining tokens
    def _block(self, i: int):
        cfg = self.encoder.cfg
        return self.encoder.transformer[0 if cfg.parameter_sharing else i]

    def _layer_on(self, i: int, hidden: torch.Tensor, ctx, active: torch.Tensor) -> torch.Tensor:
        """Layer ``i`` for the tokens where ``active`` (B, T) is True; the others keep their vector.

        Returns the new vectors of the active tokens only: (N, H), in ``active.nonzero()`` order."""
        if not self.partial:
            return self.encoder.layer(i, hidden, ctx)[active]
        block = self._block(i)
        attn = block.self_attn
        b, t, h = hidden.shape
        heads, size = attn.heads_num, attn.head_size
        w_q, w_kv = attn.qkv.weight.split([h, 2 * h])
        b_q, b_kv = (None, None) if attn.qkv.bias is None else attn.qkv.bias.split([h, 2 * h])
        x_all = block.layer_norm_1(hidden) if block.pre_norm else hidden  # what keys / values see
        kv = F.linear(x_all, w_kv, b_kv).view(b, t, 2, heads, size).permute(2, 0, 3, 1, 4)  # 2 x (B, heads, T, d)
        x = hidden[active]  # (N, H)
        q_in = x_all[active] if block.pre_norm else x
        q = F.linear(q_in, w_q, b_q)  # (N, H): queries of the remaining tokens only
        if b == 1:
            q = q.view(1, -1, heads, size).transpose(1, 2)  # (1, heads, N, d)
            mask = ctx.attn_mask
            if mask is not None and mask.shape[-2] != 1:  # per-query scores (ALiBi): the remaining queries' rows
                mask = mask[:, :, active[0]]
            out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
            out = out.transpose(1, 2).reshape(-1, h)  # (N, H)
        else:  # queries scattered back to their positions; only the attention itself runs for all T
            full = q.new_zeros(b, t, h)
            full[active] = q
            full = full.view(b, t, heads, size).transpose(1, 2)
            out = F.scaled_dot_product_attention(full, kv[0], kv[1], attn_mask=ctx.attn_mask)
            out = out.transpose(1, 2)[active].reshape(-1, h)
        a = attn.output(out)
        if block.pre_norm:
            x = x + a
            return x + block.feed_forward(block.layer_norm_2(x))
        x = block.layer_norm_1(x + a)
        return block.layer_norm_2(x + block.feed_forward(x))

    # ------------------------------------------------------------------ early exit
    @torch.inference_mode()
    def predict(self, src: torch.Tensor, seg: torch.Tensor, speed: float, window: int = 0) -> TokenExitResult:
        """(B, T) ids and segments -> per-token tag distributions and exit layers."""
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        real = seg > 0  # (B, T)
        probs_out = torch.zeros(b0, t0, self.labels_num, device=src.device)
        layer_out = torch.zeros(b0, t0, dtype=torch.long, device=src.device)
        hidden = self.model.embed(src, seg)  # (B, T, H)
        ctx = self.encoder.context(seg)
        rows = torch.arange(src.shape[0], device=src.device)  # original row of each sentence still in
        active = real.clone()
        entropy = torch.zeros(real.shape, device=src.device)  # padding: 0, never blocks a neighbour
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            if bool(active.eq(real).all()):  # nobody has exited: the plain layer, as the full model runs it
                hidden = self.encoder.layer(i, hidden, ctx)
                if last:
                    hidden = self.encoder.finish(hidden)
                h_act = hidden[active]
            else:
                h_act = self._layer_on(i, hidden, ctx, active)
                if last:
                    h_act = self.encoder.finish(h_act)
                hidden = hidden.clone()
                hidden[active] = h_act
            probs = torch.softmax(self.target.branches[i](h_act).float(), dim=-1)  # (N, C)
            if last or speed >= 1.0:
                leave = active.clone()
            else:
                entropy[active] = normalized_entropy(probs)
                sure = entropy
                if window > 0:
                    sure = F.max_pool1d(entropy[:, None, :], 2 * window + 1, stride=1, padding=window)[:, 0]
                leave = active & (sure < speed)
            if bool(leave.any()):
                leave_act = leave[active]  # (N,) which of the active tokens leave
                pos = leave.nonzero()  # (K, 2) in the working batch
                probs_out[rows[pos[:, 0]], pos[:, 1]] = probs[leave_act]
                layer_out[rows[pos[:, 0]], pos[:, 1]] = i + 1
                active = active & ~leave
                if not bool(active.any()):
                    break
                keep = active.any(1)
                if not bool(keep.all()):  # sentences with no token left leave the batch
                    idx = keep.nonzero().squeeze(1)
                    rows, hidden, active, real, entropy = rows[idx], hidden[idx], active[idx], real[idx], entropy[idx]
                    ctx = ctx.select(idx)
        return TokenExitResult(probs_out, layer_out)

    @torch.inference_mode()
    def full_model(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The baseline: backbone + last branch (the teacher) only. (B, T, C) probabilities."""
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        hidden = self.encoder(self.model.embed(src, seg), seg)
        probs = torch.softmax(self.target.teacher(hidden).float(), dim=-1)
        out = torch.zeros(b0, t0, self.labels_num, device=src.device)
        out[:, : probs.shape[1]] = probs * (seg > 0)[..., None]
        return out
