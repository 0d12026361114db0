"""Masked-LM corruption of a batch of id rows, in numpy (preprocess and collate share it).

Three strategies choose which positions are predicted, ``prob`` of each row's maskable tokens
(at least one):

- ``token``: single tokens (BERT).
- ``whole_word``: whole words; a word is a run of tokens that starts at a word start
  (whole-word masking: all pieces of a word are predicted together).
- ``span``: contiguous spans of whole words whose lengths follow a geometric distribution,
  clipped at ``span_max_length`` words (SpanBERT, p = 0.2, max 10).

Every chosen position is then replaced by ``[MASK]`` (80%), a random ordinary token (10%) or kept
(10%), as in BERT. The randomness comes only from the ``numpy.random.Generator`` passed in, so the
same seed gives the same masks (dynamic masking resumes exactly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

IGNORE = -100  # label of positions that are not predicted (the MLM target's convention)
STRATEGIES = ("token", "whole_word", "span")


@dataclass(frozen=True)
class MaskingConfig:
    strategy: Literal["token", "whole_word", "span"] = "token"
    prob: float = 0.15
    replace_mask: float = 0.8
    replace_random: float = 0.1  # the rest is kept unchanged
    span_geo_prob: float = 0.2
    span_max_length: int = 10

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {self.strategy!r}; valid: {', '.join(STRATEGIES)}")
        if not 0.0 < self.prob < 1.0:
            raise ValueError(f"masking prob must lie in (0, 1), got {self.prob}")
        if self.replace_mask + self.replace_random > 1.0:
            raise ValueError("replace_mask + replace_random must not exceed 1")
        if not 0.0 < self.span_geo_prob <= 1.0:
            raise ValueError(f"span_geo_prob must lie in (0, 1], got {self.span_geo_prob}")
        if self.span_max_length < 1:
            raise ValueError(f"span_max_length must be >= 1 (words in a span), got {self.span_max_length}")


@dataclass(frozen=True)
class MaskIds:
    """What masking needs from the vocabulary (found there by token string, never hard-coded)."""

    mask_id: int
    special_ids: tuple[int, ...]  # never masked, never drawn as random replacements
    vocab_size: int
    continuation: np.ndarray | None = None  # (V,) bool: the token continues a word ("##ing")

    def random_pool(self) -> np.ndarray:
        pool = np.setdiff1d(np.arange(self.vocab_size), np.asarray(self.special_ids))
        return pool if len(pool) else np.arange(self.vocab_size)


def continuation_table(tokens: list[str]) -> np.ndarray:
    """(V,) bool: WordPiece pieces that continue a word ("##ing")."""
    return np.array([t.startswith("##") and len(t) > 2 for t in tokens], dtype=bool)


def mask_ids(vocab) -> MaskIds:
    """The MaskIds of a vocabulary: its [MASK], the special tokens never masked, its ``##`` pieces."""
    specials = sorted({vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id, vocab.unk_id})
    return MaskIds(vocab.mask_id, tuple(specials), len(vocab), continuation_table(vocab.tokens))


def word_starts_from_vocab(src: np.ndarray, ids: MaskIds) -> np.ndarray:
    """Word starts from WordPiece's ``##`` marks: every token that does not continue a word."""
    if ids.continuation is None:
        return np.ones(src.shape, dtype=bool)
    return ~ids.continuation[src]


def _choose_units(
    units_start: np.ndarray, candidates: np.ndarray, budget: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Pick random units (runs of candidates starting at ``units_start``) per row until ``budget`` tokens.

    (B, T) bool arrays -> (B, T) bool chosen. Vectorised over the whole batch: each unit gets a
    random key, units are ordered by (row, key), and a unit is taken while the row's running
    token count stays within its budget (the first unit of a row always).
    """
    b, t = candidates.shape
    flat_start = units_start.reshape(-1)
    flat_cand = candidates.reshape(-1)
    unit = np.cumsum(flat_start) - 1  # (B*T,) unit id of every position (valid where candidate)
    n_units = int(flat_start.sum())
    if n_units == 0:
        return np.zeros_like(candidates)
    unit_len = np.bincount(unit[flat_cand], minlength=n_units)
    unit_row = (np.flatnonzero(flat_start) // t)
    order = np.lexsort((rng.random(n_units), unit_row))  # by row, random inside a row
    sorted_len = unit_len[order]
    sorted_row = unit_row[order]
    running = np.cumsum(sorted_len)
    row_first = np.searchsorted(sorted_row, np.arange(b))  # index of each row's first sorted unit
    before_row = np.concatenate([[0], running])[row_first]  # tokens of earlier rows
    within = running - before_row[sorted_row]
    first = np.zeros(n_units, dtype=bool)
    first[row_first[row_first < n_units]] = True
    take = (within <= budget[sorted_row]) | first
    chosen_units = np.zeros(n_units, dtype=bool)
    chosen_units[order[take]] = True
    out = np.zeros(b * t, dtype=bool)
    out[flat_cand] = chosen_units[unit[flat_cand]]
    return out.reshape(b, t)


def _choose_spans(
    word_start: np.ndarray, candidates: np.ndarray, budget: np.ndarray, cfg: MaskingConfig, rng: np.random.Generator
) -> np.ndarray:
    """SpanBERT: spans of whole words, length ~ Geometric(p) clipped, until the row's budget."""
    out = np.zeros_like(candidates)
    for r in range(candidates.shape[0]):  # one short loop per row: spans are sequential by nature
        starts = np.flatnonzero(word_start[r] & candidates[r])  # first token of every word
        if len(starts) == 0:
            continue
        cand_pos = np.flatnonzero(candidates[r])
        # word w covers candidate positions [starts[w], ends[w])
        ends = np.append(starts[1:], cand_pos[-1] + 1)
        masked = 0
        for _ in range(4 * len(starts)):  # bounded: each try masks >= 1 word unless all are taken
            if masked >= budget[r]:
                break
            length = min(int(rng.geometric(cfg.span_geo_prob)), cfg.span_max_length)
            w = int(rng.integers(len(starts)))
            w_end = min(w + length, len(starts))
            span = np.zeros(candidates.shape[1], dtype=bool)
            span[starts[w]:ends[w_end - 1]] = True
            span &= candidates[r] & ~out[r]
            if masked and masked + int(span.sum()) > budget[r] * 1.1 + 1:
                continue  # a span far past the budget: draw another
            out[r] |= span
            masked += int(span.sum())
    return out


def mask_batch(
    src: np.ndarray,
    candidates: np.ndarray,
    cfg: MaskingConfig,
    ids: MaskIds,
    rng: np.random.Generator,
    word_start: np.ndarray | None = None,
    random_pool: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """src (B, T) ids, candidates (B, T) bool (maskable real tokens) -> (corrupted src, tgt).

    ``tgt`` holds the original id where a position is predicted and ``IGNORE`` elsewhere.
    ``word_start`` (B, T) bool marks word starts for the whole-word and span strategies
    (default: from the vocabulary's ``##`` marks).
    """
    src = np.asarray(src)
    candidates = np.asarray(candidates, dtype=bool)
    n = candidates.sum(1)
    budget = np.where(n > 0, np.maximum(1, np.rint(n * cfg.prob)), 0).astype(np.int64)
    if cfg.strategy == "token":
        chosen = _choose_units(candidates, candidates, budget, rng)
    else:
        if word_start is None:
            word_start = word_starts_from_vocab(src, ids)
        # a word also starts after any non-candidate (a [SEP], padding): words never cross them
        prev_cand = np.zeros_like(candidates)
        prev_cand[:, 1:] = candidates[:, :-1]
        starts = candidates & (word_start | ~prev_cand)
        if cfg.strategy == "whole_word":
            chosen = _choose_units(starts, candidates, budget, rng)
        else:
            chosen = _choose_spans(starts, candidates, budget, cfg, rng)
    tgt = np.where(chosen, src, IGNORE).astype(np.int64)
    action = rng.random(src.shape)
    out = src.astype(np.int64, copy=True)
    to_mask = chosen & (action < cfg.replace_mask)
    to_random = chosen & (action >= cfg.replace_mask) & (action < cfg.replace_mask + cfg.replace_random)
    out[to_mask] = ids.mask_id
    pool = ids.random_pool() if random_pool is None else random_pool
    out[to_random] = pool[rng.integers(len(pool), size=int(to_random.sum()))]
    return out, tgt
