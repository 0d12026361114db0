"""What ``run_fastbert.py`` and ``run_ner.py`` both do, step by step: check -> data -> model ->
stage 1 -> stage 2 -> speed sweep -> report.

Every output lies beside ``output_model_path`` (``<dir>/<stem>.*``): the resolved config, the
vocabulary, each stage's resume state and best weights, metrics, the report, the plot and the
predictions. Running the same command again resumes where it stopped.

Nothing is written before the whole run has been checked: every option, every path, and whether
the files already at the output belong to this run (resume) or to another one (refused, with
every file of that run left as it was). Only then are files written, so no run trains for an hour
and then fails to save what it learnt. A task (:mod:`uer.fastbert.pipeline`,
:mod:`uer.tagging.pipeline`) supplies its data, its target and its sweep; the rest is here once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import yaml

from uer.checkpoint import CheckpointError, read_checkpoint
from uer.config import Config, ConfigError, FinetuneConfig, apply_overrides, config_from_dict, load_config, to_dict
from uer.exit.training import DISTILL, FINETUNE, StageOptions, stage_signature
from uer.recipe import apply_finetune_recipe
from uer.utils.atomic import atomic_open
from uer.utils.cli import OutputLock, UsageError, input_file, on_interrupt, output_file
from uer.utils.distributed import barrier, is_main_process, launched_as_main, setup_distributed

PREDICTIONS_FILE = re.compile(r"speed_\d+\.\d\d\.(tsv|conll)")  # the per-speed files a sweep writes (NER: the input's format)


def say(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunOptions:
    """What every early-exit command takes; training hyper-parameters live in the config's task section."""

    config_path: str | None
    pretrained_model_path: str | None
    vocab_path: str | None
    train_path: str
    dev_path: str
    test_path: str | None
    output_model_path: str
    report_path: str | None
    speeds: tuple[float, ...]
    skip_malformed: bool = False
    train_samples: int = 0  # 0: all; else a seeded random subset of the training set
    dev_samples: int = 0  # 0: all; else a seeded random subset of dev for the per-epoch evaluation
    test_samples: int = 0  # 0: all; else a seeded random subset of the test set
    timing_samples: int = 256  # test rows timed for the wall-clock speed-ups (0: none)
    timing_batch_size: int = 32
    runtime: str = "auto"  # the inference engine (uer.runtime); "auto" measures at load
    quantize: str | None = None  # "int8": a second sweep with int8 weights, reported beside fp32
    progress: bool = True
    config_overrides: tuple[tuple[str, Any], ...] = ()  # ("fastbert.epochs_num", 2), ("target.branch_size", 64) ...
    device: str | None = None  # None: cuda if available; batches are built on the CPU and moved
    precision: str = "fp32"  # training only (autocast); inference runs in fp32
    exit_policy: str = "entropy"  # which rule decides that a row (or token) leaves (uer.exit.policies)
    deterministic: bool = False  # uer.utils.cli.set_deterministic
    plot: bool = True
    log: Callable[[str], None] = field(default=say, compare=False)  # progress lines (the CLI prints them)


@dataclass(frozen=True)
class Outputs:
    """The files of one run, all named after the model's stem; ``tag`` names a variant's sweep
    (NER's ``.window2``), whose report, plot and predictions then do not replace another's."""

    model: Path
    tag: str = ""

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
        return self.beside(f"{self.tag}.predictions")

    @property
    def plot(self) -> Path:
        return self.beside(f"{self.tag}.tradeoff.png")

    @property
    def report(self) -> Path:
        return self.beside(f"{self.tag}.report.json")

    def stage(self, n: int) -> Path:
        return self.beside(f".stage{n}.pt")

    def stage_best(self, n: int) -> Path:
        return self.beside(f".stage{n}_best.pt")

    def metrics(self, n: int) -> Path:
        return self.beside(f".stage{n}.jsonl")

    def files(self) -> list[Path]:
        return [self.model, self.vocab, self.config, self.plot,
                *(p for n in (1, 2) for p in (self.stage(n), self.stage_best(n), self.metrics(n)))]


# ---------------------------------------------------------------------------------------------
# checks: everything that can be known before the first write


def start(opts: RunOptions) -> tuple[RunOptions, torch.device]:
    """The device, and under ``torchrun`` the process group (each rank its ``LOCAL_RANK`` GPU, or
    gloo on CPU). Only rank 0 speaks and writes; the other ranks train their share of every batch."""
    from uer.utils.device import resolve_device

    device = resolve_device(opts.device, opts.precision)
    _, world, name = setup_distributed(device)
    if world > 1:
        device = torch.device(name)
        if is_main_process():
            opts.log(f"fine-tuning over {world} processes ({dist.get_backend()}); --batch_size is the global batch")
        else:
            opts = dataclasses.replace(opts, log=lambda message: None, progress=False)  # rank 0 speaks for the run
    return opts, device


def claim(out: Outputs, report_path: Path) -> contextlib.AbstractContextManager:
    """Rank 0 proves the outputs writable and holds the output lock for the run; other ranks hold nothing."""
    if not is_main_process():
        return contextlib.nullcontext()
    make_writable(out.model, "--output_model_path")
    make_writable(report_path, "--report_path")
    return OutputLock(out.model, "--output_model_path")  # a second run into this output fails here, at once


def resolve_config(opts: RunOptions, target: str, section: str) -> Config:
    """Backbone config (YAML, else the pre-trained checkpoint's) with ``target`` and the overrides
    (``target.*`` ones go to the target); the ``section``'s rates that nobody set come from
    ``uer.recipe`` (the line saying so goes to ``opts.log``)."""
    target_overrides = {k.split(".", 1)[1]: v for k, v in opts.config_overrides if k.startswith("target.")}
    other = {k: v for k, v in opts.config_overrides if not k.startswith("target.")}
    if opts.config_path:
        base = load_config(input_file(opts.config_path, "--config_path"), other)
    elif opts.pretrained_model_path:
        path = input_file(opts.pretrained_model_path, "--pretrained_model_path")
        base = config_from_dict(apply_overrides(read_checkpoint(path)["config"], other), f"{path} (config)")
    else:
        raise UsageError("no model: give --config_path (or --pretrained_model_path, whose config is then used)")
    config, explanation = apply_finetune_recipe(base.with_target({"name": target, **target_overrides}), section)
    if explanation and launched_as_main():  # before start(): under torchrun, rank 0 speaks
        opts.log(explanation)
    return config


def check_config(config: Config, opts: RunOptions, section: str) -> None:
    """What a config allows only in combination (a single value's range is the schema's job):
    ``seq_length`` against the position table, and the runtime / quantisation against the model."""
    given = dict(opts.config_overrides)
    seq = task_section(config, section).seq_length
    name = "--seq_length" if f"{section}.seq_length" in given else f"{config.source}: {section}.seq_length"
    limit = config.position_limit
    if limit is not None and seq > limit:
        raise UsageError(f"{name} is {seq}, longer than the position table of {config.source} (max_seq_length {limit})")
    from uer.runtime import unsupported

    kind = "sentence" if section == "fastbert" else "token"
    checks = [(opts.runtime, None, f"--runtime {opts.runtime}")]
    if opts.quantize is not None:
        checks.append(("auto", opts.quantize, f"--quantize {opts.quantize}"))
    for runtime, quantize, flag in checks:
        reason = unsupported(config, runtime, quantize, kind=kind)
        if reason is not None:  # before hours of training, not after
            raise UsageError(f"{flag}: {reason}")


def task_section(config: Config, section: str) -> FinetuneConfig:
    return getattr(config, section)  # "fastbert" or "ner": both FinetuneConfig sections of Config


def check_options(opts: RunOptions, task: str = "classification") -> None:
    """``task``: what the branches predict (``FastBertTargetConfig.task``); the policy must read that."""
    from uer.exit.policies import policy_names, resolve

    if not opts.speeds:
        raise UsageError("--speed: no speed given")
    if len(set(opts.speeds)) != len(opts.speeds):
        raise UsageError(f"--speed {','.join(f'{s:g}' for s in opts.speeds)}: a speed is listed twice")
    if opts.exit_policy not in policy_names():
        raise UsageError(f"--exit_policy {opts.exit_policy!r}: expected one of {', '.join(policy_names())}")
    if opts.exit_policy not in policy_names(task):
        raise UsageError(f"--exit_policy {opts.exit_policy} reads {resolve(opts.exit_policy).task} outputs, not {task}: "
                         f"expected one of {', '.join(policy_names(task))}")
    for value, flag in ((opts.train_samples, "--train_samples"), (opts.dev_samples, "--dev_samples"),
                        (opts.test_samples, "--test_samples"), (opts.timing_samples, "--timing_samples")):
        if value < 0:
            raise UsageError(f"{flag} {value}: expected an integer >= 0 (0: all rows)")
    if opts.timing_batch_size < 1:
        raise UsageError(f"--timing_batch_size {opts.timing_batch_size}: expected an integer >= 1")


def check_outputs(opts: RunOptions, out: Outputs, inputs: dict[str, Path], is_our_report: Callable[[dict], bool],
                  command: str) -> Path:
    """Output paths that can be written (not directories, not under a file, no trailing '/'), none
    of them an input of the run or a file that is not ours. Returns the report path."""
    where = f"--output_model_path {opts.output_model_path}"
    output_file(opts.output_model_path, "--output_model_path")  # the flag as given: a trailing '/' is refused
    for path in [*out.files(), out.report]:
        output_file(path, f"{where}: output")
    if out.predictions.exists() and not out.predictions.is_dir():
        raise UsageError(f"{where}: {out.predictions} is a file, expected the predictions folder; move it away")
    report = output_file(opts.report_path, "--report_path") if opts.report_path else out.report
    own = {p.resolve(): p for p in out.files()}
    if report.resolve() in own:
        raise UsageError(f"--report_path {report} is one of the run's own files")
    for flag, path in inputs.items():
        taken = [p for p in (*out.files(), report) if p.resolve() == path.resolve()]
        if taken:
            what = "--report_path" if taken[0] == report else f"{where}: its output {taken[0].name}"
            raise UsageError(f"{what} is {flag} {path}, an input of this run; choose another path")
    if report.is_file() and not _readable_report(report, is_our_report):
        raise UsageError(f"--report_path {report} exists and is not a {command} report; choose another path or remove it")
    return report


def _readable_report(path: Path, is_ours: Callable[[dict], bool]) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and "stage1" in data and is_ours(data)


def make_writable(path: Path, flag: str) -> None:
    """Create ``path``'s folder and prove a file can be written there (root ignores permission bits)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {path.parent} ({exc.strerror or exc})") from None


def _differences(theirs: dict, ours: dict) -> list[str]:
    """``section.key`` names that differ between two config dicts (sections if not both mappings)."""
    out = []
    for section in sorted({*theirs, *ours}):
        a, b = theirs.get(section), ours.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{section}.{k}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        else:
            out.append(section)
    return out


def check_ownership(out: Outputs, config: Config, vocab_path: Path, stages: dict[int, dict[str, Any]]) -> dict[int, int]:
    """Do the files at the output belong to this run? Returns ``{stage: step}`` to resume from;
    a file of another run is a UsageError, raised before anything has been written.

    ``stages``: for each stage, the trainer signature this run will use (:func:`stage_signature`)."""
    where = f"--output_model_path {out.model}"
    advice = "choose another --output_model_path, or remove that run's files to start over"
    if out.vocab.is_file() and out.vocab.read_bytes() != vocab_path.read_bytes():
        raise UsageError(f"{where}: {out.vocab} differs from {vocab_path} (another run's vocabulary, or a damaged "
                         f"copy); {advice}")
    if out.config.is_file():
        try:
            theirs = yaml.safe_load(out.config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError):
            theirs = None
        ours = to_dict(config)
        if theirs != ours:
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
        if differs:
            raise UsageError(f"{where}: {path} holds the resume state of a different run (it differs in: "
                             f"{', '.join(differs)}); {advice}")
        resume[n] = state["step"]
    if out.model.exists() and 1 not in resume:
        raise UsageError(f"{where} exists and is not a run this command can resume (no {out.stage(1).name} of this "
                         f"run beside it); choose another --output_model_path or remove it")
    return resume


def subsample(rows: int, n: int, seed: int) -> list[int] | None:
    """A seeded random subset of ``n`` of ``rows`` row indices, in file order (None: all rows)."""
    if not n or n >= rows:
        return None
    return sorted(random.Random(seed).sample(range(rows), n))


def prepare(opts: RunOptions, config: Config, section: str, model, out: Outputs, vocab_path: Path,
            fingerprints: tuple[str, str, str], distills: bool, device, first: str = FINETUNE) -> dict[int, int]:
    """Check that the output is this run's (``fingerprints``: train, distill texts, dev), then start
    the backbone (pre-trained or random), move the model and write the run's first files.
    Returns the steps each stage resumes from. ``first``: stage 1's name (FastBERT's joint training
    runs in its slot)."""
    fb, (train, distill, dev) = task_section(config, section), fingerprints
    stages = {1: stage_signature(first, config, fb.epochs_num, fb.batch_size, fb.learning_rate, fb.seed, train, dev)}
    if distills:
        stages[2] = stage_signature(DISTILL, config, fb.distill_epochs_num, fb.batch_size, fb.distill_learning_rate,
                                    fb.seed, distill, dev)
    resume = check_ownership(out, config, vocab_path, stages)
    target = config.target.components[0].name
    if opts.pretrained_model_path:
        load_backbone(model, opts.pretrained_model_path, config.source, opts.log, target)
    else:
        opts.log("no --pretrained_model_path: the backbone starts from random weights")
    model.to(device)
    # the vocabulary and the resolved config beside the model (kept when there: check_ownership proved them ours)
    if is_main_process() and not out.vocab.is_file():
        with atomic_open(out.vocab, "wb") as f:
            f.write(vocab_path.read_bytes())
    if is_main_process() and not out.config.is_file():
        with atomic_open(out.config) as f:
            f.write(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
    barrier()
    return resume


def stage_options(opts: RunOptions, config: Config, section: str, out: Outputs, resume: dict[int, int], n: int,
                  device: str) -> StageOptions:
    """Stage ``n``'s options from the task section; says when it resumes, and what Ctrl-C means now."""
    fb = task_section(config, section)
    if n in resume:
        opts.log(f"resumed stage {n} at step {resume[n]} (from {out.stage(n)})")
    on_interrupt(f"interrupted in stage {n}; run the same command again to resume from its last checkpoint "
                 f"({out.stage(n)}, written at every epoch end)")
    return StageOptions(
        epochs=fb.epochs_num if n == 1 else fb.distill_epochs_num, batch_size=fb.batch_size,
        learning_rate=fb.learning_rate if n == 1 else fb.distill_learning_rate, warmup=fb.warmup,
        weight_decay=fb.weight_decay, seed=fb.seed, report_steps=fb.report_steps, checkpoint_path=str(out.stage(n)),
        best_path=str(out.stage_best(n)), metrics_path=str(out.metrics(n)), progress=opts.progress, device=device,
        precision=opts.precision, log=_progress_log(opts),
    )


def _progress_log(opts: RunOptions) -> Callable[[str], None]:
    if not opts.progress:
        return opts.log

    def log(message: str) -> None:  # a line that does not break the progress bar
        from tqdm import tqdm

        tqdm.write(message) if opts.log is say else opts.log(message)

    return log


def brief(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the report and the checkpoint keep of a stage's summary."""
    if stage is None:
        return None
    return {"best": stage["best"], "best_epoch": stage["best_epoch"], "dev": stage["dev"], "steps": stage["steps"]}


def load_backbone(model, path: str, config_source: str, log: Callable[[str], None], target: str) -> None:
    """The backbone of a uer checkpoint into ``model``, its exit branches left fresh."""
    from uer import checkpoint
    from uer.exit.targets import exit_target
    from uer.utils.paths import resolve_path

    loaded = checkpoint.load_backbone(model, resolve_path(path), config_source, heads=False)
    log(f"backbone loaded from {path}; freshly initialised: {len(loaded.fresh)} {target} target tensors "
        f"({len(exit_target(model).branches)} branches); ignored from the checkpoint: {len(loaded.ignored)} tensors "
        f"of its own targets")


def train_and_save(opts: RunOptions, config: Config, section: str, out: Outputs, resume: dict[int, int], device,
                   model, extra: dict[str, Any], first: Callable[[StageOptions], dict[str, Any]],
                   second: Callable[[StageOptions], dict[str, Any]] | None, score: str) -> tuple[dict, dict | None] | None:
    """Stage 1 (``first``), then stage 2 (``second``, None: none), each with its options, messages
    and Ctrl-C hint; then rank 0 saves the model with ``extra`` and both stages' summaries.
    Returns the two summaries on rank 0, None on the other ranks (they are done)."""
    import time

    t0 = time.perf_counter()
    s1 = first(stage_options(opts, config, section, out, resume, 1, str(device)))
    opts.log(f"stage 1: best dev {score} {s1['best']:.4f} (epoch {s1['best_epoch']}), {time.perf_counter() - t0:.0f}s")
    s2 = None
    if second is not None:
        t0 = time.perf_counter()
        s2 = second(stage_options(opts, config, section, out, resume, 2, str(device)))
        opts.log(f"stage 2: best dev distillation loss {s2['best']:.4f} per student (epoch {s2['best_epoch']}), "
                 f"{time.perf_counter() - t0:.0f}s")
    elif task_section(config, section).distill_epochs_num > 0 and model.encoder.layers_num < 2:
        opts.log("stage 2 skipped: a 1-layer encoder has no students to distil")
    on_interrupt(f"interrupted after training; run the same command again to redo the evaluation ({out.model} is saved)")
    extra.update(stage1=brief(s1), stage2=brief(s2))
    if not is_main_process():  # rank 0 saves, sweeps and reports
        return None
    from uer.checkpoint import save_checkpoint

    save_checkpoint(out.model, model, config, **extra)
    opts.log(f"model saved to {out.model}")
    return s1, s2


# ---------------------------------------------------------------------------------------------
# after training


def write_predictions_folder(folder: Path, written: Sequence[str]) -> None:
    """Remove an earlier sweep's per-speed files that this sweep did not write (another speed list
    or test set): they would sit beside this report as if they were its own."""
    if not folder.is_dir():
        return
    for stale in sorted(folder.iterdir()):
        if PREDICTIONS_FILE.fullmatch(stale.name) and stale.name not in written and stale.is_file():
            stale.unlink()


def record_choice(model_path: Path, model, config: Config, extra: dict[str, Any], chosen: dict[str, Any] | None) -> None:
    """Save the model again with the sweep's chosen speed beside the policy it was chosen under, so
    that loading it predicts at that speed and under that policy unless the caller names others."""
    from uer.checkpoint import save_checkpoint

    save_checkpoint(model_path, model, config, **{**extra, "chosen_speed": None if chosen is None else chosen["speed"]})


def write_report(path: Path, report: dict[str, Any], plot: Callable[[], Path] | None, log: Callable[[str], None]) -> None:
    """The report first (a failing plot must not lose it), then the plot, then the report naming it."""
    from uer.exit.report import write_json

    write_json(path, report)
    log(f"report written to {path} ({report['seconds']:.0f}s in all)")
    if plot is None:
        return
    try:
        written = plot()
    except (ImportError, OSError, RuntimeError, ValueError, TypeError) as exc:  # a picture is a convenience
        warn(f"no plot ({type(exc).__name__}: {exc}); the report and predictions are written")
    else:
        report["plot"] = str(written)
        write_json(path, report)


__all__ = ["RunOptions", "Outputs", "CheckpointError", "ConfigError"]
