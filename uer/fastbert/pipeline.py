"""What ``run_fastbert.py`` does, step by step: check -> data -> model -> stage 1 -> stage 2 -> speed sweep.

Every output lies beside ``output_model_path`` (``<dir>/<stem>.*``): the resolved config, the
vocabulary, each stage's resume state and best weights, metrics, the report, the plot and the
predictions. Running the same command again resumes where it stopped.

Nothing is written before the whole run has been checked: every option, every path, and whether
the files already at the output belong to this run (resume) or to another one (refused, with
every file of that run left as it was). Only then are files written, so no run trains for an hour
and then fails to save what it learnt.
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from uer.checkpoint import read_checkpoint, save_checkpoint
from uer.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, to_dict
from uer.data.tsv import TsvData, read_tsv
from uer.fastbert.build import build_fastbert, fastbert_config, load_backbone, position_limit
from uer.fastbert.data import Encoded, encode_tsv
from uer.fastbert.evaluate import chosen_speed, policy_names, sweep
from uer.fastbert.inference import EarlyExit, fastbert_target
from uer.fastbert.report import format_table, plot_tradeoff, write_json, write_predictions
from uer.fastbert.training import StageOptions, distill, fingerprint, finetune, needs_distillation
from uer.utils.atomic import atomic_open
from uer.utils.cli import OutputLock, UsageError, input_file, on_interrupt, output_file, set_deterministic
from uer.utils.device import resolve_device
from uer.utils.paths import resolve_path

BRANCH_TRAININGS = ("distill", "joint")
MIN_SEQ_LENGTH = 4  # [CLS] a [SEP] plus one token of text_b for pairs (uer.fastbert.data.encode_texts)
PREDICTIONS_FILE = re.compile(r"speed_\d+\.\d\d\.tsv")  # what write_predictions is given below


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
    fused: bool = True  # False: the eager modules at inference (the reference; same results, slower)
    runtime: str = "auto"  # the exit steps' engine (uer.runtime.runtime_names); "auto" measures at load
    quantize: str | None = None  # "int8": a second sweep with int8 weights, reported beside fp32
    progress: bool = True
    config_overrides: tuple[tuple[str, Any], ...] = ()  # ("fastbert.epochs_num", 2), ("target.branch_size", 64) ...
    device: str | None = None  # None: cuda if available; batches are built on the CPU and moved
    precision: str = "fp32"  # training only (autocast); inference runs in fp32
    exit_policy: str = "entropy"  # which rule decides that a sample leaves (uer.fastbert.evaluate.policy_names)
    branch_training: str = "distill"  # distill: stage 2 self-distils the students; joint: see training.py
    deterministic: bool = False  # uer.utils.cli.set_deterministic


@dataclass(frozen=True)
class Outputs:
    """The files of one run, all named after the model's stem."""

    model: Path

    def beside(self, suffix: str) -> Path:
        return self.model.parent / f"{self.model.stem}{suffix}"

    @property
    def vocab(self) -> Path:
        return self.beside(".vocab.txt")

    @property
    def config(self) -> Path:
        return self.beside(".config.yaml")

    @property
    def predictions(self) -> Path:
        return self.beside(".predictions")

    @property
    def plot(self) -> Path:
        return self.beside(".tradeoff.png")

    def stage(self, n: int) -> Path:
        return self.beside(f".stage{n}.pt")

    def stage_best(self, n: int) -> Path:
        return self.beside(f".stage{n}_best.pt")

    def metrics(self, n: int) -> Path:
        return self.beside(f".stage{n}.jsonl")

    def files(self) -> list[Path]:
        return [self.model, self.vocab, self.config, self.plot,
                *(p for n in (1, 2) for p in (self.stage(n), self.stage_best(n), self.metrics(n)))]


def say(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# checks: everything that can be known before the first write


def resolve_config(opts: RunOptions) -> Config:
    """Backbone config (YAML, else the pre-trained checkpoint's) with the fastbert target and overrides."""
    target_overrides = {k.split(".", 1)[1]: v for k, v in opts.config_overrides if k.startswith("target.")}
    other = {k: v for k, v in opts.config_overrides if not k.startswith("target.")}
    if opts.config_path:
        base = load_config(input_file(opts.config_path, "--config_path"), other)
    elif opts.pretrained_model_path:
        path = input_file(opts.pretrained_model_path, "--pretrained_model_path")
        state = read_checkpoint(path)
        base = config_from_dict(apply_overrides(state["config"], other), f"{path} (config)")
    else:
        raise UsageError("no model: give --config_path (or --pretrained_model_path, whose config is then used)")
    return fastbert_config(base, **target_overrides)


def check_config(config: Config, opts: RunOptions) -> None:
    """Values that come from the config (or a flag that overrides it) and would fail mid-run.

    A flag's own range is checked by argparse; a value written in the YAML is checked here, and
    so are the combinations (branch heads vs width, seq_length vs the position table)."""
    given = dict(opts.config_overrides)

    def name(section: str, key: str) -> str:
        return f"--{key}" if f"{section}.{key}" in given else f"{config.source}: {section}.{key}"

    fb = config.fastbert
    for key, low in (("epochs_num", 1), ("distill_epochs_num", 0), ("batch_size", 1), ("report_steps", 1)):
        if getattr(fb, key) < low:
            raise UsageError(f"{name('fastbert', key)} is {getattr(fb, key)}; expected an integer >= {low}")
    for key in ("learning_rate", "distill_learning_rate"):
        if not getattr(fb, key) > 0:
            raise UsageError(f"{name('fastbert', key)} is {getattr(fb, key)}; expected a number > 0")
    if fb.seq_length < MIN_SEQ_LENGTH:
        raise UsageError(f"{name('fastbert', 'seq_length')} is {fb.seq_length}; [CLS] text [SEP] needs at least {MIN_SEQ_LENGTH}")
    limit = position_limit(config)
    if limit is not None and fb.seq_length > limit:
        raise UsageError(f"{name('fastbert', 'seq_length')} is {fb.seq_length}, longer than the position table of "
                         f"{config.source} (max_seq_length {limit})")
    target = config.target.components[0].cfg
    if target.branch_size < 1 or target.branch_heads_num < 1:
        raise UsageError(f"{name('target', 'branch_size')} {target.branch_size} and {name('target', 'branch_heads_num')} "
                         f"{target.branch_heads_num} must be >= 1")
    if target.branch_size % target.branch_heads_num:
        raise UsageError(f"{name('target', 'branch_heads_num')} {target.branch_heads_num} does not divide "
                         f"{name('target', 'branch_size')} {target.branch_size} (each head gets branch_size / branch_heads_num)")


def check_options(opts: RunOptions) -> None:
    if opts.quantize is not None:
        from uer.runtime.onnxrt import available

        missing = available()
        if missing is not None:  # before hours of training, not after
            raise UsageError(f"--quantize {opts.quantize}: {missing}")
    if not opts.speeds:
        raise UsageError("--speed: no speed given")
    if len(set(opts.speeds)) != len(opts.speeds):
        raise UsageError(f"--speed {','.join(f'{s:g}' for s in opts.speeds)}: a speed is listed twice")
    if opts.exit_policy not in policy_names():
        raise UsageError(f"--exit_policy {opts.exit_policy!r}: expected one of {', '.join(policy_names())}")
    if opts.branch_training not in BRANCH_TRAININGS:
        raise UsageError(f"--branch_training {opts.branch_training!r}: expected one of {', '.join(BRANCH_TRAININGS)}")
    branch_training_kwargs(opts.branch_training)  # refuses what this build cannot train yet
    for value, flag in ((opts.timing_samples, "--timing_samples"), (opts.timing_batch_size, "--timing_batch_size")):
        if value < 1:
            raise UsageError(f"{flag} {value}: expected an integer >= 1")
    for value, flag in ((opts.train_samples, "--train_samples"), (opts.dev_samples, "--dev_samples")):
        if value < 0:
            raise UsageError(f"{flag} {value}: expected an integer >= 0 (0: all rows)")


def branch_training_kwargs(mode: str) -> dict[str, str]:
    """What the stage functions of ``uer.fastbert.training`` are given for ``--branch_training``.

    Both modes are implemented there (``distill``: FastBERT's two stages; ``joint``: PABEE's one)."""
    return {"branch_training": mode}


def check_outputs(opts: RunOptions) -> tuple[Outputs, Path]:
    """Output paths that can be written: not directories, not under a file, no trailing '/'."""
    out = Outputs(output_file(opts.output_model_path, "--output_model_path"))
    for path in out.files():
        output_file(path, f"--output_model_path {opts.output_model_path}: output")
    if out.predictions.exists() and not out.predictions.is_dir():
        raise UsageError(f"--output_model_path {opts.output_model_path}: {out.predictions} is a file, expected the predictions folder")
    report = output_file(opts.report_path, "--report_path") if opts.report_path else out.beside(".report.json")
    if report.resolve() in {p.resolve() for p in out.files()}:
        raise UsageError(f"--report_path {report} is one of the run's own files")
    if report.is_file() and not _is_our_report(report):
        raise UsageError(f"--report_path {report} exists and is not a run_fastbert.py report; choose another path or remove it")
    return out, report


def _is_our_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "labels_num" in data and "stage1" in data


def make_writable(path: Path, flag: str) -> None:
    """Create ``path``'s folder and prove a file can be written there (root ignores permission bits)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {path.parent} ({exc.strerror or exc})") from None


def _config_text(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def _without_source(data: Any) -> Any:
    return {k: v for k, v in data.items() if k != "source"} if isinstance(data, dict) else data


def _differences(theirs: dict, ours: dict) -> list[str]:
    """``section.key`` names that differ between two config dicts (sections if not both mappings)."""
    out = []
    for section in sorted({*theirs, *ours} - {"source"}):
        a, b = theirs.get(section), ours.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{section}.{k}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        else:
            out.append(section)
    return out


def check_ownership(out: Outputs, config: Config, vocab_path: Path, stages: dict[int, dict[str, Any]],
                    branch_training: str = "distill") -> dict[int, int]:
    """Do the files at the output belong to this run? Returns ``{stage: step}`` to resume from;
    a file of another run is a UsageError, raised before anything has been written.

    ``stages``: for each stage, the parts of its trainer signature that this run fixes."""
    where = f"--output_model_path {out.model}"
    advice = "choose another --output_model_path, or remove that run's files to start over"
    if out.vocab.is_file() and out.vocab.read_bytes() != vocab_path.read_bytes():
        raise UsageError(f"{where}: {out.vocab} is another run's vocabulary (not {vocab_path}); {advice}")
    if out.config.is_file():
        try:
            theirs = yaml.safe_load(out.config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError):
            theirs = None
        ours = _without_source(to_dict(config))
        if _without_source(theirs) != ours:
            differs = _differences(theirs, ours) if isinstance(theirs, dict) else ["(not a config)"]
            raise UsageError(f"{where}: {out.config} is another run's config (it differs in: {', '.join(differs)}); {advice}")
    resume: dict[int, int] = {}
    for n, expected in stages.items():
        path = out.stage(n)
        if not path.is_file():
            continue
        state = read_checkpoint(path)["extra"].get("trainer")
        if state is None:
            raise UsageError(f"{where}: {path} holds no training state (written by another command?); {advice}")
        saved = state.get("signature") or {}
        differs = sorted(k for k, v in expected.items() if saved.get(k) != v)
        if "branch_training" in saved and saved["branch_training"] != branch_training:  # recorded once training.py has it
            differs.append("branch_training")
        if differs:
            raise UsageError(f"{where}: {path} holds the resume state of a different run (it differs in: "
                             f"{', '.join(differs)}); {advice}")
        resume[n] = state["step"]
    if out.model.exists() and 1 not in resume:
        raise UsageError(f"{where} exists and is not a run this command can resume (no {out.stage(1).name} of this "
                         f"run beside it); choose another --output_model_path or remove it")
    return resume


def subsample(data: TsvData, n: int, seed: int) -> TsvData:
    if not n or n >= len(data.examples):
        return data
    rows = random.Random(seed).sample(range(len(data.examples)), n)
    return TsvData(data.path, [data.examples[i] for i in sorted(rows)], data.labels, data.pair, data.skipped)


# ---------------------------------------------------------------------------------------------
# the run


def run(opts: RunOptions) -> dict[str, Any]:
    from uer.tokenizers import build_tokenizer

    started = time.perf_counter()
    on_interrupt("interrupted before training began; nothing of this run was written yet")
    check_options(opts)
    device = resolve_device(opts.device, opts.precision)
    out, report_path = check_outputs(opts)
    train_path = input_file(opts.train_path, "--train_path")
    dev_path = input_file(opts.dev_path, "--dev_path")
    test_path = input_file(opts.test_path, "--test_path") if opts.test_path else None
    distill_path = input_file(opts.distill_path, "--distill_path") if opts.distill_path else None
    if opts.pretrained_model_path:
        input_file(opts.pretrained_model_path, "--pretrained_model_path")
    config = resolve_config(opts)
    check_config(config, opts)
    fb = config.fastbert
    if not (opts.vocab_path or config.tokenizer.vocab_path):
        raise ConfigError(f"{config.source}: no vocabulary: give --vocab_path (or tokenizer.vocab_path in the config)")
    vocab_path = input_file(opts.vocab_path or config.tokenizer.vocab_path, "--vocab_path" if opts.vocab_path else
                            f"{config.source}: tokenizer.vocab_path")
    tables = read_tables(opts, fb.seed, train_path, dev_path, test_path, distill_path)  # a TsvError: nothing written yet
    tokenizer = build_tokenizer(config.tokenizer, vocab_path=vocab_path)
    make_writable(out.model, "--output_model_path")
    make_writable(report_path, "--report_path")
    set_deterministic(opts.deterministic)
    torch.manual_seed(fb.seed)

    with OutputLock(out.model, "--output_model_path"):  # a second run into this output fails here, at once
        return _run_locked(opts, config, device, out, report_path, vocab_path, tokenizer, tables, started)


@dataclass(frozen=True)
class Tables:
    """The TSV files as read (``*_full``) and as used (seeded subsamples)."""

    train_full: TsvData
    train: TsvData
    dev_full: TsvData
    dev: TsvData
    test: TsvData | None
    distill: TsvData | None


def read_tables(opts: RunOptions, seed: int, train_path: Path, dev_path: Path, test_path: Path | None,
                distill_path: Path | None) -> Tables:
    train_full = read_tsv(train_path, skip_malformed=opts.skip_malformed)
    labels = train_full.labels
    dev_full = read_tsv(dev_path, labels=labels, skip_malformed=opts.skip_malformed)
    return Tables(
        train_full=train_full, train=subsample(train_full, opts.train_samples, seed),
        dev_full=dev_full, dev=subsample(dev_full, opts.dev_samples, seed + 1),
        test=read_tsv(test_path, labels=labels, skip_malformed=opts.skip_malformed) if test_path else None,
        distill=read_tsv(distill_path, labelled=False, skip_malformed=opts.skip_malformed) if distill_path else None,
    )


def _run_locked(opts: RunOptions, config: Config, device: torch.device, out: Outputs, report_path: Path, vocab_path: Path,
                tokenizer, tables: Tables, started: float) -> dict[str, Any]:
    fb = config.fastbert
    # ---------------------------------------------------------------- data (read only)
    vocab = tokenizer.vocab
    train_full, train, dev_full, dev = tables.train_full, tables.train, tables.dev_full, tables.dev
    test, distill_data = tables.test, tables.distill
    labels = train_full.labels
    skipped = {d.path: {"rows": len(d.skipped), "first": [f"line {n}: {r}" for n, r in d.skipped[:5]]}
               for d in (train_full, dev_full, test, distill_data) if d is not None}
    for path, info in skipped.items():
        if info["rows"]:
            say(f"skipped {info['rows']} malformed rows in {path} (e.g. {info['first'][0]})")
    say(f"labels: {list(labels)}; train {len(train.examples)} rows"
        + (f" (a seeded subsample of {len(train_full.examples)})" if train is not train_full else "")
        + f", dev {len(dev.examples)}" + (f" (a seeded subsample of {len(dev_full.examples)})" if dev is not dev_full else "")
        + (f", test {len(test.examples)}" if test else ""))
    seq = fb.seq_length  # <= the position table (check_config): every row is truncated to it
    train_enc, dev_enc = encode_tsv(tokenizer, train, seq), encode_tsv(tokenizer, dev, seq)
    distill_enc = encode_tsv(tokenizer, distill_data, seq, labelled=False) if distill_data else Encoded(train_enc.ids, train_enc.segs, None)
    test_enc = encode_tsv(tokenizer, test, seq) if test is not None else None

    # ---------------------------------------------------------------- is the output ours?
    def fixed(epochs: int, lr: float, texts: Encoded) -> dict[str, Any]:
        return {"config": {**to_dict(config), "source": None}, "epochs": epochs, "batch_size": fb.batch_size,
                "learning_rate": lr, "seed": fb.seed, "train": fingerprint(texts), "dev": fingerprint(dev_enc)}

    stages = {1: fixed(fb.epochs_num, fb.learning_rate, train_enc)}
    if fb.distill_epochs_num > 0:
        stages[2] = fixed(fb.distill_epochs_num, fb.distill_learning_rate, Encoded(distill_enc.ids, distill_enc.segs, None))
    resume = check_ownership(out, config, vocab_path, stages, opts.branch_training)

    # ---------------------------------------------------------------- model
    model = build_fastbert(config, vocab_size=len(vocab), labels_num=len(labels))
    if opts.pretrained_model_path:
        keys = load_backbone(model, resolve_path(opts.pretrained_model_path), config.source)
        say(f"backbone loaded from {opts.pretrained_model_path}; freshly initialised: "
            f"{len(keys['fresh'])} fastbert target tensors ({len(fastbert_target(model).branches)} branches); "
            f"ignored from the checkpoint: {len(keys['ignored'])} tensors of its own targets")
    else:
        say("no --pretrained_model_path: the backbone starts from random weights")
    model.to(device)

    # ---------------------------------------------------------------- first writes
    if not out.vocab.is_file():
        with atomic_open(out.vocab, "wb") as f:
            f.write(vocab_path.read_bytes())
    if not out.config.is_file():
        with atomic_open(out.config) as f:
            f.write(_config_text(config))
    extra = {"labels": list(labels), "labels_num": len(labels), "pair": train_full.pair, "vocab_size": len(vocab),
             "seq_length": seq, "vocab_file": out.vocab.name, "exit_policy": opts.exit_policy,
             "branch_training": opts.branch_training}
    pad_id = vocab.pad_id
    branch_kwargs = branch_training_kwargs(opts.branch_training)

    def stage(n: int, epochs: int, lr: float) -> StageOptions:
        if n in resume:
            say(f"resumed stage {n} at step {resume[n]} (from {out.stage(n)})")
        on_interrupt(f"interrupted in stage {n}; run the same command again to resume from its last checkpoint "
                     f"({out.stage(n)}, written at every epoch end)")
        return StageOptions(
            epochs=epochs, batch_size=fb.batch_size, learning_rate=lr, warmup=fb.warmup, weight_decay=fb.weight_decay,
            seed=fb.seed, report_steps=fb.report_steps, checkpoint_path=str(out.stage(n)),
            best_path=str(out.stage_best(n)), metrics_path=str(out.metrics(n)),
            progress=opts.progress, device=str(device), precision=opts.precision,
        )

    t0 = time.perf_counter()
    stage1 = finetune(model, config, train_enc, dev_enc, pad_id, stage(1, fb.epochs_num, fb.learning_rate), extra, **branch_kwargs)
    say(f"stage 1: best dev accuracy {stage1['best']:.4f} (epoch {stage1['best_epoch']}), {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    if fb.distill_epochs_num > 0 and needs_distillation(opts.branch_training):  # joint: one stage
        stage2 = distill(model, config, distill_enc, dev_enc, pad_id, stage(2, fb.distill_epochs_num, fb.distill_learning_rate),
                         extra, **branch_kwargs)
        say(f"stage 2: best dev distillation loss {stage2['best']:.4f} per student (epoch {stage2['best_epoch']}), "
            f"{time.perf_counter() - t0:.0f}s")
    else:
        stage2 = None
    on_interrupt(f"interrupted after training; run the same command again to redo the evaluation ({out.model} is saved)")
    save_checkpoint(out.model, model, config, **extra, stage1=_brief(stage1), stage2=_brief(stage2))
    say(f"model saved to {out.model}")

    # ---------------------------------------------------------------- speeds
    report: dict[str, Any] = {"labels_num": len(labels), "labels": list(labels), "skipped_rows": skipped,
                              "train_rows": len(train.examples), "train_rows_available": len(train_full.examples),
                              "dev_rows": len(dev.examples), "dev_rows_available": len(dev_full.examples),
                              "stage1": _brief(stage1), "stage2": _brief(stage2),
                              "exit_policy": opts.exit_policy, "branch_training": opts.branch_training}
    plot = None
    if test_enc is not None:
        runtime = opts.runtime if opts.fused else "eager"
        runner = EarlyExit(model, runtime=runtime)
        say(f"inference runtime: {runner.backend} ({runner.reason})")
        result = sweep(runner, test_enc, pad_id, opts.speeds, timing_samples=opts.timing_samples,
                       batch_size=opts.timing_batch_size, policy=opts.exit_policy)
        rows = result["rows"]
        teacher_acc = result["teacher"]["accuracy"]
        report.update({
            "teacher_accuracy": teacher_acc, "teacher_macro_f1": result["teacher"]["macro_f1"],
            "teacher_confusion_matrix": result["teacher"]["confusion_matrix"], "rows": rows,
            "full_flops_per_sample": result["full_flops_per_sample"], "wall_seconds": result["wall_seconds"],
            "timing_samples": result["timing_samples"], "timing_batch_size": opts.timing_batch_size,
            "inference_backend": result["backend"], "inference_reason": runner.reason,
            "device": str(device), "threads": torch.get_num_threads(),
            "chosen": chosen_speed(rows, teacher_acc),
        })
        written = set()
        for speed, exits in zip(opts.speeds, result["exits"]):
            path = out.predictions / f"speed_{speed:.2f}.tsv"
            write_predictions(path, labels, exits.probs, exits.exit_layer)
            written.add(path.name)
        for stale in sorted(out.predictions.iterdir()):  # an earlier run's speeds: not in this report
            if PREDICTIONS_FILE.fullmatch(stale.name) and stale.name not in written and stale.is_file():
                stale.unlink()
        report["predictions"] = str(out.predictions)
        say(format_table(rows, teacher_acc))
        chosen = report["chosen"]
        if chosen is not None:
            flops = f"{chosen['flops_speedup']:.2f}" if chosen["flops_speedup"] is not None else "-"
            say(f"largest speed within 1 point of the teacher: {chosen['speed']:g} "
                f"(accuracy {chosen['accuracy']:.4f}, FLOPs x{flops})")
        if opts.quantize is not None:
            report["int8"] = quantized_sweep(model, test_enc, pad_id, opts, teacher_acc, say)
        if len(rows) > 1:
            plot = (rows, teacher_acc)
    report["seconds"] = time.perf_counter() - started
    write_json(report_path, report)  # the report first: a failing plot must not lose it
    say(f"report written to {report_path} ({report['seconds']:.0f}s in all)")
    if plot is not None:
        try:
            plot_tradeoff(out.plot, *plot)
        except (ImportError, OSError, RuntimeError, ValueError, TypeError) as exc:  # a picture is a convenience
            warn(f"no plot ({type(exc).__name__}: {exc}); the report and predictions are written")
        else:
            report["plot"] = str(out.plot)
            write_json(report_path, report)
    return report


def quantized_sweep(model, test_enc, pad_id: int, opts: RunOptions, fp32_teacher: float, say) -> dict[str, Any]:
    """The same sweep with int8 weights: accuracy of the int8 teacher and of every speed, beside fp32.

    ``chosen``: the largest speed within 1 point of the *fp32* teacher."""
    runner = EarlyExit(model, runtime="auto", quantize=opts.quantize)  # int8: onnxruntime, whatever --runtime says
    say(f"{opts.quantize} runtime: {runner.backend} ({runner.reason})")
    result = sweep(runner, test_enc, pad_id, opts.speeds, timing_samples=opts.timing_samples,
                   batch_size=opts.timing_batch_size, policy=opts.exit_policy)
    teacher = result["teacher"]["accuracy"]
    say(f"{opts.quantize}:")
    say(format_table(result["rows"], teacher))
    chosen = chosen_speed(result["rows"], fp32_teacher)
    if chosen is not None:
        say(f"{opts.quantize}: largest speed within 1 point of the fp32 teacher: {chosen['speed']:g} "
            f"(accuracy {chosen['accuracy']:.4f})")
    return {"quantize": opts.quantize, "teacher_accuracy": teacher, "teacher_macro_f1": result["teacher"]["macro_f1"],
            "rows": result["rows"], "inference_backend": runner.backend, "inference_reason": runner.reason,
            "wall_seconds": result["wall_seconds"], "chosen_vs_fp32_teacher": chosen}


def _brief(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    return {"best": stage["best"], "best_epoch": stage["best_epoch"], "dev": stage["dev"], "steps": stage["steps"]}
