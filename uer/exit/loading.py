"""One loader for the trained models ``run_fastbert.py`` and ``run_ner.py`` write.

    trained = load_trained("out/model.pt", "run_ner.py")          # or "run_fastbert.py"
    trained.model, trained.config, trained.extra, trained.vocab_path, trained.vocab

Everything about the file is checked here, once, for every client (``FastBertClassifier.load``,
``NerTagger.load``, ``python -m uer export``): the argument types, the device, which command wrote
the checkpoint (a stage's resume file is named as one), the model strictly rebuilt from the config
inside (:func:`uer.checkpoint.load_model`), and the vocabulary: the checkpoint names a file beside
it (a bare file name; a path that leads elsewhere is refused) whose size must match the model's.
A bad file or value is a :class:`~uer.checkpoint.CheckpointError` or a ``ValueError`` naming it;
a wrong kind of argument a ``TypeError``.

``extra`` is what the run stored: besides the keys below, ``exit_policy`` (a name or a
``{"name": ...}`` spec), ``chosen_speed`` and, for a tagger, ``window`` -- the settings the
predictors use when the caller gives none (:func:`exit_settings`) -- and, for a classifier,
``exit_plan`` (:class:`uer.exit.pays.ExitPlan`: the speeds from which on early exit pays).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import torch
from torch import nn

from uer.checkpoint import CheckpointError, load_model
from uer.config import Config
from uer.exit.checks import check_path, check_policy, check_speed, policy_spec
from uer.exit.pays import ExitPlan
from uer.exit.policies import ExitPolicy
from uer.tokenizers import Vocab
from uer.utils.device import check_device

Command = Literal["run_fastbert.py", "run_ner.py"]

# what each command stores in every model it writes
REQUIRED: dict[str, tuple[str, ...]] = {
    "run_fastbert.py": ("labels", "vocab_size", "seq_length", "vocab_file"),
    "run_ner.py": ("id2label", "vocab_size", "seq_length", "vocab_file"),
}

DEFAULT_POLICY = "entropy"  # what a model trained before the policy was recorded was trained with


@dataclass(frozen=True)
class TrainedModel:
    model: nn.Module  # on the device asked for, in eval mode
    config: Config  # the resolved config stored in the checkpoint
    extra: dict[str, Any]  # what the run stored beside the weights
    vocab_path: Path  # the vocabulary that was read (beside the model unless given)
    vocab: Vocab  # its tokens, as many as the model's embedding has rows
    seq_length: int  # the run's, cut to what the embedding holds (runs once saved a longer one unchecked)


def load_trained(path: str | os.PathLike, written_by: Command, vocab_path: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> TrainedModel:
    """The model ``written_by`` wrote at ``path``, rebuilt strictly, with its vocabulary.

    ``vocab_path``: another copy of the vocabulary (default: the file the checkpoint names, beside it)."""
    path = check_path(path, "path")
    if vocab_path is not None:
        vocab_path = check_path(vocab_path, "vocab_path")
    if written_by not in REQUIRED:
        raise ValueError(f"written_by {written_by!r}: expected one of {', '.join(REQUIRED)}")
    device = check_device(device)  # before the (possibly long) read: a machine without CUDA fails at once
    model, extra = load_model(path, require=REQUIRED[written_by], written_by=written_by)
    vocab_file = extra["vocab_file"]
    if not is_bare_file_name(vocab_file):
        raise CheckpointError(f"{path}: its vocab_file {vocab_file!r} is not a file name beside the model; "
                              f"{written_by} writes one (pass vocab_path= to use another vocabulary)")
    if vocab_path is None:
        vocab_path = path.parent / vocab_file
        if not vocab_path.is_file():
            raise CheckpointError(f"{path}: its vocabulary {vocab_path} does not exist ({written_by} writes it beside "
                                  "the model: copy it there, or pass vocab_path=)")
    elif not vocab_path.is_file():
        raise CheckpointError(f"vocab_path {vocab_path} {'is a directory' if vocab_path.is_dir() else 'does not exist'}")
    try:
        vocab = Vocab.load(vocab_path)
    except (ValueError, OSError) as exc:  # an empty line, a token twice, unreadable: the message names file:line
        raise CheckpointError(f"vocabulary of {path}: {exc}") from None
    if len(vocab) != extra["vocab_size"]:
        raise CheckpointError(f"vocabulary {vocab_path} has {len(vocab)} tokens, the model {extra['vocab_size']}")
    for key, check in (("exit_policy", check_policy), ("chosen_speed", check_speed)):
        if extra.get(key) is not None:
            try:
                check(extra[key])
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: its stored {key} is not usable ({exc})") from None
    if extra.get("exit_plan") is not None:
        try:
            ExitPlan.from_dict(extra["exit_plan"])
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: its stored exit_plan is not usable ({exc})") from None
    limit = model.embedding.max_seq_length
    seq_length = extra["seq_length"] if limit is None else min(extra["seq_length"], limit)
    model.to(device).eval()
    return TrainedModel(model, model.config, extra, vocab_path, vocab, seq_length)


def is_bare_file_name(name: object) -> bool:
    """A file name with no directory part in it (POSIX or Windows spelling), not ``.`` or ``..``."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and PurePosixPath(name).name == name and PureWindowsPath(name).name == name)


def stored_policy(extra: dict[str, Any]) -> Any:
    """The exit policy the run trained and chose its speed with (a name or a ``{"name": ...}`` spec)."""
    return extra.get("exit_policy") or DEFAULT_POLICY


def exit_settings(extra: dict[str, Any], speed: object = None, policy: object = None) -> tuple[float, ExitPolicy]:
    """``(speed, policy)`` for one predict call: what the caller gave, else what the run stored.

    ``policy=None``: the stored policy (``entropy`` for models that stored none). ``speed=None``:
    the speed the run chose on its test set (``extra["chosen_speed"]``) when it chose one, else 0,
    the full model. A chosen speed holds only for the policy it was chosen under, so asking for
    another policy without a speed is an error rather than a silently meaningless threshold."""
    trained = stored_policy(extra)
    rule = check_policy(trained if policy is None else policy)
    if speed is not None:
        return check_speed(speed), rule
    chosen = extra.get("chosen_speed")
    if chosen is None:
        return 0.0, rule
    if policy is not None and policy_spec(rule) != policy_spec(trained):
        raise ValueError(f"speed=None means the speed chosen in training ({chosen:g}), which was chosen under policy "
                         f"{_shown(trained)}, not {_shown(rule)}: give a speed for this policy")
    return check_speed(chosen), rule


def _shown(policy: Any) -> str:
    """``patience`` / ``topk_entropy(k=3)``."""
    spec = policy_spec(policy)
    fields = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({fields})" if fields else spec["name"]
