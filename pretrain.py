"""Pre-train a model from a models/ config on a dataset made by preprocess.py.

    # one process (CPU or one GPU)
    python pretrain.py --dataset_path data/datasets/pd_bert --config_path models/bert/tiny.yaml \\
        --vocab_path models/google_zh_vocab.txt --output_model_path out/bert_tiny/model.pt \\
        --total_steps 10000 --batch_size 32
    # several processes / GPUs / nodes: the same flags under torchrun (DDP; gloo on CPU, NCCL on GPUs)
    torchrun --nproc_per_node 4 pretrain.py ...

``--batch_size`` is the global batch of one micro-step, split evenly over the processes; an
optimizer step takes ``--accumulation_steps`` of them. Every ``--save_checkpoint_steps`` the full
training state goes atomically to ``<output_model_path>.resume``; ``--resume`` continues from it
exactly, and refuses a change to what defines the run (config, schedule, weight decay, precision,
accumulation, dataset, held-out set: ``run_signature``). Beside ``out/a.pt`` go ``out/a.config.yaml``
(the resolved config) and ``out/a.metrics.jsonl`` (one JSON line per report step and per held-out
evaluation), so several models can share a folder. ``--dev_dataset_path`` / ``--dev_fraction``: a
held-out set evaluated every ``--eval_steps``, the lowest held-out loss kept as ``out/a.best.pt``;
``--tensorboard_dir``: the curves for TensorBoard. A second run into the same
``--output_model_path`` while one is running is refused (``out/a.pt.lock``).

Learning rate, warmup and scheduler that nobody chose (no flag, no ``--set train.x``, no ``train:``
key in the YAML) come from ``uer.recipe`` (model size and ``--total_steps``); the line starting
``schedule:`` says what was chosen. ``out/a.config.yaml`` records the values, and ``--resume``
takes them from there. A fresh MLM head starts with its output bias at the log unigram prior of
the dataset's tokens (``--mlm_bias_init zero``: at 0, as BERT does). From scratch, a transformer
with learned positions and full attention (the BERT configs) starts on ``uer.scaffold``'s position
scaffold and holds it while pre-training, so that it leaves the MLM plateau
(``--position_scaffold off``: BERT's random init); the result is a plain BERT checkpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from uer.checkpoint import TARGET_PREFIX, CheckpointError, load_backbone, save_checkpoint
from uer.choices import PRECISIONS, SCAFFOLD_CHOICES, SCHEDULERS
from uer.config import (
    Config, ConfigError, TrainConfig, apply_overrides, config_from_dict, from_dict, keep_lines, read_yaml, to_dict, where,
)
from uer.data.batches import PretrainDataset
from uer.data.corpus import CorpusFormatError
from uer.data.dataset import read_meta
from uer.data.loader import EpochLoader
from uer.data.processors import processor_for_targets
from uer.model_builder import build_model
from uer.recipe import (SCHEDULE_KEYS, apply_recipe, dataset_token_ids, init_mlm_bias, position_advice, target_advice,
                        token_log_prior)
from uer.scaffold import DIMS as SCAFFOLD_DIMS, apply_scaffold, scaffold_refusal
from uer.trainer import Trainer, TrainerOptions, evaluate, make_optimizer, make_scheduler
from uer.utils.atomic import atomic_open
from uer.utils.distributed import launched_as_main, setup_distributed
from uer.utils.cli import (
    OutputLock, UsageError, fraction, input_dir, input_file, non_negative_float, non_negative_int, output_dir,
    output_file, positive_float, positive_int, run_main, set_deterministic,
)
from uer.utils.device import resolve_device

TRAIN_FLAGS = ("batch_size", "total_steps", "learning_rate", "warmup", "scheduler", "accumulation_steps",
               "report_steps", "save_checkpoint_steps", "precision", "seed", "weight_decay", "clip_grad_norm")
MLM_BIAS_INITS = ("prior", "zero")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretrain.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_path", required=True, help="a folder written by preprocess.py")
    p.add_argument("--config_path", required=True)
    p.add_argument("--output_model_path", required=True)
    p.add_argument("--vocab_path", help="default: the vocabulary preprocess.py used (recorded in the dataset)")
    p.add_argument("--spm_model_path")
    p.add_argument("--pretrained_model_path", help="a uer checkpoint to continue pre-training from")
    p.add_argument("--resume", action="store_true", help="continue from <output_model_path>.resume if it exists")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available); under torchrun each rank takes its LOCAL_RANK GPU")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set encoder.dropout=0.0")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--threads", type=positive_int, help="CPU threads of this process (default: torch's choice)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only: the same flags and --threads give the same bits")
    p.add_argument("--position_scaffold", choices=SCAFFOLD_CHOICES,
                   help="from scratch: start positions and query/key as a scaffold that prefers near tokens and hold it "
                        "while pre-training (uer.scaffold; default: on wherever it applies: a transformer with learned "
                        "positions and full attention); off: BERT's random init")
    p.add_argument("--mlm_bias_init", choices=MLM_BIAS_INITS, default="prior",
                   help="a fresh MLM head's output bias: the log unigram prior of the dataset's tokens (default), "
                        "or 0 (BERT's); a head loaded from --pretrained_model_path or a resumed run keeps its own")
    # training values: default from the config's train section (learning rate, warmup, scheduler: from uer.recipe)
    p.add_argument("--batch_size", type=positive_int)
    p.add_argument("--total_steps", type=positive_int)
    p.add_argument("--learning_rate", type=positive_float, help="peak (default: from model size, see uer.recipe)")
    p.add_argument("--warmup", type=fraction, help="fraction of total_steps, in [0, 1] (default: 5%%, at most 10,000 steps)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="decay after warmup (default: linear)")
    p.add_argument("--accumulation_steps", type=positive_int)
    p.add_argument("--report_steps", type=positive_int)
    p.add_argument("--save_checkpoint_steps", type=non_negative_int, help="0: only at the end")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--weight_decay", type=non_negative_float)
    p.add_argument("--clip_grad_norm", type=float, help="<= 0 disables clipping")
    p.add_argument("--new_learning_rate", type=positive_float,
                   help="with --resume: go on with this peak learning rate from the next step (optimizer state, "
                        "data position and the shape of the schedule stay); any other change makes another run")
    # held-out evaluation
    held = p.add_mutually_exclusive_group()
    held.add_argument("--dev_dataset_path", help="a held-out dataset written by preprocess.py (same vocabulary and processor)")
    held.add_argument("--dev_fraction", type=open_fraction,
                      help="hold out this share of --dataset_path's instances (seeded by --seed; never trained on)")
    p.add_argument("--eval_steps", type=positive_int,
                   help="evaluate the held-out set every N steps and at the end (default: at every checkpoint)")
    p.add_argument("--tensorboard_dir", help="write training and held-out curves here (needs the tensorboard package)")
    return p


def open_fraction(text: str) -> float:
    """A share strictly between 0 and 1 (a held-out set of none or of everything is no split)."""
    value = fraction(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def resolve_config(args) -> tuple[Config, frozenset[str]]:
    """The config from the YAML, ``--set`` overrides and flags (in that order), and the ``train`` keys
    somebody chose in any of them: the schedule values not among those come from ``uer.recipe``."""
    try:
        data = read_yaml(args.config_path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"--config_path {args.config_path}: not UTF-8 text (byte {exc.start}); expected a YAML config") from None
    if args.overrides:
        data = apply_overrides(data, args.overrides)
    flags = {f"train.{k}": getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    if flags:
        data = apply_overrides(data, flags)
    config = config_from_dict(data, args.config_path)
    check_train(config, args.config_path)
    return config, frozenset(data.get("train") or {})


def choose_schedule(config: Config, explicit: frozenset[str], recorded_path: Path | None,
                    from_scratch: bool = False, continued: bool = False,
                    scaffold: bool = False) -> tuple[Config, list[str]]:
    """``config`` with learning rate, warmup and scheduler nobody chose filled in, and what to tell the user.

    ``recorded_path``: the ``<stem>.config.yaml`` of a run being resumed. Its values take the place
    of the rule, so the resumed run continues the schedule it started with (the optimizer and
    scheduler states it restores were made with them) even if ``uer.recipe`` has changed since.
    ``continued``: the weights come from ``--pretrained_model_path`` (a gentler peak rate).
    """
    notes = []
    recorded = None
    if recorded_path is not None:
        recorded = _recorded_schedule(recorded_path)
        if recorded is None:
            notes.append(f"note: no {recorded_path} to take the resumed run's schedule from; "
                         "the values nobody set come from uer.recipe")
    config, explanation = apply_recipe(config, explicit, recorded, continued=continued)
    advice = [target_advice([s.name for s in config.target.components], config.train.total_steps),
              position_advice(config, config.train.total_steps, from_scratch, scaffold=scaffold)]
    return config, [explanation, *notes, *(a for a in advice if a)]


def _recorded_schedule(path: Path) -> dict | None:
    """The schedule values a run recorded in its config file (checked: file:line on a bad one)."""
    if not path.is_file():
        return None
    data = read_yaml(path)
    train = data.get("train") or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{where(data, 'train', 'config')}: expected a mapping, got {type(train).__name__}")
    picked = from_dict(TrainConfig, keep_lines({k: train[k] for k in SCHEDULE_KEYS if k in train}, train), "train")
    return {k: getattr(picked, k) for k in SCHEDULE_KEYS if k in train}


def check_train(config: Config, source: str) -> None:
    """What TrainConfig's ranges do not say (they already refuse batch_size 0, warmup 1.5 ... with
    file:line): a learning rate of 0 (NonNegative lets it through: nothing would train), and
    non-finite numbers (a YAML ``.nan`` compares false with every bound, so no range refuses it)."""
    t = config.train
    rules = [
        ("learning_rate", math.isfinite(t.learning_rate) and t.learning_rate > 0, "a number > 0"),
        ("warmup", math.isfinite(t.warmup), "a fraction of total_steps in [0, 1]"),
        ("weight_decay", math.isfinite(t.weight_decay), "a number >= 0"),
        ("clip_grad_norm", not math.isnan(t.clip_grad_norm), "a number (<= 0 disables clipping)"),
    ]
    for key, ok, expected in rules:
        if not ok:
            raise UsageError(f"train.{key} is {getattr(t, key)!r} ({source} or its flag --{key}): expected {expected}")


def side_files(output: Path) -> dict[str, Path]:
    """Everything a run writes for ``out/a.pt``: per model, so runs can share a folder."""
    return {
        "model": output,
        "resume": Path(f"{output}.resume"),
        "config": output.with_name(f"{output.stem}.config.yaml"),
        "metrics": output.with_name(f"{output.stem}.metrics.jsonl"),
        "best": output.with_name(f"{output.stem}.best.pt"),  # lowest held-out loss (with --dev_*)
    }


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (argparse printed why) or --help: a status, not an exit
        return int(exc.code or 0)
    try:
        # ValueError: the messages of the config, model and data checks name the culprit already
        # (ConfigError, CheckpointError, CorpusFormatError and torch's own value checks).
        errors = (ConfigError, CheckpointError, CorpusFormatError, FileNotFoundError, FloatingPointError, ValueError)
        return run_main("pretrain.py", lambda: _run(args), errors)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _check_paths(args) -> dict[str, Path]:
    """Every path checked before any work: a run never trains for an hour and then cannot save."""
    input_file(args.config_path, "--config_path")
    input_dir(args.dataset_path, "--dataset_path")
    for flag in ("vocab_path", "spm_model_path", "pretrained_model_path"):
        if getattr(args, flag):
            input_file(getattr(args, flag), f"--{flag}")
    if args.dev_dataset_path:
        input_dir(args.dev_dataset_path, "--dev_dataset_path")
        if Path(args.dev_dataset_path).resolve() == Path(args.dataset_path).resolve():
            raise UsageError(f"--dev_dataset_path {args.dev_dataset_path} is the training dataset: a held-out set must "
                             "not be trained on (preprocess another corpus, or pass --dev_fraction)")
    if args.eval_steps and not (args.dev_dataset_path or args.dev_fraction):
        raise UsageError("--eval_steps needs a held-out set: --dev_dataset_path or --dev_fraction")
    if args.tensorboard_dir:
        output_dir(args.tensorboard_dir, "--tensorboard_dir")
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:  # torch's writer imports the tensorboard package
            raise UsageError("--tensorboard_dir needs the tensorboard package: pip install tensorboard") from None
    output = output_file(args.output_model_path, "--output_model_path")
    files = side_files(output)
    for name, path in files.items():
        if name != "model":
            output_file(path, f"--output_model_path {output}: its {name} file")
    return files


def _read_meta(dataset: str) -> dict:
    try:
        return read_meta(dataset)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{Path(dataset) / 'meta.json'}:{exc.lineno}: not valid JSON ({exc.msg}); re-run preprocess.py") from None
    except UnicodeDecodeError:
        raise UsageError(f"{Path(dataset) / 'meta.json'}: not UTF-8 text; re-run preprocess.py") from None


def _run(args) -> int:
    files = _check_paths(args)
    config, explicit = resolve_config(args)
    train = config.train
    device_flag = resolve_device(args.device, train.precision)  # --device cuda on a CPU-only torch ...
    if args.threads:
        cores = available_cores()
        if args.threads > cores:
            # more threads than cores only makes them wait for each other (4096 on 2 cores: 12x slower)
            raise UsageError(f"--threads {args.threads} is more than the {cores} CPU cores this process may use; "
                             f"pass --threads {cores} or fewer")
        torch.set_num_threads(args.threads)  # fixed intra-op threads: CPU reductions split work by them
    set_deterministic(args.deterministic)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if train.batch_size % world:
        raise UsageError(f"--batch_size {train.batch_size} (the global batch) is not divisible by the {world} processes")
    # Before the process group forms (a rendezvous of every rank), so all ranks check the same files
    # and a refused rank 0 stops torchrun before any rank has written anything.
    meta = _read_meta(args.dataset_path)
    with OutputLock(files["model"], "--output_model_path") if launched_as_main() else _nothing():
        if not args.resume:
            _refuse_existing(files)
        resuming = args.resume and files["resume"].exists()
        if args.new_learning_rate and not resuming:
            raise UsageError(f"--new_learning_rate changes the rate of a resumed run, and there is no {files['resume']} "
                             "to resume (pass --resume, or --learning_rate for a new run)")
        if args.new_learning_rate and args.learning_rate:
            raise UsageError("--new_learning_rate and --learning_rate: give only --new_learning_rate to change the rate "
                             "of the resumed run")
        from_scratch = not resuming and not args.pretrained_model_path
        args.position_scaffold = "on" if use_scaffold(args, config) else "off"
        config, notes = choose_schedule(config, explicit, files["config"] if resuming else None, from_scratch,
                                        continued=bool(args.pretrained_model_path),
                                        scaffold=args.position_scaffold == "on")
        recorded = _recorded_schedule(files["config"]) if resuming else None
        recorded_keys = frozenset(f"train.{k}" for k in (recorded or {}) if k not in explicit)
        rank, world, device = setup_distributed(device_flag)
        return _train(args, config, meta, files, rank, world, device, notes, recorded_keys)


def use_scaffold(args, config: Config) -> bool:
    """Whether this run starts and holds uer.scaffold's position scaffold: from scratch (a resumed
    run too: its checkpoint carries the values) wherever the config allows it, unless ``off``."""
    why = scaffold_refusal(config)
    if args.position_scaffold == "on":
        if args.pretrained_model_path:
            raise UsageError("--position_scaffold on: the scaffold is an initialisation, and --pretrained_model_path "
                             "gives trained weights (continued pre-training holds nothing)")
        if why is not None:
            raise UsageError(f"--position_scaffold on: {why} in {args.config_path}")
    return args.position_scaffold != "off" and not args.pretrained_model_path and why is None


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a container or taskset may allow
    fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _refuse_existing(files: dict[str, Path]) -> None:
    """Without --resume, nothing of an earlier run into this output is replaced."""
    existing = [p for p in files.values() if p.exists()]
    if files["resume"] in existing:
        raise UsageError(f"{files['resume']} exists: pass --resume to continue that run, or choose another --output_model_path")
    if existing:
        raise UsageError(
            f"{existing[0]} exists (an earlier run into {files['model']}); pass --resume to continue or restart "
            "that run, or choose another --output_model_path"
        )


# ------------------------------------------------------------------------------------- resume signature
# Train values a resumed run may change: how far it goes and how often it reports or saves. Every
# other value defines the run being continued; the batch size is checked by the trainer itself
# (its message says why: the data position counts batches).
RESUMABLE_CHANGES = ("train.total_steps", "train.report_steps", "train.save_checkpoint_steps", "train.batch_size")
# The config sections pre-training uses (``fastbert``, ``ner`` ... are for fine-tuning: editing them
# between a run and its resume changes nothing here).
RUN_SECTIONS = ("embedding", "encoder", "subencoder", "target", "tokenizer", "train")
# Fields of meta.json that say where and how fast, not what: a moved or re-timed dataset is the same data.
META_NOT_DATA = ("vocab_path", "spm_model_path", "corpus_path", "seconds", "processes_num")


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dataset_fingerprint(meta: dict) -> str:
    """What a dataset holds, in a line: its size, and a hash of its meta.json minus paths and timing."""
    what = {k: v for k, v in meta.items() if k not in META_NOT_DATA}
    digest = hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]
    return f"{meta.get('instances')} instances, {meta.get('tokens')} tokens, meta sha1 {digest}"


def run_signature(config: Config, meta: dict, held_out: dict[str, object]) -> dict[str, object]:
    """Everything that defines a pre-training run (a resume with another value is another run):
    the resolved config (dropout overrides, schedule, weight decay, precision, accumulation ...),
    the dataset, and the held-out set (the best-so-far loss is only comparable on the same set)."""
    flat = _flat({k: v for k, v in to_dict(config).items() if k in RUN_SECTIONS})
    signature = {k: v for k, v in flat.items() if k not in RESUMABLE_CHANGES}
    signature["dataset"] = dataset_fingerprint(meta)
    signature.update({f"held_out.{k}": v for k, v in held_out.items()})
    return json.loads(json.dumps(signature))  # as a checkpoint gives it back: lists, not tuples


def _source_of(key: str, files: dict[str, Path], recorded: frozenset[str]) -> str:
    if key in recorded:
        return f"recorded in {files['config']}"
    if key.startswith("train.") and key[6:] in TRAIN_FLAGS:
        return f"--{key[6:]}"
    if key == "dataset":
        return "--dataset_path"
    if key == "position_scaffold":
        return "--position_scaffold"
    if key in ("held_out.dataset", "held_out.fraction"):
        return "--dev_dataset_path" if key == "held_out.dataset" else "--dev_fraction"
    return f"--config_path / --set {key}"


def signature_mismatch(files: dict[str, Path], recorded: frozenset[str], notes: list[str]):
    """The trainer's hook: one line naming each value that differs from the run being resumed."""
    resume = files["resume"]

    def explain(saved: dict | None, current: dict) -> str | None:
        if saved is None:  # written before pretrain.py signed its runs: nothing to compare with
            notes.append(f"note: {resume} was written before pretrain.py recorded what defines a run; "
                         "this run's values are not checked against it")
            return None
        differs = sorted(k for k in {*saved, *current} if saved.get(k) != current.get(k))
        if not differs:
            return None
        lr_only = ("; to change only the peak learning rate of the resumed run, pass --new_learning_rate instead"
                   if "train.learning_rate" in differs else "")
        shown = "; ".join(f"{k} is {saved.get(k)!r} there, {current.get(k)!r} now ({_source_of(k, files, recorded)})"
                          for k in differs[:4])
        more = f"; and {len(differs) - 4} more ({', '.join(differs[4:])})" if len(differs) > 4 else ""
        weights = (f"; to go on from its weights with other values, start a new run: --pretrained_model_path {resume} "
                   "--output_model_path <another path>")
        return (f"{resume} is the resume state of another run: {shown}{more}. --resume continues a run exactly as "
                f"it started, so give the same values (only --total_steps, --report_steps and --save_checkpoint_steps "
                f"may change){lr_only}{weights}")

    return explain


def _change_learning_rate(trainer: Trainer, config: Config, new: float, notes: list[str]) -> Config:
    """The resumed run goes on with peak ``new`` from its next step: the schedule keeps its shape
    (the rate is ``new`` times the same warmup/decay factor), the optimizer keeps its moments. The
    config, the signature of later checkpoints and ``<stem>.config.yaml`` say ``new`` from now on;
    ``user_state["learning_rate_changes"]`` keeps where the rate changed."""
    import dataclasses

    old = config.train.learning_rate
    optimizer, scheduler = trainer.optimizer, trainer.scheduler
    scheduler.base_lrs = [new for _ in scheduler.base_lrs]
    for group in optimizer.param_groups:
        group["initial_lr"] = new
    _restretch(optimizer, scheduler, trainer.step)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=new))
    trainer.config = config  # what the checkpoints carry
    trainer.signature = {**trainer.signature, "train.learning_rate": new}
    trainer.user_state["learning_rate_changes"] = [*trainer.user_state.get("learning_rate_changes", []),
                                                   {"step": trainer.step, "from": old, "to": new}]
    notes.append(f"learning rate: peak {old:.1e} until step {trainer.step}, {new:.1e} from step {trainer.step + 1} on "
                 f"(--new_learning_rate; the rate after step {trainer.step} is {optimizer.param_groups[0]['lr']:.2e})")
    return config


def _restretch(optimizer, scheduler, step: int) -> None:
    """The rate of the new schedule at ``step``, from the next step on: the restored optimizer holds
    the old schedule's rate, which LambdaLR would otherwise use for one more step."""
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(step)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports


# ------------------------------------------------------------------------------------- held-out set
class HeldOut:
    """The held-out instances and how they are batched: the same batches, and the same masks, at
    every evaluation and after a resume (a fixed seed per batch, not the training RNG)."""

    def __init__(self, data: PretrainDataset, index: torch.Tensor, batch_size: int, seed: int, what: str) -> None:
        self.data, self.index, self.batch_size, self.seed, self.what = data, index, batch_size, seed, what

    def __len__(self) -> int:
        return len(self.index)

    def batches(self):
        for number, start in enumerate(range(0, len(self.index), self.batch_size)):
            g = torch.Generator().manual_seed(self.seed * 7_919 + 1_000_003 * 97 + number)
            yield self.data.collate(self.index[start:start + self.batch_size], g)


def split_held_out(size: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices) of ``size`` instances, both sorted; which instances are
    held out depends on ``seed`` alone. Instances, not documents: neighbouring instances of one
    document may fall on both sides (``--dev_dataset_path`` with another corpus avoids that)."""
    held = round(fraction * size)
    if held < 1 or held >= size:
        raise UsageError(f"--dev_fraction {fraction:g} of {size} instances holds out {held}: "
                         "it must leave at least one instance on each side")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + 104_729))
    return order[held:].sort().values, order[:held].sort().values


def _held_out(args, data: PretrainDataset, vocab, batch_size: int, seed: int):
    """(training indices or None, HeldOut or None, the held-out part of the run's signature)."""
    if args.dev_fraction:
        train_index, dev_index = split_held_out(len(data), args.dev_fraction, seed)
        what = f"{len(dev_index)} instances held out of {args.dataset_path}"
        return train_index, HeldOut(data, dev_index, batch_size, seed, what), {"fraction": args.dev_fraction}
    if args.dev_dataset_path:
        dev = PretrainDataset(args.dev_dataset_path, vocab)
        if dev.processor != data.processor:
            raise UsageError(f"--dev_dataset_path {args.dev_dataset_path} was made by the {dev.processor!r} processor, "
                             f"the training dataset by {data.processor!r}: preprocess both alike")
        held = HeldOut(dev, torch.arange(len(dev)), batch_size, seed, f"{len(dev)} instances of {args.dev_dataset_path}")
        return None, held, {"dataset": dataset_fingerprint(dev.meta)}
    return None, None, {}


class Evaluation:
    """``on_step`` of the trainer: held-out evaluation every ``every`` steps and at the end, the
    best checkpoint (lowest held-out loss), and TensorBoard curves. The best value lives in the
    trainer's ``user_state``, so a resumed run compares with what the interrupted one had."""

    def __init__(self, model, config: Config, held: HeldOut | None, every: int, total_steps: int, device: str,
                 precision: str, files: dict[str, Path], extra: dict, writer, main_process: bool) -> None:
        self.model, self.config, self.held, self.every = model, config, held, every
        self.total_steps, self.device, self.precision = total_steps, device, precision
        self.files, self.extra, self.writer, self.main_process = files, extra, writer, main_process
        self.parts = list(model.target.components)
        self.logged = 0  # trainer.history lines already sent to TensorBoard

    def __call__(self, trainer: Trainer) -> None:
        if self.writer is not None:
            for line in trainer.history[self.logged:]:
                for key, value in line.items():
                    if key != "step":
                        self.writer.add_scalar(f"train/{key}", value, line["step"])
            self.logged = len(trainer.history)
        step = trainer.step
        if self.held is None or not (step % self.every == 0 or step == self.total_steps):
            return
        if not self.main_process:  # rank 0 evaluates; the others wait for it in the next step's all-reduce
            return
        means = evaluate(self.model, self.held.batches(), self.device, self.precision, parts=self.parts)
        best = trainer.user_state.get("best")
        improved = best is None or means["loss"] < best["loss"]
        if improved:
            best = {"step": step, "loss": means["loss"]}
            trainer.user_state["best"] = best
            save_checkpoint(self.files["best"], self.model, self.config, held_out={"step": step, **means}, **self.extra)
        trainer.write_metrics({"step": step, **{f"dev_{k}": v for k, v in means.items()},
                               "dev_best_loss": best["loss"], "dev_best_step": best["step"]})
        shown = " ".join(f"{k} {v:.4f}" for k, v in means.items() if k.endswith(("loss", "acc")))
        saved = f", saved {self.files['best']}" if improved else ""
        tqdm.write(f"held-out step {step}: {shown} | best loss {best['loss']:.4f} at step {best['step']}{saved}",
                   file=sys.stdout)
        if self.writer is not None:
            for key, value in means.items():
                self.writer.add_scalar(f"held_out/{key}", value, step)
            self.writer.flush()


def _train(args, config: Config, meta: dict, files: dict[str, Path], rank: int, world: int, device: str,
           notes: list[str], recorded: frozenset[str]) -> int:
    from uer.tokenizers import build_tokenizer

    main_process = rank == 0
    train = config.train
    output, resume_path = files["model"], files["resume"]
    vocab_path, spm_path = args.vocab_path, args.spm_model_path
    if vocab_path is None and spm_path is None:
        vocab_path, spm_path = meta["vocab_path"], meta["spm_model_path"]
    vocab = build_tokenizer(config.tokenizer, vocab_path=vocab_path, spm_model_path=spm_path).vocab
    data = PretrainDataset(args.dataset_path, vocab)
    wanted = processor_for_targets([s.name for s in config.target.components])
    if wanted != data.processor:
        raise ValueError(
            f"{args.dataset_path} was made by the {data.processor!r} processor, but the targets of "
            f"{args.config_path} need {wanted!r}: re-run preprocess.py with --data_processor {wanted}"
        )
    train_index, held, held_signature = _held_out(args, data, vocab, train.batch_size, train.seed)
    # By step number, so a resumed run evaluates where the uninterrupted one would have. Not part of
    # the signature: evaluating more or less often compares the same held-out set all the same.
    eval_every = args.eval_steps or train.save_checkpoint_steps or train.total_steps

    torch.manual_seed(train.seed)  # the same initial weights on every rank
    model = build_model(config, vocab_size=len(vocab), labels_num=meta.get("labels_num"),
                        vocab_tokens=vocab.tokens if config.subencoder is not None else None)
    fresh_mlm = "mlm" in model.target.components
    if args.pretrained_model_path:
        loaded = load_backbone(model, args.pretrained_model_path, args.config_path, heads=True)
        fresh_mlm = fresh_mlm and any(k.startswith(f"{TARGET_PREFIX}mlm.") for k in loaded.fresh)
        if main_process:
            for note in loaded.notes:
                print(note, file=sys.stderr)
    # Only a head that starts untrained: a loaded or resumed one keeps what it learned. No torch
    # RNG is drawn, so prior and zero runs differ in this bias alone.
    if args.mlm_bias_init == "prior" and fresh_mlm and not (args.resume and resume_path.exists()):
        tokens = dataset_token_ids(data.files)
        init_mlm_bias(model, token_log_prior(tokens, len(vocab), data.ids.special_ids))
        if main_process:
            print(f"mlm bias: set to the log unigram prior of {len(tokens)} tokens of {args.dataset_path} "
                  "(--mlm_bias_init zero keeps it at 0)", file=sys.stderr)
    scaffold = apply_scaffold(model, config) if args.position_scaffold == "on" else None
    if scaffold is not None and main_process:
        print(f"position scaffold: sin/cos positions in the last {SCAFFOLD_DIMS} of {config.encoder.cfg.hidden_size} "
              f"columns, read by every layer's query and key, held while pre-training ({scaffold.size} weights; "
              "uer.scaffold; --position_scaffold off: BERT's random init)", file=sys.stderr)
    model.to(device)
    torch.manual_seed(train.seed * 1_000 + rank)  # dropout differs per rank

    optimizer = make_optimizer(model.named_parameters(), train.learning_rate, train.weight_decay, train.betas, device)
    scheduler = make_scheduler(optimizer, train.scheduler, int(train.warmup * train.total_steps), train.total_steps)
    options = TrainerOptions(
        device=device,
        precision=train.precision,
        accumulation_steps=train.accumulation_steps,
        clip_grad_norm=train.clip_grad_norm,
        report_steps=train.report_steps,
        save_checkpoint_steps=train.save_checkpoint_steps,
        checkpoint_path=str(resume_path),
        metrics_path=str(files["metrics"]),
        desc="pretrain",
        progress=not args.no_progress,
        log=lambda line: print(line, flush=True),
    )
    trainer = Trainer(model, optimizer, scheduler, config, options)
    trainer.signature = run_signature(config, meta, held_signature)
    if scaffold is not None:  # only when on: runs signed before the scaffold existed resume as they were
        trainer.signature["position_scaffold"] = "on"
    trainer.signature_mismatch = signature_mismatch(files, recorded, notes)
    if train_index is None:
        size, collate = len(data), data.collate
    else:  # only the instances not held out: the loader's indices are positions in train_index
        size, collate = len(train_index), (lambda index, g: data.collate(train_index[index], g))
    loader = EpochLoader(size, train.batch_size, collate, shuffle=True, seed=train.seed,
                         drop_last=size >= train.batch_size, rank=rank, world_size=world)
    resumed = False
    if args.resume and resume_path.exists():
        resumed = trainer.maybe_resume(loader)  # refused (nothing written) if it belongs to another run
        if main_process:
            print(f"resumed from {resume_path} at step {trainer.step}", file=sys.stderr)
            threads = torch.get_num_threads()
            if args.deterministic and trainer.resumed_threads not in (None, threads) and device == "cpu":
                print(f"note: {resume_path} was written with {trainer.resumed_threads} CPU threads, this run has {threads}: "
                      f"pass --threads {trainer.resumed_threads} for a result bit-identical to an uninterrupted run",
                      file=sys.stderr)
            planned = trainer.user_state.get("total_steps")
            if planned is not None and planned != train.total_steps:
                # the schedule is a function of total_steps: a longer run stretches its warmup and decay
                before = optimizer.param_groups[0]["lr"]
                _restretch(optimizer, scheduler, trainer.step)
                print(f"note: the resumed run was to end at step {planned}, this one ends at {train.total_steps}: its "
                      f"warmup and decay now span {train.total_steps} steps (the rate after step {trainer.step}: "
                      f"{before:.2e} before, {optimizer.param_groups[0]['lr']:.2e} now)", file=sys.stderr)
    elif args.resume and main_process:
        print(f"--resume: no {resume_path} yet, starting at step 0", file=sys.stderr)
        if files["metrics"].exists():
            files["metrics"].unlink()  # the lines of a run that never reached a checkpoint
    if scaffold is not None:  # holds the values as initialised, or as the resumed checkpoint has them
        scaffold.attach(optimizer)
    trainer.user_state["total_steps"] = train.total_steps  # what the total_steps note compares with on a later resume
    if args.new_learning_rate and resumed:
        config = _change_learning_rate(trainer, config, args.new_learning_rate, notes)
        train = config.train
    if main_process:
        import yaml

        with atomic_open(files["config"]) as f:
            # where the YAML came from is not part of the model (to_dict drops it once uer.config does)
            saved = {k: v for k, v in to_dict(config).items() if k != "source"}
            yaml.safe_dump(saved, f, sort_keys=False, allow_unicode=True)
    if main_process:
        for note in notes:  # the schedule and its advice, beside the rest of what this run is
            print(note, file=sys.stderr)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"pre-training {params / 1e6:.2f}M parameters on {size} instances ({data.processor}, seq {data.seq_length}); "
            f"global batch {train.batch_size} x {train.accumulation_steps} accumulation over {world} process(es) on {device}, "
            f"{train.precision}, {train.total_steps} steps",
            file=sys.stderr,
        )
        if held is not None:
            print(f"held-out set: {held.what}; evaluated every {eval_every} steps and at the end, the lowest loss "
                  f"kept as {files['best']}", file=sys.stderr)
    # what this run held, so that a reader (bench/pretrain_quality.py, a user) need not re-derive pretrain.py's rule
    extra = {"vocab_size": len(vocab), "position_scaffold": "on" if scaffold is not None else "off"}
    if meta.get("labels_num"):
        extra["labels_num"] = meta["labels_num"]
    if config.subencoder is not None:
        extra["vocab_tokens"] = list(vocab.tokens)
    writer = None
    if args.tensorboard_dir and main_process:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run redoes the steps after its checkpoint: TensorBoard hides their first version
        writer = SummaryWriter(args.tensorboard_dir, purge_step=trainer.step + 1 if resumed else None)
    evaluation = Evaluation(model, config, held, eval_every, train.total_steps, device, train.precision, files, extra,
                            writer, main_process)
    try:
        trainer.fit(loader, train.total_steps, on_step=evaluation)
    finally:
        if writer is not None:
            writer.close()
    if main_process:
        save_checkpoint(output, model, config, **extra)
        print(f"saved {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
