"""What ``run_ner.py`` does: data -> model -> fine-tune -> self-distil -> speed sweep -> report.

Outputs lie beside ``output_model_path`` (``<dir>/<stem>.*``): the resolved config, the
vocabulary, each stage's resume state and best weights, metrics, the report, the plot and the
predictions (one TSV per speed, in the input's format). Running the same command again resumes.
"""
from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from uer.checkpoint import read_checkpoint, save_checkpoint
from uer.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, to_dict
from uer.fastbert.build import load_backbone
from uer.fastbert.pipeline import Outputs, check_ownership
from uer.model_builder import build_model
from uer.tagging.data import Chunks, NerData, encode_sentences, read_label2id, read_ner_tsv
from uer.tagging.evaluate import chosen_speed, format_table, sweep
from uer.tagging.inference import TokenExit
from uer.tagging.training import StageOptions, distill, fingerprint, finetune, unlabelled
from uer.utils.atomic import atomic_open
from uer.utils.paths import resolve_path


@dataclass(frozen=True)
class NerOptions:
    config_path: str | None
    pretrained_model_path: str | None
    vocab_path: str
    train_path: str
    dev_path: str
    test_path: str | None
    label2id_path: str
    output_model_path: str
    report_path: str | None
    speeds: tuple[float, ...]
    window: int = 0
    skip_malformed: bool = False
    train_samples: int = 0
    dev_samples: int = 0  # 0: all; else a seeded subset for the per-epoch evaluation
    test_samples: int = 0  # 0: all; else a seeded subset of the test set
    timing_samples: int = 256
    timing_batch_size: int = 32
    progress: bool = True
    config_overrides: tuple[tuple[str, Any], ...] = ()  # ("fastbert.epochs_num", 2), ("target.branch_size", 32)
    device: str = "cpu"
    precision: str = "fp32"
    plot: bool = True
    runtime: str = "auto"  # uer.tagging.inference.RUNTIMES


def say(message: str) -> None:
    print(message, flush=True)


def resolve_config(opts: NerOptions) -> Config:
    """Backbone config (YAML, else the pre-trained checkpoint's) with the ``token_exit`` target."""
    target = {k.split(".", 1)[1]: v for k, v in opts.config_overrides if k.startswith("target.")}
    other = {k: v for k, v in opts.config_overrides if not k.startswith("target.")}
    if opts.config_path:
        base = load_config(resolve_path(opts.config_path), other)
    elif opts.pretrained_model_path:
        path = resolve_path(opts.pretrained_model_path)
        base = config_from_dict(apply_overrides(read_checkpoint(path)["config"], other), f"{path} (config)")
    else:
        raise ConfigError("give --config_path (or --pretrained_model_path, whose config is used)")
    return base.with_target({"name": "token_exit", **target})


def subsample(data: NerData, n: int, seed: int) -> NerData:
    if not n or n >= len(data.chars):
        return data
    rows = sorted(random.Random(seed).sample(range(len(data.chars)), n))
    return NerData(data.path, [data.chars[i] for i in rows], None if data.tags is None else [data.tags[i] for i in rows], data.skipped)


def write_predictions(path: Path, chars: list[list[str]], tags: list[list[str]]) -> None:
    """The input's format: ``text_a<TAB>label`` with a header, space-separated."""
    with atomic_open(path) as f:
        f.write("text_a\tlabel\n")
        for c, t in zip(chars, tags):
            f.write(f"{' '.join(c)}\t{' '.join(t)}\n")


def run(opts: NerOptions, device: torch.device) -> dict[str, Any]:
    from uer.tokenizers import Vocab

    started = time.perf_counter()
    out_model = Path(opts.output_model_path)
    out_dir, stem = out_model.parent, out_model.stem
    config = resolve_config(opts)
    fb = config.fastbert
    torch.manual_seed(fb.seed)

    # ---------------------------------------------------------------- data
    vocab_path = resolve_path(opts.vocab_path)
    vocab = Vocab.load(vocab_path)
    label2id = read_label2id(opts.label2id_path)
    id2label = [t for t, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    train_full = read_ner_tsv(opts.train_path, label2id, opts.skip_malformed)
    train = subsample(train_full, opts.train_samples, fb.seed)
    dev_full = read_ner_tsv(opts.dev_path, label2id, opts.skip_malformed)
    dev = subsample(dev_full, opts.dev_samples, fb.seed + 1)
    test_full = read_ner_tsv(opts.test_path, label2id, opts.skip_malformed) if opts.test_path else None
    test = subsample(test_full, opts.test_samples, fb.seed + 2) if test_full is not None else None
    skipped = {d.path: {"rows": len(d.skipped), "first": [f"line {n}: {r}" for n, r in d.skipped[:5]]}
               for d in (train_full, dev_full, test_full) if d is not None}
    for path, info in skipped.items():
        if info["rows"]:
            say(f"skipped {info['rows']} malformed rows in {path} (e.g. {info['first'][0]})")
    say(f"tags: {id2label}; train {len(train.chars)} sentences"
        + (f" (a seeded subsample of {len(train_full.chars)})" if train is not train_full else "")
        + f", dev {len(dev.chars)} of {len(dev_full.chars)}" + (f", test {len(test.chars)} of {len(test_full.chars)}" if test else ""))
    seq = fb.seq_length
    train_chunks = encode_sentences(vocab, train.chars, train.tag_ids(label2id), seq)
    dev_chunks = encode_sentences(vocab, dev.chars, dev.tag_ids(label2id), seq)
    unk = sum(r.count(vocab.unk_id) for r in train_chunks.ids)
    say(f"train: {len(train_chunks)} rows of at most {seq} tokens; {unk} [UNK] characters")

    # the files at the output must be this run's (resume) or none: checked before anything is written
    def fixed(epochs: int, lr: float, rows: Chunks) -> dict[str, Any]:
        return {"config": {**to_dict(config), "source": None}, "epochs": epochs, "batch_size": fb.batch_size,
                "learning_rate": lr, "seed": fb.seed, "train": fingerprint(rows), "dev": fingerprint(dev_chunks)}

    stages = {1: fixed(fb.epochs_num, fb.learning_rate, train_chunks)}
    if fb.distill_epochs_num > 0:  # stage 2 trains on the rows without their tags
        stages[2] = fixed(fb.distill_epochs_num, fb.distill_learning_rate, unlabelled(train_chunks))
    check_ownership(Outputs(out_model), config, vocab_path, stages)

    # ---------------------------------------------------------------- model
    model = build_model(config, vocab_size=len(vocab), labels_num=len(id2label))
    if opts.pretrained_model_path:
        keys = load_backbone(model, resolve_path(opts.pretrained_model_path), config.source)
        say(f"backbone loaded from {opts.pretrained_model_path}; fresh: {len(keys['fresh'])} token_exit tensors; "
            f"ignored: {len(keys['ignored'])} tensors of the checkpoint's own targets")
    else:
        say("no --pretrained_model_path: the backbone starts from random weights")
    model.to(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    if resolve_path(vocab_path).resolve() != (out_dir / f"{stem}.vocab.txt").resolve():
        with atomic_open(out_dir / f"{stem}.vocab.txt") as f:
            f.write(Path(vocab_path).read_text(encoding="utf-8"))
    with atomic_open(out_dir / f"{stem}.config.yaml") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False, allow_unicode=True)
    extra = {"id2label": id2label, "vocab_size": len(vocab), "seq_length": seq, "vocab_file": f"{stem}.vocab.txt"}

    def stage(n: int, epochs: int, lr: float) -> StageOptions:
        return StageOptions(epochs=epochs, batch_size=fb.batch_size, learning_rate=lr, warmup=fb.warmup,
                            weight_decay=fb.weight_decay, seed=fb.seed, report_steps=fb.report_steps,
                            checkpoint_path=str(out_dir / f"{stem}.stage{n}.pt"), best_path=str(out_dir / f"{stem}.stage{n}_best.pt"),
                            metrics_path=str(out_dir / f"{stem}.stage{n}.jsonl"), progress=opts.progress,
                            device=str(device), precision=opts.precision)

    t0 = time.perf_counter()
    s1 = finetune(model, config, train_chunks, dev_chunks, dev.tags, id2label, vocab.pad_id, stage(1, fb.epochs_num, fb.learning_rate), extra)
    say(f"stage 1: best dev entity F1 {s1['best']:.4f} (epoch {s1['best_epoch']}), {time.perf_counter() - t0:.0f}s")
    s2 = None
    if fb.distill_epochs_num > 0 and model.encoder.layers_num > 1:
        t0 = time.perf_counter()
        s2 = distill(model, config, train_chunks, dev_chunks, dev.tags, id2label, vocab.pad_id,
                     stage(2, fb.distill_epochs_num, fb.distill_learning_rate), extra)
        say(f"stage 2: best dev distillation loss {s2['best']:.4f} per student (epoch {s2['best_epoch']}), {time.perf_counter() - t0:.0f}s")
    save_checkpoint(out_model, model, config, **extra, stage1=s1, stage2=s2)
    say(f"model saved to {out_model}")

    report: dict[str, Any] = {"tags": id2label, "skipped_rows": skipped, "train_sentences": len(train.chars),
                              "train_sentences_available": len(train_full.chars), "dev_sentences": len(dev.chars),
                              "stage1": s1, "stage2": s2, "window": opts.window}
    if test is not None:
        test_chunks = encode_sentences(vocab, test.chars, test.tag_ids(label2id), seq)
        runner = TokenExit(model, runtime=opts.runtime)
        say(f"inference runtime: {runner.name} ({runner.reason})")
        result = sweep(runner, test_chunks, test.tags, id2label, vocab.pad_id, opts.speeds, window=opts.window,
                       timing_samples=opts.timing_samples, batch_size=opts.timing_batch_size)
        teacher = result["teacher"]
        rows = result["rows"]
        report.update({
            "teacher_f1": teacher["f1"], "teacher_precision": teacher["precision"], "teacher_recall": teacher["recall"],
            "test_sentences": len(test.chars), "rows": rows, "full_flops_per_sentence": result["full_flops_per_sentence"],
            "timing_samples": result["timing_samples"], "timing_batch_size": opts.timing_batch_size,
            "wall_seconds": result["wall_seconds"], "device": str(device), "threads": torch.get_num_threads(),
            "chosen": chosen_speed(rows, teacher["f1"]), "runtime": runner.name, "runtime_reason": runner.reason,
        })
        tag = "" if opts.window == 0 else f".window{opts.window}"  # sweeps of other windows keep their own files
        pred_dir = out_dir / f"{stem}{tag}.predictions"
        write_predictions(pred_dir / "full_model.tsv", test.chars, result["teacher_tags"])
        for speed, tags in zip(opts.speeds, result["predictions"]):
            write_predictions(pred_dir / f"speed_{speed:.2f}.tsv", test.chars, tags)
        report["predictions"] = str(pred_dir)
        say(format_table(rows, teacher["f1"]))
        chosen = report["chosen"]
        if chosen is not None:
            say(f"largest speed within 1 F1 point of the full model: {chosen['speed']:g} "
                f"(F1 {chosen['f1']:.4f}, FLOPs x{chosen['flops_speedup']:.2f})")
        if opts.plot and len(rows) > 1:
            plot = out_dir / f"{stem}{tag}.tradeoff.png"
            if plot_tradeoff(plot, rows, teacher["f1"]):
                report["plot"] = str(plot)
    report["seconds"] = time.perf_counter() - started
    report_path = Path(opts.report_path) if opts.report_path else out_dir / f"{stem}.report.json"
    from uer.fastbert.report import write_json

    write_json(report_path, report)
    say(f"report written to {report_path} ({report['seconds']:.0f}s in all)")
    return report


def plot_tradeoff(path: Path, rows, teacher_f1: float) -> bool:
    """Entity F1 against speed-up; False (and a warning) when matplotlib is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        print("warning: matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    from uer.fastbert.report import plot_tradeoff as plot

    plot(path, rows, teacher_f1, title="token-level early exit", metric="f1", reference_label="full model")
    return True
