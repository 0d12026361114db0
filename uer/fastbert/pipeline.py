"""What ``run_fastbert.py`` does: the shared early-exit run (:mod:`uer.exit.pipeline`) on TSV
sentences (``label<TAB>text_a[<TAB>text_b]``) with the ``fastbert`` target.

Sentence-level pieces only: reading and encoding the TSVs, PABEE's joint branch training, the
accuracy sweep, its per-speed predictions and an int8 sweep beside fp32 (with the verdict
whether int8 is worth using on this CPU).

The target's ``task`` (``--task``) says what the label column holds: one label (classification),
a comma-separated set (multi_label, scored by micro-F1) or a number (regression, scored by
Pearson's r; the model learns the targets standardised by the training rows' mean and std, which
the model file keeps as ``target_scale``).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uer.config import Config, ConfigError
from uer.data.tsv import TsvData, read_tsv
from uer.exit import pipeline as run_
from uer.exit.pipeline import Outputs, RunOptions, UsageError
from uer.choices import EXIT_PLANS
from uer.exit.pays import ExitPlan
from uer.exit.report import plot_tradeoff
from uer.exit.sweep import chosen_speed
from uer.fastbert.data import Encoded, encode_tsv, target_scale
from uer.fastbert.evaluate import plan_exits, sweep
from uer.fastbert.inference import EarlyExit
from uer.fastbert.report import (SCORE, format_table, int8_verdict, write_multi_label_predictions, write_predictions,
                                 write_regression_predictions)
from uer.exit.training import FINETUNE
from uer.fastbert.training import BRANCH_TRAININGS, JOINT, distill, finetune, fingerprint, needs_distillation, unlabelled
from uer.model_builder import build_model
from uer.utils.cli import input_file, on_interrupt, set_deterministic

SECTION = "fastbert"  # the config section with the training hyper-parameters
DEFAULT_POLICY = {"classification": "entropy", "multi_label": "multi_label_entropy", "regression": "regression_patience"}


def task_of(config: Config) -> str:
    """What the fastbert target predicts (``target.task``)."""
    return config.target.components[0].cfg.task


@dataclass(frozen=True)
class FastBertOptions(RunOptions):
    """``run_fastbert.py``'s own options beside the shared ones."""

    distill_path: str | None = None  # texts for stage 2 (default: the training texts)
    branch_training: str = "distill"  # distill: stage 2 self-distils the students; joint: see training.py
    exit_plan: str = "pays"  # pays: early exit only where it is faster than the full model (uer.exit.pays); always


def _is_our_report(data: dict) -> bool:
    return "labels_num" in data


@dataclass(frozen=True)
class Tables:
    """The TSV files as read (``*_full``) and as used (seeded subsamples)."""

    train_full: TsvData
    train: TsvData
    dev_full: TsvData
    dev: TsvData
    test: TsvData | None
    distill: TsvData | None


def _subset(data: TsvData, n: int, seed: int) -> TsvData:
    rows = run_.subsample(len(data.examples), n, seed)
    if rows is None:
        return data
    return dataclasses.replace(data, examples=[data.examples[i] for i in rows])


def read_tables(opts: FastBertOptions, seed: int, paths: dict[str, Path], task: str = "classification") -> Tables:
    train_full = read_tsv(paths["--train_path"], skip_malformed=opts.skip_malformed, task=task)
    labels = train_full.labels if task != "regression" else None
    dev_full = read_tsv(paths["--dev_path"], labels=labels, skip_malformed=opts.skip_malformed, task=task)
    test = read_tsv(paths["--test_path"], labels=labels, skip_malformed=opts.skip_malformed, task=task) if opts.test_path else None
    distill = read_tsv(paths["--distill_path"], labelled=False, skip_malformed=opts.skip_malformed) if opts.distill_path else None
    return Tables(train_full=train_full, train=_subset(train_full, opts.train_samples, seed),
                  dev_full=dev_full, dev=_subset(dev_full, opts.dev_samples, seed + 1),
                  test=None if test is None else _subset(test, opts.test_samples, seed + 2), distill=distill)


def run(opts: FastBertOptions) -> dict[str, Any]:
    from uer.tokenizers import build_tokenizer

    started = time.perf_counter()
    on_interrupt("interrupted before training began; nothing of this run was written yet")
    if opts.exit_plan not in EXIT_PLANS:
        raise UsageError(f"--exit_plan {opts.exit_plan!r}: expected one of {', '.join(EXIT_PLANS)}")
    if opts.branch_training not in BRANCH_TRAININGS:
        raise UsageError(f"--branch_training {opts.branch_training!r}: expected one of {', '.join(BRANCH_TRAININGS)}")
    paths = {flag: input_file(path, flag) for flag, path in (
        ("--train_path", opts.train_path), ("--dev_path", opts.dev_path), ("--test_path", opts.test_path),
        ("--distill_path", opts.distill_path), ("--config_path", opts.config_path),
        ("--pretrained_model_path", opts.pretrained_model_path), ("--vocab_path", opts.vocab_path)) if path}
    config = run_.resolve_config(opts, "fastbert", SECTION)
    task = task_of(config)
    run_.check_options(opts, task)
    if task != "classification" and opts.branch_training == "joint":
        raise UsageError(f"--branch_training joint is for classification; --task {task} self-distils (--branch_training distill)")
    opts, device = run_.start(opts)
    run_.check_config(config, opts, SECTION)
    if not (opts.vocab_path or config.tokenizer.vocab_path):
        raise ConfigError(f"{config.source}: no vocabulary: give --vocab_path (or tokenizer.vocab_path in the config)")
    vocab_path = paths.get("--vocab_path") or input_file(config.tokenizer.vocab_path, f"{config.source}: tokenizer.vocab_path")
    out = Outputs(Path(opts.output_model_path))
    report_path = run_.check_outputs(opts, out, {**paths, "vocabulary": vocab_path}, _is_our_report, "run_fastbert.py")
    tables = read_tables(opts, config.fastbert.seed, paths, task)  # a TsvError: nothing written yet
    try:
        tokenizer = build_tokenizer(config.tokenizer, vocab_path=vocab_path)
    except (ValueError, OSError) as exc:  # the vocabulary's own message names file:line
        raise UsageError(f"vocabulary {vocab_path}: {exc}") from None
    set_deterministic(opts.deterministic)
    torch.manual_seed(config.fastbert.seed)
    with run_.claim(out, report_path):
        return _run_locked(opts, config, device, out, report_path, vocab_path, tokenizer, tables, started)


def _run_locked(opts: FastBertOptions, config: Config, device: torch.device, out: Outputs, report_path: Path,
                vocab_path: Path, tokenizer, tables: Tables, started: float) -> dict[str, Any]:
    fb, log, task = config.fastbert, opts.log, task_of(config)
    # ---------------------------------------------------------------- data (read only)
    vocab = tokenizer.vocab
    train_full, train, dev_full, dev, test = tables.train_full, tables.train, tables.dev_full, tables.dev, tables.test
    labels = train_full.labels
    skipped = {d.path: {"rows": len(d.skipped), "first": [f"line {n}: {r}" for n, r in d.skipped[:5]]}
               for d in (train_full, dev_full, test, tables.distill) if d is not None}
    for path, info in skipped.items():
        if info["rows"]:
            log(f"skipped {info['rows']} malformed rows in {path} (e.g. {info['first'][0]})")
    scale = target_scale([e.value for e in train.examples]) if task == "regression" else None
    log((f"{task}: labels {list(labels)}" if task != "regression" else
         f"regression: targets standardised by the training rows' mean {scale[0]:.6g} and std {scale[1]:.6g}")
        + f"; train {len(train.examples)} rows"
        + (f" (a seeded subsample of {len(train_full.examples)})" if train is not train_full else "")
        + f", dev {len(dev.examples)}" + (f" (a seeded subsample of {len(dev_full.examples)})" if dev is not dev_full else "")
        + (f", test {len(test.examples)}" if test else ""))
    seq = fb.seq_length  # <= the position table (check_config): every row is truncated to it
    train_enc, dev_enc = encode_tsv(tokenizer, train, seq, scale=scale), encode_tsv(tokenizer, dev, seq, scale=scale)
    distill_enc = unlabelled(encode_tsv(tokenizer, tables.distill, seq, labelled=False) if tables.distill else train_enc)
    test_enc = encode_tsv(tokenizer, test, seq, scale=scale) if test is not None else None
    labels_num = 1 if task == "regression" else len(labels)  # regression: one output
    model = build_model(config, vocab_size=len(vocab), labels_num=labels_num, vocab_tokens=vocab.tokens)
    distills = fb.distill_epochs_num > 0 and needs_distillation(opts.branch_training) and model.encoder.layers_num > 1

    # ---------------------------------------------------------------- is the output ours? then the model
    resume = run_.prepare(opts, config, SECTION, model, out, vocab_path,
                          (fingerprint(train_enc), fingerprint(distill_enc), fingerprint(dev_enc)), distills, device,
                          JOINT if opts.branch_training == "joint" else FINETUNE)
    extra = {"labels": list(labels), "labels_num": labels_num, "pair": train_full.pair, "vocab_size": len(vocab),
             "seq_length": seq, "vocab_file": out.vocab.name, "exit_policy": opts.exit_policy,
             "branch_training": opts.branch_training, "task": task,
             "target_scale": None if scale is None else {"mean": scale[0], "std": scale[1]}}
    pad_id = vocab.pad_id

    trained = run_.train_and_save(
        opts, config, SECTION, out, resume, device, model, extra,
        lambda so: finetune(model, config, train_enc, dev_enc, pad_id, so, extra, opts.branch_training),
        (lambda so: distill(model, config, distill_enc, dev_enc, pad_id, so, extra, opts.branch_training)) if distills else None,
        "joint accuracy" if opts.branch_training == "joint" else SCORE[task])
    if trained is None:
        return {}
    stage1, stage2 = trained

    # ---------------------------------------------------------------- speeds
    report: dict[str, Any] = {"task": task, "labels_num": labels_num, "labels": list(labels), "skipped_rows": skipped,
                              "train_rows": len(train.examples), "train_rows_available": len(train_full.examples),
                              "dev_rows": len(dev.examples), "dev_rows_available": len(dev_full.examples),
                              "stage1": run_.brief(stage1), "stage2": run_.brief(stage2),
                              "exit_policy": opts.exit_policy, "branch_training": opts.branch_training,
                              "target_scale": extra["target_scale"]}
    plot = None
    runner = EarlyExit(model, runtime=opts.runtime)
    log(f"inference runtime: {runner.name} ({runner.reason})")
    if opts.exit_plan == "pays":  # early exit only where it pays, decided once on the dev set and kept
        exit_plan = plan_exits(runner, dev_enc, pad_id, opts.exit_policy)
        extra["exit_plan"] = report["exit_plan"] = exit_plan.as_dict()
        log("exit plan: " + exit_plan.decide(exit_plan.from_speed if exit_plan.from_speed is not None else 1.0).reason)
    if test_enc is None:
        run_.record_choice(out.model, model, config, extra, None)  # the plan, with no chosen speed
    else:
        result = sweep(runner, test_enc, pad_id, opts.speeds, timing_samples=opts.timing_samples,
                       measure=opts.timing_samples > 0, batch_size=opts.timing_batch_size, policy=opts.exit_policy,
                       scale=scale or (0.0, 1.0))
        score = SCORE[task]  # accuracy | micro_f1 | pearson: the chosen speed keeps it within 1 point
        rows, teacher_acc = result["rows"], result["teacher"][score]
        chosen = chosen_speed(rows, teacher_acc, score)
        report.update({
            "test_rows": len(test.examples), **teacher_keys(result["teacher"]), "rows": rows,
            "full_flops_per_sample": result["full_flops_per_sample"], "wall_seconds": result["wall_seconds"],
            "timing_samples": result["timing_samples"], "timing_batch_size": opts.timing_batch_size,
            "inference_backend": result["backend"], "inference_reason": runner.reason,
            "device": str(device), "threads": torch.get_num_threads(), "chosen": chosen,
        })
        written = []
        for speed, exits in zip(opts.speeds, result["exits"]):
            path = out.predictions / f"speed_{speed:.2f}.tsv"
            if task == "multi_label":
                write_multi_label_predictions(path, labels, exits.probs, exits.exit_layer)
            elif task == "regression":
                write_regression_predictions(path, exits.probs[:, 0].double() * scale[1] + scale[0], exits.exit_layer)
            else:
                write_predictions(path, labels, exits.probs, exits.exit_layer)
            written.append(path.name)
        run_.write_predictions_folder(out.predictions, written)
        report["predictions"] = str(out.predictions)
        log(format_table(rows, teacher_acc, task))
        if chosen is not None:
            flops = f"{chosen['flops_speedup']:.2f}" if chosen["flops_speedup"] is not None else "-"
            log(f"largest speed within 1 point of the teacher: {chosen['speed']:g} "
                f"({score} {chosen[score]:.4f}, FLOPs x{flops})")
        run_.record_choice(out.model, model, config, extra, chosen)
        if opts.quantize is not None:
            report["int8"] = quantized_sweep(model, test_enc, pad_id, opts, teacher_acc, task, scale or (0.0, 1.0),
                                             fp32_walls=result["wall_seconds"], exit_plan=runner.exit_plan)
        if opts.plot and len(rows) > 1:
            plot = lambda: plot_tradeoff(out.plot, rows, teacher_acc, "FastBERT", score, "teacher")  # noqa: E731
    report["seconds"] = time.perf_counter() - started
    run_.write_report(report_path, report, plot, log)
    return report


def teacher_keys(teacher: dict[str, Any]) -> dict[str, Any]:
    """The full model's scores as the report names them: ``teacher_accuracy``, ``teacher_micro_f1``,
    ``teacher_pearson`` ... (the confusion matrix of a classifier as ``teacher_confusion_matrix``)."""
    return {f"teacher_{k}": v for k, v in teacher.items()}


def quantized_sweep(model, test_enc: Encoded, pad_id: int, opts: FastBertOptions, fp32_teacher: float,
                    task: str = "classification", scale: tuple[float, float] = (0.0, 1.0),
                    fp32_walls: dict[str, dict[str, float]] | None = None, exit_plan: ExitPlan | None = None
                    ) -> dict[str, Any]:
    """The same sweep with int8 weights: the task's score of the int8 teacher and of every speed, beside fp32,
    and whether int8 should be used at all (``verdict``, :func:`uer.fastbert.report.int8_verdict`).

    ``chosen``: the largest speed within 1 point of the *fp32* teacher; ``fp32_walls``: the fp32
    sweep's ``wall_seconds`` of this run, which int8's are compared with. int8 runs on the
    ``onnxruntime`` runtime whatever ``--runtime`` says (``auto`` could keep fp32 where int8 is
    slower, and this sweep measures int8 itself), with the scheme chosen for this CPU
    (``uer.runtime.cpu``), which the report records with the CPU it was read from. ``exit_plan``:
    the fp32 run's, which a model loaded with int8 weights uses too (it is what the checkpoint keeps)."""
    from uer.runtime.cpu import cpu_features

    log = opts.log
    runner = EarlyExit(model, runtime="onnxruntime", quantize=opts.quantize, plan=exit_plan)
    log(f"{opts.quantize} runtime: {runner.name} ({runner.reason})")
    result = sweep(runner, test_enc, pad_id, opts.speeds, timing_samples=opts.timing_samples, measure=opts.timing_samples > 0,
                   batch_size=opts.timing_batch_size, policy=opts.exit_policy, scale=scale)
    score = SCORE[task]
    teacher = result["teacher"][score]
    log(f"{opts.quantize}:")
    log(format_table(result["rows"], teacher, task))
    chosen = chosen_speed(result["rows"], fp32_teacher, score)
    if chosen is not None:
        log(f"{opts.quantize}: largest speed within 1 point of the fp32 teacher: {chosen['speed']:g} "
            f"({score} {chosen[score]:.4f})")
    verdict = int8_verdict(chosen, result["wall_seconds"], fp32_walls or {}, fp32_teacher, score)
    log(f"{opts.quantize}: keep {verdict['keep']}: {verdict['why']}")
    return {"quantize": opts.quantize, **{k: v for k, v in teacher_keys(result["teacher"]).items()
                                          if k != "teacher_confusion_matrix"},
            "rows": result["rows"], "inference_backend": runner.name, "inference_reason": runner.reason,
            "scheme": runner.runtime.scheme.as_dict(), "cpu": cpu_features().summary(),
            "wall_seconds": result["wall_seconds"], "chosen_vs_fp32_teacher": chosen, "verdict": verdict}
