"""A position scaffold: what lets a BERT with learned positions leave the MLM plateau early.

From scratch, a small BERT sits for thousands of steps on the *frequent-token plateau* (about 0.14
held-out MLM accuracy on Chinese news and reviews, `bench/results/pretrain_plateau.md`): attention
stays as broad as at init and the learned position table stays random, in uer and in
``transformers`` alike. ALiBi leaves the plateau at once but makes a model that is no longer a BERT
(no HuggingFace ``BertModel``, no ONNX export). The scaffold keeps the model a BERT. It only
chooses the initial values of some weights and holds them fixed while pre-training:

* the position table is sin/cos of the position in the last ``dims`` (32) columns, at 16
  frequencies from pi/2 to pi/128 per token, and 0 elsewhere; the word and segment tables are 0
  in those columns. Positions and words thus start in separate sub-spaces, and the positions have
  ``amplitude`` / sqrt(2) times a word row's norm;
* in every layer, query and key read those columns on a diagonal with weight ``beta``: the
  score between positions i and j starts as a sum of cos(w (i - j)), so each head prefers its
  neighbours, like ALiBi. Head h skips the h-th share of the fastest frequencies (it reaches
  farther). Query and key keep their random weights everywhere else.

Held means: the gradient of these entries is zeroed (clipping and Adam never see it) and their
values are written back after each optimizer step (decoupled weight decay would shrink them).
Without the hold the locality is lost within a few hundred steps: word rows grow from 0.2 to
0.8 in norm while the positions stay small, and the embedding LayerNorm dilutes the positions
until attention is broad again (measured: frozen query/key with free position columns went from
a mean attention distance of 3-4 tokens to 29-32 by step 1,000, and stayed on the plateau).

What comes out is a plain BERT checkpoint: fine-tuning, conversion to HuggingFace and ONNX export
treat it like any other, and nothing is held any more after pre-training. ``pretrain.py`` applies
it from scratch when :func:`scaffold_refusal` finds nothing against the config
(``--position_scaffold off``: BERT's random init); a resumed run holds the values its checkpoint
carries; continued pre-training (``--pretrained_model_path``) holds nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

DIMS = 32  # columns of the position sub-space: 16 sin/cos pairs
FREQUENCIES = (math.pi / 2, math.pi / 128)  # fastest and slowest, log-spaced between
AMPLITUDE = 4.0  # position row norm = AMPLITUDE / sqrt(2) x a word row's norm at init
BETA_TINY = 0.8  # query/key weight on the diagonal for BERT-tiny (hidden 128, head size 64)
INIT_STD = 0.02  # uer.layers.init's std: a word row's entries at init


class ScaffoldError(ValueError):
    """A model the scaffold cannot be applied to (the message says why)."""


def scaffold_refusal(config) -> str | None:
    """Why the scaffold does not apply to a model of ``config`` (None: it does). It needs a
    transformer encoder with full (bidirectional) attention and no position bias, and an embedding
    of exactly learned ``word``, ``pos`` and optionally ``seg`` tables at the encoder's width."""
    if config.encoder.name != "transformer":
        return f"the encoder is {config.encoder.name!r}, not a transformer"
    cfg = config.encoder.cfg
    if cfg.position_bias != "none":
        return f"the encoder already has a position bias ({cfg.position_bias})"
    if cfg.mask != "fully_visible":
        return f"attention is {cfg.mask}, not fully visible (measured only for MLM)"
    names = [spec.name for spec in config.embedding.components]
    if "pos" not in names or not set(names) <= {"word", "pos", "seg"}:
        return f"the embedding is {names}, not learned word + pos (+ seg) tables"
    if config.subencoder is not None:
        return "a subencoder adds to the embedding"
    if config.emb_size != cfg.hidden_size:
        return "the embedding is factorised (emb_size != hidden_size)"
    head = cfg.hidden_size // cfg.heads_num
    if cfg.hidden_size < 4 * DIMS or head < DIMS:
        return f"hidden_size {cfg.hidden_size} / head size {head} is too small for a {DIMS}-column position sub-space"
    return None


def beta_for(hidden_size: int, head_size: int) -> float:
    """Query/key weight on the position columns. After the embedding LayerNorm the position
    columns hold a fixed share of a vector of norm sqrt(hidden), so a score grows as
    beta^2 * hidden / sqrt(head): this keeps BERT-tiny's starting scores at every size."""
    return BETA_TINY * (head_size / 64) ** 0.25 * math.sqrt(128 / hidden_size)


@dataclass
class Held:
    """One parameter's held entries: where (``mask``, True = held) and their values."""

    param: nn.Parameter
    mask: torch.Tensor
    values: torch.Tensor
    index: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # flat positions of mask


class Scaffold:
    """The held entries of a model: :meth:`attach` takes their values as the model has them then (as
    initialised, or as a resumed checkpoint loaded them), zeroes their gradients and writes the values
    back after every optimizer step."""

    def __init__(self, held: list[Held]) -> None:
        self.held = held
        self._handles: list = []

    @property
    def size(self) -> int:
        return sum(int(h.mask.sum()) for h in self.held)

    def capture(self) -> None:
        """Take the values to hold from the parameters as they are now (on their device)."""
        for h in self.held:
            h.mask = h.mask.to(h.param.device)
            # flat indices, found once: a boolean-mask write runs nonzero() over the whole table every
            # step (68 ms a step on BERT-mini's word table, one core); index_copy_ over these takes 15
            h.index = h.mask.flatten().nonzero().squeeze(1)
            h.values = h.param.detach().flatten().index_select(0, h.index)

    @torch.no_grad()
    def restore(self) -> None:
        for h in self.held:
            h.param.view(-1).index_copy_(0, h.index, h.values)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        self.capture()
        for h in self.held:
            keep = (~h.mask).to(h.param.dtype)
            self._handles.append(h.param.register_hook(lambda grad, keep=keep: grad * keep))
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.restore()))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def held_entries(model, config) -> Scaffold:
    """The entries the scaffold holds in ``model`` built from ``config`` (their values are taken by
    :meth:`Scaffold.attach`)."""
    why = scaffold_refusal(config)
    if why is not None:
        raise ScaffoldError(f"position scaffold: {why}")
    hidden = model.encoder.cfg.hidden_size
    sub = slice(hidden - DIMS, hidden)
    held = []
    for name, component in model.embedding.components.items():
        mask = torch.zeros_like(component.embedding.weight, dtype=torch.bool)
        if name == "pos":
            mask[:] = True  # the whole table: 0 outside the sub-space
        else:
            mask[:, sub] = True
        held.append(Held(component.embedding.weight, mask, torch.empty(0)))
    seen = set()
    for i in range(model.encoder.layers_num):
        qkv = model.encoder.block(i).self_attn.qkv.weight  # (3H, H): query rows, key rows, value rows
        if id(qkv) in seen:  # ALBERT-style sharing: one module for every layer
            continue
        seen.add(id(qkv))
        mask = torch.zeros_like(qkv, dtype=torch.bool)
        mask[: 2 * hidden, sub] = True
        held.append(Held(qkv, mask, torch.empty(0)))
    return Scaffold(held)


def position_table(length: int, hidden: int, amplitude: float = AMPLITUDE) -> torch.Tensor:
    """(length, hidden): sin/cos pairs in the last DIMS columns, 0 elsewhere; row norm
    ``amplitude`` / sqrt(2) times that of a row of N(0, INIT_STD^2) entries over the other columns."""
    pairs = DIMS // 2
    fast, slow = FREQUENCIES
    omega = fast * (slow / fast) ** (torch.arange(pairs, dtype=torch.float64) / (pairs - 1))
    angle = torch.arange(length, dtype=torch.float64)[:, None] * omega
    table = torch.zeros(length, hidden, dtype=torch.float64)
    table[:, hidden - DIMS::2] = torch.cos(angle)
    table[:, hidden - DIMS + 1::2] = torch.sin(angle)
    return (table * INIT_STD * math.sqrt((hidden - DIMS) / DIMS) * amplitude).float()


@torch.no_grad()
def apply_scaffold(model, config) -> Scaffold:
    """Write the scaffold's initial values into ``model``, freshly built from ``config`` (no RNG is
    drawn), and return its held entries; :meth:`Scaffold.attach` then holds them while training."""
    scaffold = held_entries(model, config)
    cfg = model.encoder.cfg
    hidden, heads = cfg.hidden_size, cfg.heads_num
    head = hidden // heads
    sub = slice(hidden - DIMS, hidden)
    for name, component in model.embedding.components.items():
        weight = component.embedding.weight
        if name == "pos":
            weight.copy_(position_table(weight.shape[0], hidden).to(weight.dtype))
        else:
            weight[:, sub] = 0
    beta = beta_for(hidden, head)
    pairs = DIMS // 2
    skip = pairs // (2 * heads)  # pairs of the fastest frequencies each further head leaves out
    for held in scaffold.held[len(model.embedding.components):]:
        qkv = held.param
        for h in range(heads):
            first = 2 * h * skip  # < DIMS: h * skip < pairs / 2
            for k in range(first, DIMS):  # the other entries of these columns keep their random init
                row = h * head + (k - first)
                qkv[row, hidden - DIMS + k] = beta  # query
                qkv[hidden + row, hidden - DIMS + k] = beta  # key
    return scaffold
