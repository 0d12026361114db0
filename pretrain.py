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
exactly. Beside ``out/a.pt`` go ``out/a.config.yaml`` (the resolved config) and ``out/a.metrics.jsonl``
(one JSON line per report step), so several models can share a folder. A second run into the same
``--output_model_path`` while one is running is refused (``out/a.pt.lock``).

Learning rate, warmup and scheduler that nobody chose (no flag, no ``--set train.x``, no ``train:``
key in the YAML) come from ``uer.recipe`` (model size and ``--total_steps``); the line starting
``schedule:`` says what was chosen. ``out/a.config.yaml`` records the values, and ``--resume``
takes them from there. A fresh MLM head starts with its output bias at the log unigram prior of
the dataset's tokens (``--mlm_bias_init zero``: at 0, as BERT does).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from uer.checkpoint import TARGET_PREFIX, CheckpointError, load_backbone, save_checkpoint
from uer.choices import PRECISIONS, SCHEDULERS
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
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler
from uer.utils.atomic import atomic_open
from uer.utils.cli import (
    OutputLock, UsageError, fraction, input_dir, input_file, non_negative_float, non_negative_int, output_file,
    positive_float, positive_int, run_main, set_deterministic,
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
    return p


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
                    from_scratch: bool = False, continued: bool = False) -> tuple[Config, list[str]]:
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
              position_advice(config, config.train.total_steps, from_scratch)]
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
    """The train values a flag would have refused, when they come from the YAML instead."""
    t = config.train
    rules = [
        ("batch_size", t.batch_size >= 1, "an integer >= 1"),
        ("total_steps", t.total_steps >= 1, "an integer >= 1"),
        ("accumulation_steps", t.accumulation_steps >= 1, "an integer >= 1"),
        ("report_steps", t.report_steps >= 1, "an integer >= 1"),
        ("save_checkpoint_steps", t.save_checkpoint_steps >= 0, "an integer >= 0"),
        ("learning_rate", math.isfinite(t.learning_rate) and t.learning_rate > 0, "a number > 0"),
        ("warmup", 0.0 <= t.warmup <= 1.0, "a fraction of total_steps in [0, 1]"),
        ("weight_decay", math.isfinite(t.weight_decay) and t.weight_decay >= 0, "a number >= 0"),
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
    }


def setup_distributed(device: torch.device) -> tuple[int, int, str]:
    """(rank, world_size, device) from torchrun's environment; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, str(device)
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), world, f"cuda:{local_rank}" if cuda else "cpu"


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
        torch.set_num_threads(args.threads)  # fixed intra-op threads: CPU reductions split work by them
    set_deterministic(args.deterministic)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if train.batch_size % world:
        raise UsageError(f"--batch_size {train.batch_size} (the global batch) is not divisible by the {world} processes")
    # Before the process group forms (a rendezvous of every rank), so all ranks check the same files
    # and a refused rank 0 stops torchrun before any rank has written anything.
    meta = _read_meta(args.dataset_path)
    with OutputLock(files["model"], "--output_model_path") if os.environ.get("RANK", "0") == "0" else _nothing():
        if not args.resume:
            _refuse_existing(files)
        resuming = args.resume and files["resume"].exists()
        from_scratch = not resuming and not args.pretrained_model_path
        config, notes = choose_schedule(config, explicit, files["config"] if resuming else None, from_scratch,
                                        continued=bool(args.pretrained_model_path))
        rank, world, device = setup_distributed(device_flag)
        return _train(args, config, meta, files, rank, world, device, notes)


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


def _train(args, config: Config, meta: dict, files: dict[str, Path], rank: int, world: int, device: str,
           notes: list[str]) -> int:
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
    )
    trainer = Trainer(model, optimizer, scheduler, config, options)
    loader = EpochLoader(len(data), train.batch_size, data.collate, shuffle=True, seed=train.seed,
                         drop_last=len(data) >= train.batch_size, rank=rank, world_size=world)
    if args.resume and resume_path.exists():
        trainer.maybe_resume(loader)  # refused (nothing written) if it belongs to another run
        if main_process:
            print(f"resumed from {resume_path} at step {trainer.step}", file=sys.stderr)
            threads = torch.get_num_threads()
            if args.deterministic and trainer.resumed_threads not in (None, threads) and device == "cpu":
                print(f"note: {resume_path} was written with {trainer.resumed_threads} CPU threads, this run has {threads}: "
                      f"pass --threads {trainer.resumed_threads} for a result bit-identical to an uninterrupted run",
                      file=sys.stderr)
    elif args.resume and main_process:
        print(f"--resume: no {resume_path} yet, starting at step 0", file=sys.stderr)
        if files["metrics"].exists():
            files["metrics"].unlink()  # the lines of a run that never reached a checkpoint
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
            f"pre-training {params / 1e6:.2f}M parameters on {len(data)} instances ({data.processor}, seq {data.seq_length}); "
            f"global batch {train.batch_size} x {train.accumulation_steps} accumulation over {world} process(es) on {device}, "
            f"{train.precision}, {train.total_steps} steps",
            file=sys.stderr,
        )
    trainer.fit(loader, train.total_steps)
    if main_process:
        extra = {"vocab_size": len(vocab)}
        if meta.get("labels_num"):
            extra["labels_num"] = meta["labels_num"]
        if config.subencoder is not None:
            extra["vocab_tokens"] = list(vocab.tokens)
        save_checkpoint(output, model, config, **extra)
        print(f"saved {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
