"""Pre-training defaults that work for a newcomer: learning rate, warmup and schedule from the
model's size and the step budget; and fine-tuning's rates from the size
(:func:`finetune_learning_rate`, :func:`apply_finetune_recipe`; ``run_fastbert.py``, ``run_ner.py``).

BERT's ``1e-4`` was chosen for BERT-base over a million steps; on BERT-tiny or BERT-mini for a few
thousand steps it leaves MLM on the *frequent-character plateau* (the model predicts the most
common characters everywhere, ~13% accuracy on Chinese news, and stops there). Small models want a
much larger peak rate, and a short budget wants a short warmup. The rule, anchored on BERT-tiny
by ``bench/recipe_probes.py`` (3e-3 reached the plateau in 300 steps, 1e-3 had not at 250; the
script prints the curves, no copy of them is kept in bench/results) and scaled by size:

    peak lr = 3e-3 * (128 / hidden_size) * sqrt(2 / layers_num), clipped to [1e-5, 5e-3],
              halved for post-LN encoders at hidden_size >= 512 (they diverge first),
              rounded to two significant digits
    warmup  = 5% of total_steps, at most 10,000 steps
    decay   = linear to 0
    continued pre-training (a trained model, ``--pretrained_model_path``): peak at most 1e-4

| model | hidden, layers | peak lr |
| --- | --- | --- |
| BERT-tiny | 128, 2 | 3.0e-3 |
| BERT-mini | 256, 4 | 1.1e-3 |
| BERT-small | 512, 4 | 2.7e-4 (post-LN), 5.3e-4 (pre-LN) |
| BERT-medium | 512, 8 | 1.9e-4 / 3.8e-4 |
| BERT-base | 768, 12 | 1.0e-4 / 2.0e-4 |
| BERT-large | 1024, 24 | 5.4e-5 / 1.1e-4 |

An explicit value always wins (a ``--learning_rate`` / ``--warmup`` / ``--scheduler`` flag, a
``--set train.x=...`` override or a ``train:`` key in the YAML): only what nobody chose comes from
here (``pretrain.py`` wires it: ``apply_recipe``, and on ``--resume`` the values the run recorded
in its ``<stem>.config.yaml`` instead of the rule). For budgets under ``MLM_ONLY_BELOW`` steps
the recommended path is the ``mlm`` target alone (``--data_processor mlm``): NSP takes half the
signal and a small model learns little from it.

    >>> s = default_schedule(hidden_size=128, layers_num=2, total_steps=3000)
    >>> s.learning_rate, s.warmup, s.scheduler, s.warmup_steps(3000)
    (0.003, 0.05, 'linear', 150)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import AbstractSet, Any, Mapping

from uer.choices import SCHEDULERS

TINY_LR = 3e-3  # the faster of the peaks measured on BERT-tiny (L2/H128), bench/recipe_probes.py
TINY_HIDDEN, TINY_LAYERS = 128, 2
MIN_LR, MAX_LR = 1e-5, 5e-3
POST_LN_WIDE = 512  # post-LN encoders this wide get half the rate
WARMUP_FRACTION = 0.05
MAX_WARMUP_STEPS = 10_000
CONTINUED_LR = 1e-4  # peak when continuing a trained model: BERT's own rate (DAPT-style further pre-training)
MLM_ONLY_BELOW = 100_000  # steps; below this budget, pre-train with the mlm target alone
SCHEDULE_KEYS = ("learning_rate", "warmup", "scheduler")
# fine-tuning (run_fastbert.py, run_ner.py): BERT's and FastBERT's 5e-5 at BERT-base, scaled by size as the
# pre-training rule is; self-distillation at twice the rate, as FastBERT's 1e-4 against 5e-5
FINETUNE_BASE_LR, BASE_HIDDEN, BASE_LAYERS = 5e-5, 768, 12
FINETUNE_MAX_LR = 1e-3
DISTILL_RATIO = 2.0
FINETUNE_KEYS = {"learning_rate": "learning rate", "distill_learning_rate": "self-distillation"}  # -> the line's words
PRIOR_TOKENS = 50_000_000  # the token prior counts this many tokens at most (a large dataset is not read whole)


class RecipeError(ValueError):
    """A size, budget or explicit value no schedule can be made from; the message names it
    (``pretrain.py`` prints it as one line)."""


@dataclass(frozen=True)
class Schedule:
    learning_rate: float  # peak, reached at the end of warmup
    warmup: float  # fraction of total_steps (TrainConfig's unit)
    scheduler: str  # one of uer.choices.SCHEDULERS
    explanation: str  # one line for the user: what was chosen and why

    def warmup_steps(self, total_steps: int) -> int:
        return int(self.warmup * total_steps)  # as pretrain.py computes it


def _significant(x: float, digits: int = 2) -> float:
    return float(f"{x:.{digits - 1}e}")


def peak_learning_rate(hidden_size: int, layers_num: int, layernorm_positioning: str = "post") -> float:
    """The size rule alone; non-increasing in hidden_size and in layers_num."""
    _check_size(hidden_size, layers_num)
    lr = TINY_LR * (TINY_HIDDEN / hidden_size) * math.sqrt(TINY_LAYERS / layers_num)
    if layernorm_positioning == "post" and hidden_size >= POST_LN_WIDE:
        lr /= 2
    return _significant(min(MAX_LR, max(MIN_LR, lr)))


def finetune_learning_rate(hidden_size: int, layers_num: int) -> float:
    """Fine-tuning's rate for a model of this size: ``5e-5 * (768 / hidden) * sqrt(12 / layers)``,
    clipped to [1e-5, 1e-3], two significant digits. BERT-base gets BERT's 5e-5; BERT-tiny 7.3e-4,
    BERT-mini 2.6e-4 (README, "Few labels": 5e-5 starves a small model)."""
    _check_size(hidden_size, layers_num)
    lr = FINETUNE_BASE_LR * (BASE_HIDDEN / hidden_size) * math.sqrt(BASE_LAYERS / layers_num)
    return _significant(min(FINETUNE_MAX_LR, max(MIN_LR, lr)))


def apply_finetune_recipe(config, section: str):
    """``config`` with the ``section``'s (``fastbert`` / ``ner``) rates that nobody set (None) filled in
    by :func:`finetune_learning_rate` (self-distillation: ``DISTILL_RATIO`` times it). Returns
    ``(config, explanation)``; the explanation is None when both were set."""
    task = getattr(config, section)
    missing = [k for k in FINETUNE_KEYS if getattr(task, k) is None]
    if not missing:
        return config, None
    enc = config.encoder.cfg
    lr = finetune_learning_rate(enc.hidden_size, enc.layers_num)
    chosen = {"learning_rate": lr, "distill_learning_rate": _significant(DISTILL_RATIO * lr)}
    task = dataclasses.replace(task, **{k: chosen[k] for k in missing})
    parts = [f"{name} {getattr(task, k):.1e}" + ("" if k in missing else " (given)") for k, name in FINETUNE_KEYS.items()]
    explanation = (f"fine-tuning: {', '.join(parts)} for hidden {enc.hidden_size} x {enc.layers_num} layers "
                   "[uer.recipe; --learning_rate / --distill_learning_rate override]")
    return dataclasses.replace(config, **{section: task}), explanation


def default_warmup(total_steps: int) -> float:
    """Fraction of total_steps: 5%, at most MAX_WARMUP_STEPS steps."""
    _check_steps(total_steps)
    return min(WARMUP_FRACTION, MAX_WARMUP_STEPS / total_steps)


def default_schedule(
    hidden_size: int,
    layers_num: int,
    total_steps: int,
    *,
    layernorm_positioning: str = "post",
    learning_rate: float | None = None,
    warmup: float | None = None,
    scheduler: str | None = None,
    recorded: AbstractSet[str] = frozenset(),
    continued: bool = False,
) -> Schedule:
    """Peak learning rate, warmup and decay for a model of this size and this many steps.

    ``learning_rate`` / ``warmup`` / ``scheduler`` given here are kept as they are (an explicit
    choice always wins); only the missing ones are chosen. ``recorded`` names the given values
    that come from the record of a run being resumed rather than from the user (the explanation
    says "recorded" instead of "given"). ``continued``: the weights come from a trained model
    (``--pretrained_model_path``): the peak is ``CONTINUED_LR`` at most, since the size rule's rates
    are for random weights and would first undo what the model knows. Raises ``RecipeError`` (one line naming the value) for
    sizes, budgets or explicit values that cannot make a schedule.
    """
    _check_size(hidden_size, layers_num)
    _check_steps(total_steps)
    if layernorm_positioning not in ("post", "pre"):
        raise RecipeError(f"layernorm_positioning: expected post or pre, got {layernorm_positioning!r}")
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise RecipeError(f"learning_rate: expected a positive finite number, got {learning_rate}")
    if warmup is not None and not (math.isfinite(warmup) and 0.0 <= warmup <= 1.0):  # 1: warm up the whole run
        raise RecipeError(f"warmup: expected a fraction of total_steps in [0, 1], got {warmup}")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise RecipeError(f"scheduler: unknown {scheduler!r}; valid: {', '.join(SCHEDULERS)}")

    def source(key: str) -> str:
        return "recorded" if key in recorded else "given"

    parts = []
    if learning_rate is None:
        learning_rate = peak_learning_rate(hidden_size, layers_num, layernorm_positioning)
        wide = " (halved: post-LN)" if layernorm_positioning == "post" and hidden_size >= POST_LN_WIDE else ""
        if continued and learning_rate > CONTINUED_LR:
            parts.append(f"learning rate {CONTINUED_LR:.1e} for continued pre-training of a trained model "
                         f"(from random weights: {learning_rate:.1e})")
            learning_rate = CONTINUED_LR
        else:
            parts.append(f"learning rate {learning_rate:.1e} for hidden {hidden_size} x {layers_num} layers{wide}")
    else:
        parts.append(f"learning rate {learning_rate:.1e} ({source('learning_rate')})")
    if warmup is None:
        warmup = default_warmup(total_steps)
        parts.append(f"warmup {int(warmup * total_steps)} of {total_steps} steps")
    else:
        parts.append(f"warmup {int(warmup * total_steps)} of {total_steps} steps ({source('warmup')})")
    if scheduler is None:
        scheduler = "linear"
        parts.append("then linear decay to 0")
    else:
        parts.append(f"then {scheduler} ({source('scheduler')})")
    explanation = "schedule: " + ", ".join(parts) + " [uer.recipe; --learning_rate / --warmup / --scheduler override]"
    return Schedule(learning_rate, warmup, scheduler, explanation)


def target_advice(targets: list[str], total_steps: int) -> str | None:
    """A one-line recommendation when a short budget spends half its signal on NSP / SOP."""
    _check_steps(total_steps)
    pair = [t for t in targets if t in ("nsp", "sop")]
    if "mlm" not in targets or not pair or total_steps >= MLM_ONLY_BELOW:
        return None
    return (f"note: {total_steps} steps is a small budget and {'+'.join(pair)} takes half the training signal; "
            f"the recommended path is mlm alone: preprocess.py --data_processor mlm and "
            f"pretrain.py --set 'target.components=[mlm]'")


def position_advice(config, total_steps: int, from_scratch: bool, scaffold: bool = False) -> str | None:
    """A one-line recommendation when a transformer with learned positions only starts MLM from scratch
    on a small budget without ``uer.scaffold``'s position scaffold (``scaffold``): it sits on the
    frequent-token plateau for thousands of steps (README, pre-training: BERT-mini stayed at 0.14 MLM
    accuracy for 6,497 steps, 45 min); the scaffold or ``encoder.position_bias: alibi`` leaves it."""
    _check_steps(total_steps)
    targets = [s.name for s in config.target.components]
    if (scaffold or not from_scratch or "mlm" not in targets or config.encoder.name != "transformer"
            or total_steps >= MLM_ONLY_BELOW or config.encoder.cfg.position_bias != "none"
            or config.encoder.cfg.mask != "fully_visible"):
        return None
    return (f"note: from scratch with learned positions only and no position scaffold, a small BERT sits on the "
            f"frequent-token plateau for thousands of steps; for a {total_steps}-step budget leave --position_scaffold "
            f"on where it applies (uer.scaffold), or add ALiBi attention biases: --set encoder.position_bias=alibi, "
            f"or models/bert/tiny_alibi.yaml / mini_alibi.yaml (README: pre-training)")


def apply_recipe(config, explicit: AbstractSet[str], recorded: Mapping[str, Any] | None = None,
                 continued: bool = False):
    """``config`` with the schedule values not in ``explicit`` chosen by :func:`default_schedule`.

    ``explicit`` holds the ``train`` keys somebody set (YAML ``train:`` section, ``--set train.x``,
    or a flag). ``recorded``: the schedule values of the run being resumed (its recorded config);
    they take the place of the rule for every key not in ``explicit``, so a resumed run keeps the
    schedule it started with even if the rule has changed since. ``continued``: the run starts from
    a trained model (see :func:`default_schedule`). Returns ``(config, explanation)``.
    """
    train = config.train
    enc = config.encoder.cfg
    # the rule was measured on transformers; other encoders (RNN, CNN) have no post-LN to halve for
    positioning = enc.layernorm_positioning if config.encoder.name == "transformer" else "pre"
    given = {k: getattr(train, k) for k in SCHEDULE_KEYS if k in explicit}
    kept = {k: v for k, v in (recorded or {}).items() if k in SCHEDULE_KEYS and k not in explicit}
    schedule = default_schedule(enc.hidden_size, enc.layers_num, train.total_steps,
                                layernorm_positioning=positioning, recorded=frozenset(kept), continued=continued,
                                **given, **kept)
    train = dataclasses.replace(train, learning_rate=schedule.learning_rate, warmup=schedule.warmup,
                                scheduler=schedule.scheduler)
    return dataclasses.replace(config, train=train), schedule.explanation


def token_log_prior(token_ids, vocab_size: int, special_ids=(), limit: int = PRIOR_TOKENS) -> "torch.Tensor":
    """(V,) log of each token's smoothed frequency in ``token_ids`` (a dataset's token array).

    Special tokens (never a masked position's label) get the smallest value; only the first
    ``limit`` tokens are counted (a large memory-mapped dataset is not read whole). Used as the MLM
    decoder's initial bias so the model starts at the unigram solution instead of spending its
    first hundreds of steps, and its hidden states, on learning which characters are frequent.
    """
    import numpy as np
    import torch

    counts = np.bincount(np.asarray(token_ids[:limit], dtype=np.int64), minlength=vocab_size)[:vocab_size].astype(np.float64)
    counts[list(special_ids)] = 0.0
    prior = torch.from_numpy(np.log((counts + 0.5) / (counts.sum() + 0.5 * vocab_size))).float()
    return prior


def dataset_token_ids(files, limit: int = PRIOR_TOKENS):
    """The first ``limit`` token ids of a preprocessed dataset (``uer.data.dataset.DatasetFiles``)
    as the corpus has them: under static masking ``tokens.bin`` holds the masked input, so a masked
    position takes its original id back from ``mlm_tgt.bin``."""
    import numpy as np

    from uer.data.dataset import not_masked

    tokens = files.tokens[:limit]
    if files.mlm_tgt is None:
        return tokens
    original = files.mlm_tgt[:limit]
    return np.where(original == not_masked(original.dtype), tokens, original)


def init_mlm_bias(model, log_prior) -> bool:
    """Set the MLM decoder bias of ``model`` to ``log_prior`` minus its mean; False if it has no MLM head."""
    import torch

    heads = model.target.components
    if "mlm" not in heads:
        return False
    bias = heads["mlm"].head.decoder.bias
    if bias is None or bias.shape != log_prior.shape:
        raise RecipeError(f"MLM decoder bias has shape {None if bias is None else tuple(bias.shape)}, "
                         f"the token prior {tuple(log_prior.shape)}")
    with torch.no_grad():
        bias.copy_(log_prior - log_prior.mean())
    return True


def _check_size(hidden_size: int, layers_num: int) -> None:
    for name, value in (("hidden_size", hidden_size), ("layers_num", layers_num)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RecipeError(f"{name}: expected a positive integer, got {value!r}")


def _check_steps(total_steps: int) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise RecipeError(f"total_steps: expected a positive integer, got {total_steps!r}")
