"""Token-level early exit for sequence labelling.

The rule. After layer ``l`` every token still in the network gets its branch's tag distribution
``p``, and an exit policy (``uer.exit.policies``: the same rules as sentence exit, applied per
token; ``entropy`` by default: normalised entropy below ``speed``) says which tokens leave. With
``window = w > 0`` a token leaves only when every real token at positions ``i - w .. i + w``
(itself included) may leave too, a neighbour that has already exited counting as one that may
(:func:`windowed`; any ``w`` at least the row's length means the whole row). An exited token keeps
its state: its tag distribution is the one it exited with, and its hidden vector is frozen from
then on. It is still attended to by the tokens that remain: in every later layer its frozen vector
gives keys and values, so the layer computes keys and values for every real token, but queries,
the attention output, the feed-forward block and the branch only for the tokens still in. After
the last layer every remaining token exits. A speed at which the policy never exits early (speed
0, every policy) runs the full model itself (backbone + last branch, no student branch): the same
tags and the same cost as the full model; ``speed >= 1`` exits every token after layer 1.
``patience`` counts, per token, the consecutive layers whose tag agrees.

Every operation is per sentence (masked attention, position-wise layers, per-token policies), so a
sentence's tags do not depend on the other sentences of its batch or on padding. A sentence whose
tokens have all exited leaves the batch.

Execution. The layers run on the real tokens packed to (N, H), as ``uer.fused`` runs them. A
layer in which some tokens have exited runs ``TransformerLayer.compute`` itself on the remaining
tokens, with an executor (:class:`_Remaining`) whose ``qkv`` (the layer executor's Q/K/V hook, the
pre-norm passed in) projects queries for those tokens and keys and values for every token of their
sentences: the maths is the layer's own, written once. The runtime (``uer.runtime``, kind
``token``) decides the linears: ``eager`` (``F.linear``; what ``FlopCounterMode`` counts) or
``fused`` (``uer.fused.PackedLinear``: oneDNN-packed weights with the bias, GELU, the branch's tanh
and the residual add fused into the GEMM, on x86 CPUs). ``auto`` (default) times both on the full
model when the runner is built (``uer.runtime.auto.choose``, the mechanism sentence exit uses) and
runs each call on the winner for its batch size (``reason`` gives the timings). The full model, the
baseline of every speed-up, runs on the same choice. An encoder ``uer.fused`` does not cover (not a
transformer, another attention mask) runs each layer whole and keeps the exited tokens' old
vectors: the same results, without the saving (``fused`` is then refused with the reason). The
linears are a snapshot of the weights: build the runner again after training further.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uer.exit.policies import DEFAULT, Policy, normalized_entropy, policy_names, resolve  # noqa: F401  (normalized_entropy: this module's API)
from uer.fused import FusedContext, PackedExecutor, PackedLinear, mkldnn_usable, pack_linears
from uer.layers.executor import attend
from uer.runtime.auto import Choice, choose
from uer.runtime.support import check_names, runtime_names, unsupported
from uer.tagging.targets import TokenExitTarget

RUNTIMES = runtime_names("token")


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


class _Remaining:
    """``LayerExecutor`` of ``TransformerLayer.compute`` on the tokens still in (``x`` is theirs, (A, H)).

    Its ``qkv`` gives the queries of those ``A`` tokens and the keys and values of all ``M`` live
    tokens (``live``: (M, H), the layer's input, exited tokens' frozen vectors included), each from
    the pre-norm the layer passes (None: post-norm); ``attend`` lets the remaining queries attend
    to them. Everything after attention is position-wise and runs on the ``A`` tokens only."""

    __slots__ = ("weights", "live", "act", "ctx")

    def __init__(self, weights: "_Weights", live: torch.Tensor, act: torch.Tensor, ctx: FusedContext) -> None:
        self.weights, self.live, self.act, self.ctx = weights, live, act, ctx

    def linear(self, module: nn.Linear, x: torch.Tensor, act: str | None = None, dropout: nn.Module | None = None,
               residual: torch.Tensor | None = None) -> torch.Tensor:  # dropout: off at inference
        return self.weights.linears[module](x, act, residual)

    def qkv(self, module: nn.Linear, x: torch.Tensor, norm: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, H) -> the remaining queries (A, H) and every live token's keys and values (M, 2H)."""
        q, kv = self.weights.qkv[module]
        if norm is None:
            return q(x), kv(self.live)
        return q(norm(x)), kv(norm(self.live))

    def attend(self, qkv: tuple[torch.Tensor, torch.Tensor], heads_num: int, dropout_p: float = 0.0) -> torch.Tensor:  # -> (A, H)
        q, kv = qkv
        ctx = self.ctx
        b, t, h = ctx.seg.shape[0], ctx.length, q.shape[1]
        if b == 1 and ctx.flat is None:  # one sentence: the remaining queries against all keys, no grid
            d = h // heads_num
            k, v = kv.view(1, t, 2, heads_num, d).permute(2, 0, 3, 1, 4)  # 2 x (1, heads, T, d)
            mask = ctx.attn_mask
            if mask is not None and mask.shape[-2] != 1:  # per-query scores (ALiBi): the remaining queries' rows
                mask = mask.index_select(2, self.act)
            out = F.scaled_dot_product_attention(q.view(1, -1, heads_num, d).transpose(1, 2), k, v, attn_mask=mask)
            return out.transpose(1, 2).reshape(-1, h)
        # queries scattered onto the padded grid (zeros elsewhere); only the attention itself runs for all positions
        at = self.act if ctx.flat is None else ctx.flat.index_select(0, self.act)
        grid = q.new_zeros(b * t, 3 * h)
        grid[:, :h].index_copy_(0, at, q)
        if ctx.flat is None:
            grid[:, h:] = kv
        else:
            grid[:, h:].index_copy_(0, ctx.flat, kv)
        return attend(grid.view(b, t, 3 * h), heads_num, ctx.attn_mask).reshape(b * t, h).index_select(0, at)

    def norm(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)


class _Weights:
    """One kind of linears for every layer and branch: ``F.linear`` or oneDNN-packed (``packed``)."""

    def __init__(self, runner: "TokenExit", packed: bool) -> None:
        self.linears: dict[nn.Module, PackedLinear] = {}
        self.qkv: dict[nn.Module, tuple[PackedLinear, PackedLinear]] = {}
        if runner.partial:
            blocks = [runner.encoder.block(i) for i in range(runner.layers_num)]
            self.linears = pack_linears(blocks, torch.float32, packed)
            hidden = runner.encoder.cfg.hidden_size
            for block in blocks:  # queries apart from keys and values: they run on other rows
                qkv = block.self_attn.qkv
                if qkv not in self.qkv:
                    self.qkv[qkv] = (PackedLinear(qkv, torch.float32, packed, rows=slice(0, hidden)),
                                     PackedLinear(qkv, torch.float32, packed, rows=slice(hidden, 3 * hidden)))
        self.branches = [(PackedLinear(b.dense, torch.float32, packed), PackedLinear(b.output, torch.float32, packed))
                         for b in runner.target.branches]


def windowed(ready: torch.Tensor, seg: torch.Tensor, window: int, positions: torch.Tensor | None = None) -> torch.Tensor:
    """(M,) bool per live token (in ``seg``'s row-major order of real tokens): may it leave by itself
    -> (M,) may it leave with its ``+-window`` real neighbours all ready (padding counts as ready).

    ``positions``: (M,) places of the live tokens in the flattened ``seg`` grid (None: no padding).
    A window of at least the row's length is the whole row: the pooling is capped there, so its
    cost does not grow with ``window``."""
    rows, width = seg.shape
    window = min(window, width)
    doubt = (~ready).float()
    if positions is None:  # no padding (one sentence, or all of one length): the grid is the tokens
        grid = doubt.view(rows, 1, width)
    else:
        grid = doubt.new_zeros(rows * width).index_copy_(0, positions, doubt).view(rows, 1, width)
    pooled = F.max_pool1d(grid, 2 * window + 1, stride=1, padding=window).reshape(-1)
    return (pooled if positions is None else pooled.index_select(0, positions)) == 0


class TokenExit:
    """A trained ``token_exit`` model prepared for inference (eval mode).

    ``runtime``: one of ``uer.runtime.runtime_names("token")``: ``auto`` (default: the faster
    linears, measured at build), ``eager`` (``F.linear``) or ``fused`` (oneDNN-packed where usable,
    else ``F.linear``). ``name`` / ``reason``: what runs, and why.

    Example::

        runner = TokenExit(model)
        out = runner.predict(src, seg, speed=0.3, window=1)    # out.probs (B, T, C), out.exit_layer (B, T)
        out = runner.predict(src, seg, speed=0.3, policy="patience")
    """

    def __init__(self, model: nn.Module, runtime: str = "auto") -> None:
        check_names(runtime, None, "token")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.target = token_exit_target(model)
        self.encoder = model.encoder
        self.layers_num = len(self.target.branches)
        self.labels_num = self.target.labels_num
        why = unsupported(model, "fused", kind="token")
        if runtime == "fused" and why is not None:
            raise ValueError(f"runtime 'fused': {why}")
        self.partial = why is None  # False: every layer runs whole (same results, no saving)
        if self.partial:
            self.alibi_heads = self.encoder.alibi_heads
        mkldnn = mkldnn_usable(self.device, torch.float32)
        if runtime == "auto":  # one candidate when oneDNN cannot run here: nothing to measure
            kinds = {"eager": False, "fused": True} if mkldnn and self.partial else {"eager": False}
        else:
            kinds = {runtime: runtime == "fused" and mkldnn}
        weights = {name: _Weights(self, packed) for name, packed in kinds.items()}
        how = "remaining tokens only" if self.partial else f"whole layers ({why})"
        if runtime == "auto":
            self.choice: Choice[_Weights] = choose(weights, lambda w, src, seg: self._full(src, seg, w),
                                                   self.model.embedding.word.num_embeddings, self.device,
                                                   self.model.embedding.max_seq_length)
        else:
            (w,) = weights.values()
            self.choice = Choice(w, w, runtime, f"{runtime}: " + ("oneDNN packed linears" if kinds[runtime] else "F.linear"))
        self.name, self.timings = self.choice.name, self.choice.timings
        self.reason = f"{self.choice.reason}; {how}"

    def _branch(self, i: int, h: torch.Tensor, w: _Weights) -> torch.Tensor:
        """Branch ``i`` (``TokenBranch``: linear -> tanh -> linear, the tanh fused into the first GEMM)
        on (N, H) tokens -> (N, C) probabilities."""
        dense, output = w.branches[i]
        return torch.softmax(output(dense(h, "tanh")).float(), dim=-1)

    def _layer(self, i: int, x: torch.Tensor, act: torch.Tensor | None, ctx, w: _Weights) -> torch.Tensor:
        """Layer ``i`` on the live tokens ``x`` (M, H); returns the new vectors of ``act`` (all when None)."""
        if not self.partial:  # the whole layer on the padded grid; the caller keeps the exited tokens' vectors
            b, t = ctx.seg.shape
            grid = x.new_zeros(b * t, x.shape[1])
            flat = self._packed(ctx.seg)
            grid.index_copy_(0, flat, x)
            out = self.encoder.layer(i, grid.view(b, t, -1), ctx).reshape(b * t, -1).index_select(0, flat)
            return out if act is None else out.index_select(0, act)
        block = self.encoder.block(i)
        if act is None:
            return block.compute(x, PackedExecutor(w.linears, ctx))
        return block.compute(x.index_select(0, act), _Remaining(w, x, act, ctx))

    def _context(self, seg: torch.Tensor):
        if self.partial:
            return FusedContext.build(seg, "fully_visible", self.alibi_heads)
        return self.encoder.context(seg)

    @staticmethod
    def _packed(seg: torch.Tensor) -> torch.Tensor:
        """(N,) positions of the real tokens in the flattened (B, T) grid, row by row."""
        return (seg > 0).reshape(-1).nonzero().squeeze(1)

    def _scatter(self, values: torch.Tensor, where: torch.Tensor, b0: int, t0: int, t: int) -> torch.Tensor:
        """Packed (N, ...) values back onto a zero (B0, T0, ...) grid whose first ``t`` columns they fill."""
        grid = values.new_zeros(b0 * t, *values.shape[1:])
        grid.index_copy_(0, where, values)
        grid = grid.view(b0, t, *values.shape[1:])
        if t == t0:
            return grid
        out = values.new_zeros(b0, t0, *values.shape[1:])
        out[:, :t] = grid
        return out

    # ------------------------------------------------------------------ early exit
    @torch.inference_mode()
    def predict(self, src: torch.Tensor, seg: torch.Tensor, speed: float, window: int = 0,
                policy: Policy = DEFAULT) -> TokenExitResult:
        """(B, T) ids and segments -> per-token tag distributions and exit layers.

        ``policy``: the exit rule (a name of ``uer.exit.policies.policy_names()``, a
        ``{"name": ...}`` spec or a policy object), applied per token; ``speed`` is its knob."""
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        rule = resolve(policy)
        if rule.task != "classification":
            raise ValueError(f"policy {type(rule).__name__} reads {rule.task} outputs; a token's branch gives a tag "
                             f"distribution (policies: {', '.join(policy_names('classification'))})")
        if rule.never_early(speed):  # nobody can exit: the full model, without the students' branches
            probs = self.full_model(src, seg)
            return TokenExitResult(probs, torch.where(seg > 0, self.layers_num, 0))
        w = self.choice.for_batch(src.shape[0])
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        t = src.shape[1]
        where = self._packed(seg)  # (N,) grid position of every real token
        x = self.model.embed(src, seg).reshape(b0 * t, -1).index_select(0, where)  # (M, H): the live tokens
        n = x.shape[0]
        state = rule.start(n, self.labels_num, self.layers_num, speed)  # one row per token still in
        ctx = self._context(seg)
        own: torch.Tensor | None = None  # live token -> its index among the N; None = the same index
        act: torch.Tensor | None = None  # remaining live tokens (indices into x); None = all of them
        # window: may each token leave by itself (exited tokens: True, as they were when they left)
        ready = torch.ones(n, dtype=torch.bool, device=x.device) if window > 0 else None
        done_ids, done_probs, done_layers = [], [], []  # who exited where, written once at the end
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            h = self._layer(i, x, act, ctx, w)  # (A, H)
            if act is None:
                x = h
            else:
                x.index_copy_(0, act, h)  # the exited tokens keep their vectors
            if last:
                h = self.encoder.finish(h)
            probs = self._branch(i, h, w)  # (A, C)
            # the remaining tokens among the N (None: all N, in order)
            if own is None:
                ids = act
            else:
                ids = own if act is None else own.index_select(0, act)
            leave = rule.exits(probs, i, state, last=last)  # (A,) bool
            if ready is not None and not bool(leave.all()):  # with its neighbours only
                if ids is None:
                    ready.copy_(leave)
                else:
                    ready.index_copy_(0, ids, leave)
                live = ready if own is None else ready.index_select(0, own)
                pooled = windowed(live, ctx.seg, window, None if live.numel() == ctx.seg.numel() else self._packed(ctx.seg))
                leave = pooled if act is None else pooled.index_select(0, act)
            gone = leave.nonzero().squeeze(1)
            if gone.numel() == 0:
                continue
            done_ids.append(gone if ids is None else ids.index_select(0, gone))
            done_probs.append(probs.index_select(0, gone))
            done_layers.append(i + 1)
            if gone.numel() == probs.shape[0]:
                break
            stay = (~leave).nonzero().squeeze(1)
            act = stay if act is None else act.index_select(0, stay)
            state = state.select(stay)
            if ctx.seg.shape[0] > 1:  # sentences with no token left leave the batch
                x, own, act, ctx = self._drop_finished(x, own, act, ctx)
        probs_out = x.new_zeros(n, self.labels_num)
        layer_out = torch.zeros(n, dtype=torch.long, device=x.device)
        for ids, probs, layer in zip(done_ids, done_probs, done_layers):
            if ids is None:
                probs_out, layer_out = probs, layer_out.fill_(layer)
            else:
                probs_out.index_copy_(0, ids, probs)
                layer_out.index_fill_(0, ids, layer)
        return TokenExitResult(self._scatter(probs_out, where, b0, t0, t), self._scatter(layer_out, where, b0, t0, t))

    def _live_rows(self, ctx) -> torch.Tensor:
        """(M,) the sentence (row of ``ctx.seg``) of each live token."""
        seg = ctx.seg
        return self._packed(seg) // seg.shape[1]

    def _drop_finished(self, x, own, act, ctx):
        rows = self._live_rows(ctx)  # (M,)
        alive = torch.zeros(ctx.seg.shape[0], dtype=torch.bool, device=x.device)
        alive[rows.index_select(0, act)] = True
        if bool(alive.all()):
            return x, own, act, ctx
        keep = alive.index_select(0, rows)  # (M,) live tokens whose sentence stays
        renumber = keep.long().cumsum(0) - 1  # old live index -> new one
        kept = keep.nonzero().squeeze(1)
        return (x.index_select(0, kept), kept if own is None else own.index_select(0, kept), renumber.index_select(0, act),
                self._context(ctx.seg[alive.nonzero().squeeze(1)]))

    @torch.inference_mode()
    def full_model(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The baseline: backbone + last branch (the teacher) only, on the same runtime. (B, T, C) probabilities."""
        return self._full(src, seg, self.choice.for_batch(src.shape[0]))

    def _full(self, src: torch.Tensor, seg: torch.Tensor, w: _Weights) -> torch.Tensor:
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        t = src.shape[1]
        where = self._packed(seg)
        x = self.model.embed(src, seg).reshape(b0 * t, -1).index_select(0, where)
        ctx = self._context(seg)
        for i in range(self.layers_num):
            x = self._layer(i, x, None, ctx, w)
        probs = self._branch(self.layers_num - 1, self.encoder.finish(x), w)
        return self._scatter(probs, where, b0, t0, t)
