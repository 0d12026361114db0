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
last layer every remaining token exits. ``speed <= 0`` never exits early (entropy is >= 0), so it
runs the full model itself (backbone + last branch, no student branch): the same tags and the same
cost as the full model; ``speed >= 1`` exits every token after layer 1.

Every operation is per sentence (masked attention, position-wise layers), so a sentence's tags
do not depend on the other sentences of its batch or on padding. A sentence whose tokens have
all exited leaves the batch.

Execution. The layers run on the real tokens packed to (N, H), as ``uer.fused`` runs them. A
layer in which some tokens have exited runs ``TransformerLayer.compute`` itself on the remaining
tokens, with an executor (:class:`_Remaining`) whose Q/K/V projection computes queries for those
tokens and keys and values for every token of their sentences: the maths is the layer's own,
written once. The linears come in two kinds: ``eager`` (``F.linear``; what ``FlopCounterMode``
counts) and ``fused`` (on x86 CPUs: ``uer.fused``'s oneDNN-packed weights with the bias, GELU, the
branch's tanh and the residual add fused into the GEMM). ``runtime="auto"`` (default) times both
on the full model when the runner is built, for one short sentence and for a batch, as FastBERT's
``auto`` runtime does, and runs each call on the winner for its batch size (``reason`` gives the
timings). Each timed call has a sequence length not timed before. Token exit hands the linears
many different row counts (the tokens still in vary by layer and by sentence), oneDNN builds a
primitive for every new shape (its cache keeps 1,024), and a probe that repeats one shape hides
that cost (measured here: 792 against 377 us per 128x512 linear over 400 random row counts, but
119 against 132 us at one fixed count). The full model, the
baseline of every speed-up, runs on the same choice. An encoder ``uer.fused`` does not cover
(not a transformer, another attention mask) runs each layer whole and keeps the exited tokens'
old vectors: the same results, without the saving. The linears are a snapshot of the weights:
build the runner again after training further.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uer.choices import TOKEN_EXIT_RUNTIMES
from uer.fastbert.policies.base import normalized_entropy, shannon_entropy  # noqa: F401  (normalized_entropy: this module's API)
from uer.fused import FusedContext, _Linear, _Packed, mkldnn_usable, unsupported
from uer.layers.executor import attend
from uer.runtime.auto import PROBES, REPEATS, SMALL_BATCH, describe_timings
from uer.tagging.targets import TokenExitTarget

RUNTIMES = TOKEN_EXIT_RUNTIMES


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


def _split_linear(linear: nn.Linear, sizes: list[int]) -> list[nn.Linear]:
    """``linear`` cut by output rows into independent linears (the fused Q/K/V into Q and K/V)."""
    parts = []
    weights = linear.weight.detach().split(sizes)
    biases = [None] * len(sizes) if linear.bias is None else linear.bias.detach().split(sizes)
    for w, b in zip(weights, biases):
        part = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            part.weight.copy_(w)
            if b is not None:
                part.bias.copy_(b)
        parts.append(part)
    return parts


class _Remaining:
    """Executor of ``TransformerLayer.compute`` on the tokens still in (``x`` is theirs, (A, H)).

    Its Q/K/V projection gives the queries of those ``A`` tokens and keeps the keys and values of
    all ``M`` live tokens (``live``: (M, H), the layer's input, exited tokens' frozen vectors
    included); ``attend`` lets the remaining queries attend to them. Everything after attention
    is position-wise and runs on the ``A`` tokens only."""

    __slots__ = ("weights", "block", "live", "act", "ctx", "kv")

    def __init__(self, weights: "_Weights", block: nn.Module, live: torch.Tensor, act: torch.Tensor, ctx: FusedContext) -> None:
        self.weights, self.block, self.live, self.act, self.ctx, self.kv = weights, block, live, act, ctx, None

    def linear(self, module, x, act=None, dropout=None, residual=None):  # dropout: off at inference
        if module is self.block.self_attn.qkv:
            q, kv = self.weights.qkv[module]
            keys_from = self.block.layer_norm_1(self.live) if self.block.pre_norm else self.live
            self.kv = kv(keys_from, None, None)  # (M, 2H)
            return q(x, None, None)  # (A, H)
        return self.weights.linears[module](x, act, residual)

    def attend(self, q: torch.Tensor, heads_num: int, dropout_p: float) -> torch.Tensor:  # (A, H) -> (A, H)
        ctx, kv = self.ctx, self.kv
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

    def norm(self, module, x):
        return module(x)


class _Weights:
    """One kind of linears for every layer and branch: ``F.linear`` or oneDNN-packed (``packed``)."""

    def __init__(self, runner: "TokenExit", packed: bool) -> None:
        self.linears: dict[nn.Module, _Linear] = {}
        self.qkv: dict[nn.Module, tuple[_Linear, _Linear]] = {}
        if runner.partial:
            hidden = runner.encoder.cfg.hidden_size
            for i in range(runner.layers_num):
                block = runner.encoder.block(i)
                for module in block.modules():
                    if isinstance(module, nn.Linear) and module not in self.linears:
                        self.linears[module] = _Linear(module, torch.float32, packed)
                qkv = block.self_attn.qkv
                if qkv not in self.qkv:
                    self.qkv[qkv] = tuple(_Linear(m, torch.float32, packed) for m in _split_linear(qkv, [hidden, 2 * hidden]))
        self.branches = [(_Linear(b.dense, torch.float32, packed), _Linear(b.output, torch.float32, packed))
                         for b in runner.target.branches]


class TokenExit:
    """A trained ``token_exit`` model prepared for inference (eval mode).

    ``runtime``: ``auto`` (default: the faster linears, measured at build), ``eager`` (``F.linear``)
    or ``fused`` (oneDNN-packed where usable, else ``F.linear``). ``name`` / ``reason``: what runs, why.

    Example::

        runner = TokenExit(model)
        out = runner.predict(src, seg, speed=0.3, window=1)    # out.probs (B, T, C), out.exit_layer (B, T)
    """

    def __init__(self, model: nn.Module, runtime: str = "auto") -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.target = token_exit_target(model)
        self.encoder = model.encoder
        self.layers_num = len(self.target.branches)
        self.labels_num = self.target.labels_num
        why = unsupported(self.encoder)
        if why is None and self.encoder.cfg.mask != "fully_visible":
            why = f"mask {self.encoder.cfg.mask!r}: tokens exit only under fully_visible attention"
        self.partial = why is None  # False: every layer runs whole (same results, no saving)
        self.reason = why or "remaining tokens only"
        if self.partial:
            self.alibi_heads = self.encoder.alibi_heads
        mkldnn = mkldnn_usable(self.device, torch.float32)
        if runtime == "auto":  # one candidate when oneDNN cannot run here: nothing to measure
            kinds = {"eager": False, "fused": True} if mkldnn and self.partial else {"eager": False}
        else:
            kinds = {runtime: runtime == "fused" and mkldnn}
        self.kinds = {name: _Weights(self, packed) for name, packed in kinds.items()}
        self.timings: dict[str, dict[str, float]] = {}
        if len(self.kinds) == 1:
            (name,) = self.kinds
            self.small = self.large = self.kinds[name]
            self.name = name
            self.reason = f"{name}: " + ("oneDNN packed linears" if kinds[name] else "F.linear") + f"; {self.reason}"
        else:
            self._choose()
        self.weights = self.small

    def _choose(self) -> None:
        vocab = self.model.embedding.word.num_embeddings
        longest = getattr(self.model.embedding, "max_seq_length", None)
        gen = torch.Generator().manual_seed(0)
        for probe, (b, t) in PROBES.items():
            t = min(t, longest) if longest else t
            # Every call at a length not seen before: token exit gives the linears many row counts, and
            # oneDNN builds a primitive per new shape; a repeated shape would hide that cost.
            lengths = [max(2, t - k) for k in range(REPEATS + 1)]
            self.timings[probe] = {}
            for name, weights in self.kinds.items():
                self.weights = weights
                total = 0.0
                for k, length in enumerate(lengths):
                    src = torch.randint(1, vocab, (b, length), generator=gen).to(self.device)
                    seg = torch.ones_like(src)
                    start = time.perf_counter()
                    with torch.inference_mode():
                        self._full(src, seg)
                    if k:  # the first call warms the code paths up
                        total += time.perf_counter() - start
                self.timings[probe][name] = total / REPEATS
        pick = {probe: min(times, key=times.get) for probe, times in self.timings.items()}
        self.small, self.large = self.kinds[pick["small"]], self.kinds[pick["large"]]
        self.name = pick["small"] if pick["small"] == pick["large"] else f"{pick['small']} (batch <= {SMALL_BATCH}), {pick['large']} (larger)"
        self.reason = f"auto, measured at load: {describe_timings(self.timings)}; {self.reason}"

    def _use(self, src: torch.Tensor) -> None:
        self.weights = self.small if src.shape[0] <= SMALL_BATCH else self.large

    def _branch(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Branch ``i`` (linear -> tanh -> linear) on (N, H) tokens -> (N, C) probabilities."""
        dense, output = self.weights.branches[i]
        if dense.mkldnn:
            y = torch.ops.mkldnn._linear_pointwise(h, dense.weight, dense.bias, "tanh", [], "")
        else:
            y = torch.tanh(dense(h, None, None))
        return torch.softmax(output(y, None, None).float(), dim=-1)

    def _layer(self, i: int, x: torch.Tensor, act: torch.Tensor | None, ctx) -> torch.Tensor:
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
            return block.compute(x, _Packed(self.weights.linears, ctx))
        return block.compute(x.index_select(0, act), _Remaining(self.weights, block, x, act, ctx))

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
    def predict(self, src: torch.Tensor, seg: torch.Tensor, speed: float, window: int = 0) -> TokenExitResult:
        """(B, T) ids and segments -> per-token tag distributions and exit layers."""
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        if speed <= 0:  # nobody can exit: the full model, without the students' branches
            probs = self.full_model(src, seg)
            return TokenExitResult(probs, torch.where(seg > 0, self.layers_num, 0))
        self._use(src)
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        t = src.shape[1]
        where = self._packed(seg)  # (N,) grid position of every real token
        x = self.model.embed(src, seg).reshape(b0 * t, -1).index_select(0, where)  # (M, H): the live tokens
        n = x.shape[0]
        limit = speed * math.log(self.labels_num)  # H(p) / log(C) < speed, without the division per token
        ctx = self._context(seg)
        own: torch.Tensor | None = None  # live token -> its index among the N; None = the same index
        act: torch.Tensor | None = None  # remaining live tokens (indices into x); None = all of them
        entropy = x.new_zeros(n) if window > 0 else None  # in nats; exited tokens keep theirs; padding counts 0
        done_ids, done_probs, done_layers = [], [], []  # who exited where, written once at the end
        for i in range(self.layers_num):
            last = i == self.layers_num - 1
            h = self._layer(i, x, act, ctx)  # (A, H)
            if act is None:
                x = h
            else:
                x.index_copy_(0, act, h)  # the exited tokens keep their vectors
            if last:
                h = self.encoder.finish(h)
            probs = self._branch(i, h)  # (A, C)
            # the remaining tokens among the N (None: all N, in order)
            if own is None:
                ids = act
            else:
                ids = own if act is None else own.index_select(0, act)
            if last or speed >= 1.0:
                done_ids.append(ids)
                done_probs.append(probs)
                done_layers.append(i + 1)
                break
            ent = shannon_entropy(probs)
            if window > 0:
                if ids is None:
                    entropy.copy_(ent)
                else:
                    entropy.index_copy_(0, ids, ent)
                pooled = self._window_max(entropy, own, ctx, window)
                sure = pooled if act is None else pooled.index_select(0, act)
            else:
                sure = ent
            leave = sure < limit
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

    def _window_max(self, entropy: torch.Tensor, own: torch.Tensor | None, ctx, window: int) -> torch.Tensor:
        """(M,) the largest entropy within +-window real positions of each live token (padding: 0)."""
        seg = ctx.seg
        live = entropy if own is None else entropy.index_select(0, own)
        if live.numel() == seg.numel():  # no padding (one sentence, or all of one length): the grid is the tokens
            return F.max_pool1d(live.view(seg.shape[0], 1, -1), 2 * window + 1, stride=1, padding=window).reshape(-1)
        pos = self._packed(seg)
        grid = entropy.new_zeros(seg.numel())
        grid[pos] = live
        pooled = F.max_pool1d(grid.view(seg.shape[0], 1, -1), 2 * window + 1, stride=1, padding=window)
        return pooled.reshape(-1).index_select(0, pos)

    @torch.inference_mode()
    def full_model(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """The baseline: backbone + last branch (the teacher) only, on the same runtime. (B, T, C) probabilities."""
        self._use(src)
        return self._full(src, seg)

    def _full(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        b0, t0 = src.shape
        src, seg = trim_padding(src, seg)
        t = src.shape[1]
        where = self._packed(seg)
        x = self.model.embed(src, seg).reshape(b0 * t, -1).index_select(0, where)
        ctx = self._context(seg)
        for i in range(self.layers_num):
            x = self._layer(i, x, None, ctx)
        probs = self._branch(self.layers_num - 1, self.encoder.finish(x))
        return self._scatter(probs, where, b0, t0, t)
