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
exactly. ``metrics.jsonl`` beside the output gets one JSON line per report step.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from uer.checkpoint import CheckpointError, load_state, read_checkpoint, save_checkpoint
from uer.config import Config, ConfigError, apply_overrides, config_from_dict, read_yaml, to_dict
from uer.data.batches import PretrainDataset
from uer.data.corpus import CorpusFormatError
from uer.data.dataset import read_meta
from uer.data.loader import EpochLoader
from uer.data.processors import processor_for_targets
from uer.model_builder import build_model
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler
from uer.utils.atomic import atomic_open

TRAIN_FLAGS = ("batch_size", "total_steps", "learning_rate", "warmup", "scheduler", "accumulation_steps",
               "report_steps", "save_checkpoint_steps", "precision", "seed", "weight_decay", "clip_grad_norm")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_path", required=True)
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
    # training values: default from the config's train section
    p.add_argument("--batch_size", type=int)
    p.add_argument("--total_steps", type=int)
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--warmup", type=float, help="fraction of total_steps")
    p.add_argument("--scheduler", choices=("linear", "cosine", "constant"))
    p.add_argument("--accumulation_steps", type=int)
    p.add_argument("--report_steps", type=int)
    p.add_argument("--save_checkpoint_steps", type=int)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--seed", type=int)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--clip_grad_norm", type=float)
    return p


def resolve_config(args) -> Config:
    data = read_yaml(args.config_path)
    if args.overrides:
        data = apply_overrides(data, args.overrides)
    flags = {f"train.{k}": getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    if flags:
        data = apply_overrides(data, flags)
    return config_from_dict(data, args.config_path)


def load_pretrained(model: torch.nn.Module, path: str) -> list[str]:
    """Strict load of a uer checkpoint for continued pre-training.

    Every embedding / encoder tensor must be there with its shape. A target head is either loaded
    whole or, when the checkpoint has none of it (e.g. a new ``sop`` head on an ``mlm`` model),
    kept freshly initialised; the heads of targets this model lacks are left out. Returns the
    notes to print about such heads.
    """
    state = read_checkpoint(path)["model"]
    own = model.state_dict()
    head = lambda key: key.split(".")[2] if key.startswith("target.components.") else None  # noqa: E731
    ours = {head(k) for k in own} - {None}
    theirs = {head(k) for k in state} - {None}
    fresh = ours - theirs
    unused = theirs - ours
    merged = {k: v for k, v in state.items() if head(k) not in unused}
    merged.update({k: v for k, v in own.items() if head(k) in fresh})
    load_state(model, merged, path, "the config")  # strict: names every missing / mis-shaped tensor
    notes = [f"target head {name!r} is not in {path}: initialised at random" for name in sorted(fresh)]
    notes += [f"target head {name!r} of {path} is not used by this config" for name in sorted(unused)]
    return notes


def setup_distributed(device_flag: str | None) -> tuple[int, int, str]:
    """(rank, world_size, device) from torchrun's environment; a plain run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (device_flag is None or device_flag.startswith("cuda"))
    if world == 1:
        return 0, 1, device_flag or ("cuda" if cuda else "cpu")
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), world, f"cuda:{local_rank}" if cuda else "cpu"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ConfigError, CheckpointError, CorpusFormatError, FileNotFoundError, ValueError) as exc:
        print(f"pretrain.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run(args) -> int:
    from uer.tokenizers import build_tokenizer

    rank, world, device = setup_distributed(args.device)
    main_process = rank == 0
    config = resolve_config(args)
    train = config.train
    output = Path(args.output_model_path)
    resume_path = Path(f"{output}.resume")
    if resume_path.exists() and not args.resume:
        raise ValueError(f"{resume_path} exists: pass --resume to continue that run, or choose another --output_model_path")

    meta = read_meta(args.dataset_path)
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
    if args.pretrained_model_path:
        for note in load_pretrained(model, args.pretrained_model_path):
            if main_process:
                print(note, file=sys.stderr)
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
        metrics_path=str(output.parent / "metrics.jsonl"),
        desc="pretrain",
        progress=not args.no_progress,
    )
    trainer = Trainer(model, optimizer, scheduler, config, options)
    loader = EpochLoader(len(data), train.batch_size, data.collate, shuffle=True, seed=train.seed,
                         drop_last=len(data) >= train.batch_size, rank=rank, world_size=world)
    if main_process:
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(output.parent / "config.yaml") as f:
            import yaml

            yaml.safe_dump(to_dict(dataclasses.replace(config, source=args.config_path)), f, sort_keys=False, allow_unicode=True)
        if (output.parent / "metrics.jsonl").exists() and not args.resume:
            (output.parent / "metrics.jsonl").unlink()
    if args.resume and resume_path.exists():
        trainer.maybe_resume(loader)
        if main_process:
            print(f"resumed from {resume_path} at step {trainer.step}", file=sys.stderr)
    elif args.resume and main_process:
        print(f"--resume: no {resume_path} yet, starting at step 0", file=sys.stderr)
    if main_process:
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
