"""One file per checkpoint: weights plus the resolved config, written atomically, loaded strictly.

Loading never executes code from the file (``torch.load(weights_only=True)``).

    model, extra = load_model("out/model.pt")              # rebuild from the config inside, strict
    notes = load_backbone(model, "out/model.pt").notes     # warm-start another model's backbone
"""
from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from uer.config import Config, config_from_dict, to_dict
from uer.utils.atomic import atomic_open

FORMAT = "uer-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that does not exist, is not ours, or does not fit the model."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, config: Config, **extra: Any) -> None:
    """``extra``: plain data (optimizer state, step, RNG, vocab size, labels...) stored beside."""
    state = {"format": FORMAT, "config": to_dict(config), "model": model.state_dict(), "extra": extra}
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a uer checkpoint ({why_unreadable(path, exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a uer checkpoint (no '{FORMAT}' marker); "
            "convert HuggingFace weights with: python -m uer convert hf2uer HF_DIR OUT.pt"
        )
    if isinstance(state.get("config"), dict):
        state["config"].pop("source", None)  # checkpoints written before source became runtime-only hold it
    return state


def why_unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words.

    torch's own text advises ``weights_only=False``, i.e. running the file's code: never right for
    a file of unknown origin, so it is not passed on."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError):  # also a torch.save of Python objects (e.g. argparse args)
        return "not a file of tensors: it is another kind of file, or a pickle of Python objects, which is never loaded"
    with path.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if zipped or "PytorchStreamReader" in str(exc):
        return "a damaged or truncated PyTorch file"
    return "not a PyTorch file"


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    return config_from_dict(state["config"], f"{path} (config)")


def load_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], where: str, config_source: str) -> None:
    """Strict load whose error names every missing, unexpected and mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{where} does not fit the model built from {config_source}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): " + "; ".join(shapes[:20]))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_model(path: str | Path, require: Sequence[str] = (), written_by: str = "", **sizes: Any):
    """Rebuild the model a checkpoint came from and load it strictly -> ``(model, extra)``.

    Sizes (``vocab_size``, ``labels_num``, ``vocab_tokens``) default to those saved in ``extra``
    (``labels_num`` also to the length of a saved ``labels`` or ``id2label`` list). ``require``: keys ``extra``
    must hold, e.g. ``("labels", "seq_length")`` for a FastBERT classifier; a checkpoint that lacks
    one is refused as "not written by <written_by>".

        model, extra = load_model("out/fastbert/model.pt", require=("labels",), written_by="run_fastbert.py")
    """
    from uer.model_builder import build_model

    state = read_checkpoint(path)
    extra = state["extra"]
    missing = [key for key in require if key not in extra]
    if missing and "trainer" in extra:  # a Trainer's resume file holds nothing of the run's own keys
        raise CheckpointError(resume_state_message(Path(path), extra["trainer"]))
    if missing:
        raise CheckpointError(f"{path} was not written by {written_by or 'the expected command'} (no {missing[0]!r} in it)")
    config = checkpoint_config(state, path)
    saved = {k: extra[k] for k in ("vocab_size", "labels_num", "vocab_tokens") if k in extra}
    labels = next((extra[k] for k in ("labels", "id2label") if isinstance(extra.get(k), list)), None)
    if "labels_num" not in saved and labels is not None:  # run_fastbert.py's labels, run_ner.py's id2label
        saved["labels_num"] = len(labels)
    model = build_model(config, **{**saved, **sizes})
    load_state(model, state["model"], str(path), config.source)
    return model, extra


def resume_state_message(path: Path, trainer: Any) -> str:
    """What to say of a file that holds a training state to resume from where a model was expected
    (``model.stage1.pt`` of run_fastbert.py / run_ner.py, ``model.pt.resume`` of pretrain.py)."""
    signature = trainer.get("signature") if isinstance(trainer, dict) else None
    stage = signature.get("stage") if isinstance(signature, dict) else None
    what = f"the resume state of a training stage ({stage})" if isinstance(stage, str) else "a training resume state"
    stem = re.fullmatch(r"(.+?)(\.stage\d+\.pt|\.pt\.resume)", path.name)  # the file names the commands write
    model = f"{stem[1]}.pt" if stem else "the model"
    return f"{path} holds {what}, not a trained model: load {model}, which the run writes when it ends"


TARGET_PREFIX = "target.components."


def _head(key: str) -> str | None:
    """``target.components.mlm.head.bias`` -> ``mlm``; ``None`` for backbone keys."""
    return key.split(".")[2] if key.startswith(TARGET_PREFIX) else None


@dataclass(frozen=True)
class BackboneLoad:
    """What ``load_backbone`` did, for the caller to report."""

    fresh: list[str] = field(default_factory=list)  # the model's tensors left at their initialisation
    ignored: list[str] = field(default_factory=list)  # the checkpoint's tensors that were not used
    notes: list[str] = field(default_factory=list)  # one line per head loaded fresh or left out


def load_backbone(model: torch.nn.Module, path: str | Path, config_source: str = "the config",
                  heads: bool = True) -> BackboneLoad:
    """Warm-start ``model`` from a uer checkpoint: strict about the backbone, explicit about heads.

    Every backbone tensor (embedding, subencoder, encoder: all but ``target.``) of ``model`` must be
    in the checkpoint with its shape, and the checkpoint may hold no backbone tensor the model
    lacks. Target heads: with ``heads=True`` (continued pre-training) a head the checkpoint has is
    loaded whole and strictly, one it lacks (e.g. a new ``sop`` on an ``mlm`` model) stays freshly
    initialised; with ``heads=False`` (fine-tuning, e.g. FastBERT) every head of the model stays
    fresh. The checkpoint's heads that are not loaded are ignored and named in ``notes``.
    """
    path = Path(path)
    state = read_checkpoint(path)["model"]
    own = model.state_dict()
    if not any(_head(k) is None for k in state):
        raise CheckpointError(f"{path} holds no embedding./encoder. weights")
    ours = {_head(k) for k in own} - {None}
    theirs = {_head(k) for k in state} - {None}
    loaded = ours & theirs if heads else set()
    keep = {k: v for k, v in state.items() if _head(k) is None or _head(k) in loaded}
    fresh = {k: v for k, v in own.items() if _head(k) is not None and _head(k) not in loaded}
    load_state(model, {**keep, **fresh}, str(path), config_source)  # strict: names every misfit
    notes = [f"target head {name!r} is not in {path}: initialised at random" for name in sorted(ours - theirs)]
    if heads:
        notes += [f"target head {name!r} of {path} is not used by this config" for name in sorted(theirs - ours)]
    return BackboneLoad(
        fresh=sorted(fresh),
        ignored=sorted(k for k in state if k not in keep),
        notes=notes,
    )
