"""A linear-chain CRF on a tagger's emissions (UER-py's ``--crf_target``; ``run_ner.py --crf``).

    crf = LinearChainCRF(labels_num)
    nll = crf.nll(emissions, tags, mask)          # (R,) -log p(tags | emissions), the forward algorithm
    best = crf.decode(emissions, mask)            # Viterbi: the best tag id sequence per row

``emissions`` (R, L, C) are per-token scores (logits or log-probabilities: a constant added to
all of a token's scores changes neither), ``mask`` (R, L) bool marks each row's tokens, which
come first (left-aligned; :func:`compact` makes them so). The score of a path ``y`` is
``start[y_1] + sum_t emit[t, y_t] + sum_t trans[y_t, y_t+1] + end[y_L]``; ``p(y) = exp(score) / Z``.

Why it sits beside token exit rather than inside it: a CRF ties all of a row's tags together,
so no token could leave on its own. It is trained on the full model's (the teacher's) emissions
in stage 1, beside the teacher's own cross-entropy; the exit branches still distil from the
teacher's softmax, and the CRF's decoding is reported for the full model only.
"""
from __future__ import annotations

import torch
from torch import nn


def compact(values: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, ...) values and (B, T) bool -> the kept values of each row moved to its front, in
    order, (B, L, ...) with L the most any row keeps, and the (B, L) mask of the real ones."""
    counts = keep.sum(1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]  # kept positions first
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    mask = torch.arange(width, device=keep.device)[None, :] < counts[:, None]
    return values.gather(1, index), mask


class LinearChainCRF(nn.Module):
    """Transition scores ``trans[i, j]`` (tag i then tag j), start and end scores; all zero at first."""

    def __init__(self, labels_num: int) -> None:
        super().__init__()
        if labels_num < 2:
            raise ValueError(f"a CRF needs labels_num >= 2, got {labels_num}")
        self.labels_num = labels_num
        self.transitions = nn.Parameter(torch.zeros(labels_num, labels_num))
        self.start = nn.Parameter(torch.zeros(labels_num))
        self.end = nn.Parameter(torch.zeros(labels_num))

    def reset_parameters(self) -> None:
        for p in (self.transitions, self.start, self.end):
            nn.init.zeros_(p)

    @staticmethod
    def _check(emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3 or mask.shape != emissions.shape[:2]:
            raise ValueError(f"emissions (R, L, C) and mask (R, L) expected, got {tuple(emissions.shape)} and {tuple(mask.shape)}")
        if mask.shape[1] and not bool(mask[:, 0].all()):
            raise ValueError("every row needs at least one token, left-aligned in mask")

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(R,) the score of the path ``tags`` (R, L) (positions outside ``mask`` are ignored)."""
        self._check(emissions, mask)
        e = emissions.float()
        m = mask.float()
        tags = tags.masked_fill(~mask, 0)
        emit = e.gather(2, tags.unsqueeze(2)).squeeze(2)  # (R, L)
        total = self.start[tags[:, 0]] + (emit * m).sum(1)
        if tags.shape[1] > 1:
            total = total + (self.transitions[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        return total + self.end[last]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(R,) ``log Z``: the forward algorithm, over the tags in parallel, one position at a time."""
        self._check(emissions, mask)
        e = emissions.float()
        alpha = self.start + e[:, 0]  # (R, C): log-sum of every path ending in each tag
        for t in range(1, e.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions.unsqueeze(0), dim=1) + e[:, t]
            alpha = torch.where(mask[:, t:t + 1], step, alpha)  # a finished row keeps its alpha
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(R,) negative log-likelihood of the gold ``tags``."""
        return self.log_partition(emissions, mask) - self.score(emissions, tags, mask)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the highest-scoring tag sequence of each row (as long as its mask)."""
        self._check(emissions, mask)
        e = emissions.float()
        rows, length, _ = e.shape
        score = self.start + e[:, 0]  # (R, C)
        back = []
        for t in range(1, length):
            cand = score.unsqueeze(2) + self.transitions.unsqueeze(0)  # (R, from, to)
            best, arg = cand.max(1)
            back.append(arg)
            score = torch.where(mask[:, t:t + 1], best + e[:, t], score)
        score = score + self.end
        lengths = mask.sum(1).tolist()
        last = score.argmax(1).tolist()
        pointers = torch.stack(back, 1).tolist() if back else [[] for _ in range(rows)]  # (R, L-1, C)
        out = []
        for r in range(rows):  # the backtrace, once per row at the end (not in a hot loop)
            tag = last[r]
            path = [tag]
            for t in range(lengths[r] - 1, 0, -1):
                tag = pointers[r][t - 1][tag]
                path.append(tag)
            out.append(path[::-1])
        return out
