"""What ``run_fastbert.py`` does, step by step: data -> model -> stage 1 -> stage 2 -> speed sweep.

Every output lies beside ``output_model_path`` (``<dir>/<stem>.*``): the resolved config, the
vocabulary, each stage's resume state and best weights, metrics, the report, the plot and the
predictions. Running the same command again resumes where it stopped.
"""
from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from uer.checkpoint import read_checkpoint, save_checkpoint
from uer.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, to_dict
from uer.data.tsv import TsvData, read_tsv
from uer.fastbert.build import build_fastbert, fastbert_config, load_backbone
from uer.fastbert.data import Encoded, encode_tsv
from uer.fastbert.evaluate import chosen_speed, sweep
from uer.fastbert.inference import EarlyExit
from uer.fastbert.report import format_table, plot_tradeoff, write_json, write_predictions
from uer.fastbert.training import StageOptions, distill, finetune
from uer.utils.atomic import atomic_open
from uer.utils.paths import resolve_path


@dataclass(frozen=True)
class RunOptions:
    """Everything ``run_fastbert.py`` takes; training hyper-parameters live in ``config.fastbert``."""

    config_path: str | None
    pretrained_model_path: str | None
    vocab_path: str | None
    train_path: str
    dev_path: str
    test_path: str | None
    distill_path: str | None
    output_model_path: str
    report_path: str | None
    speeds: tuple[float, ...]
    skip_malformed: bool = False
    train_samples: int = 0  # 0: all; else a seeded random subset of the training set
    dev_samples: int = 0  # 0: all; else a seeded random subset of dev for the per-epoch evaluation
    timing_samples: int = 256
    timing_batch_size: int = 32
    fast: bool = True
    progress: bool = True
    config_overrides: tuple[tuple[str, Any], ...] = ()  # ("fastbert.epochs_num", 2), ("target.branch_size", 64) ...
    device: str = "cpu"  # training and inference; batches are built on the CPU and moved
    precision: str = "fp32"  # training only (autocast); inference runs in fp32


class DeviceError(ValueError):
    """A --device / --precision that this machine cannot run."""


def check_device(device: str, precision: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__})")
    if precision == "fp16" and dev.type != "cuda":
        raise DeviceError("--precision fp16 needs CUDA (it relies on a grad scaler); use bf16 on the CPU")
    return dev


def say(message: str) -> None:
    print(message, flush=True)


def resolve_config(opts: RunOptions) -> Config:
    """Backbone config (YAML, else the pre-trained checkpoint's) with the fastbert target and overrides."""
    target_overrides = {k.split(".", 1)[1]: v for k, v in opts.config_overrides if k.startswith("target.")}
    other = {k: v for k, v in opts.config_overrides if not k.startswith("target.")}
    if opts.config_path:
        base = load_config(resolve_path(opts.config_path), other)
    elif opts.pretrained_model_path:
        path = resolve_path(opts.pretrained_model_path)
        state = read_checkpoint(path)
        base = config_from_dict(apply_overrides(state["config"], other), f"{path} (config)")
    else:
        raise ValueError("give --config_path (or --pretrained_model_path, whose config is used)")
    return fastbert_config(base, **target_overrides)


def subsample(data: TsvData, n: int, seed: int) -> TsvData:
    if not n or n >= len(data.examples):
        return data
    rows = random.Random(seed).sample(range(len(data.examples)), n)
    return TsvData(data.path, [data.examples[i] for i in sorted(rows)], data.labels, data.pair, data.skipped)


def run(opts: RunOptions) -> dict[str, Any]:
    from uer.tokenizers import build_tokenizer

    started = time.perf_counter()
    device = check_device(opts.device, opts.precision)
    out_model = Path(opts.output_model_path)
    out_dir, stem = out_model.parent, out_model.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    config = resolve_config(opts)
    fb = config.fastbert
    torch.manual_seed(fb.seed)

    # ---------------------------------------------------------------- data
    if not (opts.vocab_path or config.tokenizer.vocab_path):
        raise ConfigError(f"{config.source}: no vocabulary: give --vocab_path (or tokenizer.vocab_path in the config)")
    vocab_path = resolve_path(opts.vocab_path or config.tokenizer.vocab_path)
    tokenizer = build_tokenizer(config.tokenizer, vocab_path=vocab_path)
    vocab = tokenizer.vocab
    train_full = read_tsv(opts.train_path, skip_malformed=opts.skip_malformed)
    labels = train_full.labels
    train = subsample(train_full, opts.train_samples, fb.seed)
    dev_full = read_tsv(opts.dev_path, labels=labels, skip_malformed=opts.skip_malformed)
    dev = subsample(dev_full, opts.dev_samples, fb.seed + 1)
    test = read_tsv(opts.test_path, labels=labels, skip_malformed=opts.skip_malformed) if opts.test_path else None
    distill_data = read_tsv(opts.distill_path, labelled=False, skip_malformed=opts.skip_malformed) if opts.distill_path else None
    skipped = {d.path: {"rows": len(d.skipped), "first": [f"line {n}: {r}" for n, r in d.skipped[:5]]}
               for d in (train_full, dev_full, test, distill_data) if d is not None}
    for path, info in skipped.items():
        if info["rows"]:
            say(f"skipped {info['rows']} malformed rows in {path} (e.g. {info['first'][0]})")
    say(f"labels: {list(labels)}; train {len(train.examples)} rows"
        + (f" (a seeded subsample of {len(train_full.examples)})" if train is not train_full else "")
        + f", dev {len(dev.examples)}" + (f" (a seeded subsample of {len(dev_full.examples)})" if dev is not dev_full else "") + (f", test {len(test.examples)}" if test else ""))
    seq = fb.seq_length
    train_enc, dev_enc = encode_tsv(tokenizer, train, seq), encode_tsv(tokenizer, dev, seq)
    distill_enc = encode_tsv(tokenizer, distill_data, seq, labelled=False) if distill_data else Encoded(train_enc.ids, train_enc.segs, None)

    # ---------------------------------------------------------------- model
    model = build_fastbert(config, vocab_size=len(vocab), labels_num=len(labels))
    if opts.pretrained_model_path:
        keys = load_backbone(model, resolve_path(opts.pretrained_model_path), config.source)
        say(f"backbone loaded from {opts.pretrained_model_path}; freshly initialised: "
            f"{len(keys['fresh'])} fastbert target tensors ({len(fastbert_target_branches(model))} branches); "
            f"ignored from the checkpoint: {len(keys['ignored'])} tensors of its own targets")
    else:
        say("no --pretrained_model_path: the backbone starts from random weights")
    model.to(device)
    shutil.copyfile(vocab_path, out_dir / f"{stem}.vocab.txt")
    with atomic_open(out_dir / f"{stem}.config.yaml") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False, allow_unicode=True)
    extra = {"labels": list(labels), "vocab_size": len(vocab), "seq_length": seq, "vocab_file": f"{stem}.vocab.txt"}
    pad_id = vocab.pad_id

    def stage(n: int, epochs: int, lr: float) -> StageOptions:
        return StageOptions(
            epochs=epochs, batch_size=fb.batch_size, learning_rate=lr, warmup=fb.warmup, weight_decay=fb.weight_decay,
            seed=fb.seed, report_steps=fb.report_steps, checkpoint_path=str(out_dir / f"{stem}.stage{n}.pt"),
            best_path=str(out_dir / f"{stem}.stage{n}_best.pt"), metrics_path=str(out_dir / f"{stem}.stage{n}.jsonl"),
            progress=opts.progress, device=str(device), precision=opts.precision,
        )

    t0 = time.perf_counter()
    stage1 = finetune(model, config, train_enc, dev_enc, pad_id, stage(1, fb.epochs_num, fb.learning_rate), extra)
    say(f"stage 1: best dev accuracy {stage1['best']:.4f} (epoch {stage1['best_epoch']}), {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    if fb.distill_epochs_num > 0:
        stage2 = distill(model, config, distill_enc, dev_enc, pad_id, stage(2, fb.distill_epochs_num, fb.distill_learning_rate), extra)
        say(f"stage 2: best dev distillation loss {stage2['best']:.4f} per student (epoch {stage2['best_epoch']}), "
            f"{time.perf_counter() - t0:.0f}s")
    else:
        stage2 = None
    save_checkpoint(out_model, model, config, **extra, stage1=_brief(stage1), stage2=_brief(stage2))
    say(f"model saved to {out_model}")

    # ---------------------------------------------------------------- speeds
    report: dict[str, Any] = {"labels_num": len(labels), "labels": list(labels), "skipped_rows": skipped,
                              "train_rows": len(train.examples), "train_rows_available": len(train_full.examples),
                              "dev_rows": len(dev.examples), "dev_rows_available": len(dev_full.examples),
                              "stage1": _brief(stage1), "stage2": _brief(stage2)}
    if test is not None:
        test_enc = encode_tsv(tokenizer, test, seq)
        runner = EarlyExit(model, fused=opts.fast)
        result = sweep(runner, test_enc, pad_id, opts.speeds, timing_samples=opts.timing_samples,
                       batch_size=opts.timing_batch_size)
        rows = result["rows"]
        teacher_acc = result["teacher"]["accuracy"]
        report.update({
            "teacher_accuracy": teacher_acc, "teacher_macro_f1": result["teacher"]["macro_f1"],
            "teacher_confusion_matrix": result["teacher"]["confusion_matrix"], "rows": rows,
            "full_flops_per_sample": result["full_flops_per_sample"], "wall_seconds": result["wall_seconds"],
            "timing_samples": result["timing_samples"], "timing_batch_size": opts.timing_batch_size,
            "inference_backend": result["backend"], "device": str(device), "threads": torch.get_num_threads(),
            "chosen": chosen_speed(rows, teacher_acc),
        })
        pred_dir = out_dir / f"{stem}.predictions"
        for speed, exits in zip(opts.speeds, result["exits"]):
            write_predictions(pred_dir / f"speed_{speed:.2f}.tsv", labels, exits.probs, exits.exit_layer)
        say(format_table(rows, teacher_acc))
        chosen = report["chosen"]
        if chosen is not None:
            say(f"largest speed within 1 point of the teacher: {chosen['speed']:g} "
                f"(accuracy {chosen['accuracy']:.4f}, FLOPs x{chosen['flops_speedup']:.2f})")
        if len(rows) > 1:
            plot = out_dir / f"{stem}.tradeoff.png"
            plot_tradeoff(plot, rows, teacher_acc)
            report["plot"] = str(plot)
        report["predictions"] = str(pred_dir)
    report["seconds"] = time.perf_counter() - started
    report_path = Path(opts.report_path) if opts.report_path else out_dir / f"{stem}.report.json"
    write_json(report_path, report)
    say(f"report written to {report_path} ({report['seconds']:.0f}s in all)")
    return report


def fastbert_target_branches(model) -> list:
    from uer.fastbert.inference import fastbert_target

    return list(fastbert_target(model).branches)


def _brief(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    return {"best": stage["best"], "best_epoch": stage["best_epoch"], "dev": stage["dev"], "steps": stage["steps"]}
