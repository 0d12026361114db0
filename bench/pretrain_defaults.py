"""Pre-training with no tuning flags: MLM accuracy over steps and wall clock (bench, not a test).

    python corpora/build_zh.py                                              # once
    flock /tmp/uer-bench.lock python bench/pretrain_defaults.py             # tiny 15 min + mini 45 min, ~63 min
    flock /tmp/uer-bench.lock python bench/pretrain_defaults.py --bf16      # the same in bf16 (CPUs with bf16 units only)
    flock /tmp/uer-bench.lock python bench/pretrain_defaults.py --quick     # ~1 minute: shows it works

What runs, per model (``--models``: names in models/bert/, or paths to YAML configs):

1. The corpus (default ``data/corpora/zh_news_reviews.txt``: People's Daily + the *training*
   reviews, from ``corpora/build_zh.py``) is split by document: every k-th document (k = 1 /
   ``--heldout_fraction``) is held out, and a held-out line that also occurs in a training document
   is dropped, so the held-out slice shares no line with what the models train on.
2. ``preprocess.py --data_processor mlm`` once for all models: the recommended path for small
   budgets (MLM alone, no NSP; dynamic masking, the default). The held-out slice gets static masks
   (``--static_masking``, a fixed seed): every model and checkpoint is scored on the same positions.
3. ``pretrain.py`` with no tuning flags: the model config (with ``--set target.components=[mlm]``
   when its target is not MLM alone: the mlm dataset needs it), data, output, ``--total_steps``,
   ``--batch_size``, ``--report_steps``, ``--save_checkpoint_steps``, the held-out slice (``--dev_dataset_path``,
   ``--eval_steps``: pretrain.py scores it at every checkpoint, in the timed run) and ``--precision bf16``
   only with ``--bf16``. Learning rate, warmup and schedule
   come from ``uer.recipe`` and the MLM bias from the token prior, as for any user; the
   ``schedule:`` line pretrain.py prints is recorded.
   The wall budget (``--minutes``) becomes a step count before the run, because the schedule
   decays over ``--total_steps``: a short calibration run of pretrain.py measures seconds per step
   and start-up time (``--steps`` skips it). Wall clock is measured from the start of the
   ``pretrain.py`` process (imports and start-up included; the calibration run is not counted).
4. MLM accuracy on the training batches comes from ``<model>.metrics.jsonl`` (one mean per report
   window), stamped with the time pretrain.py printed it. The held-out points are pretrain.py's own
   evaluation (``--dev_dataset_path`` the held-out slice, ``--eval_steps`` every checkpoint; the
   ``dev_mlm_acc`` lines of the same metrics file); their time is the step's report line.

Outputs: the markdown table + goal lines (printed, and ``<results>.md``), every curve
(``<results>.json``: steps, seconds, MLM accuracy, and the held-out points) and a plot
(``<results>.png``); ``--results`` defaults to ``bench/results/pretrain_defaults`` (``--quick``:
``<out_dir>/pretrain_defaults``, never bench/results). A model rerun replaces its own row (same
model and precision) and keeps the others measured on the same data.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (BF16_UNITS, PY, ROOT, cpu_info, cpu_line, last_line, load_average, sh, write_json,  # noqa: E402
                          write_text)
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, fraction, positive_float, positive_int, run_main  # noqa: E402

DEFAULT_MINUTES = {"tiny": 15.0, "mini": 45.0}  # per model; any other model: OTHER_MINUTES
OTHER_MINUTES = 15.0
QUICK_MINUTES = 0.25
GOAL_MODEL, GOAL_ACC, GOAL_MINUTES = "mini", 0.25, 45.0  # issue 12
CALIBRATION_STEPS, QUICK_CALIBRATION_STEPS = 30, 6
CURVE_POINTS = 50  # report windows per run (--report_steps default)
HELDOUT_POINTS = 6  # held-out checkpoints per run, besides the final model
HELDOUT_SEED = 20240  # the held-out slice's static masks
STEP_LINE = re.compile(r"^pretrain step (\d+):")


@dataclass(frozen=True)
class ModelSpec:
    label: str  # "tiny", "mini", or a YAML file's stem
    config_path: Path


# ------------------------------------------------------------------------------------ inputs


def resolve_models(text: str) -> list[ModelSpec]:
    """``tiny,mini`` -> models/bert/tiny.yaml, models/bert/mini.yaml; a path ending in .yaml is taken as is."""
    known = sorted(p.stem for p in (ROOT / "models" / "bert").glob("*.yaml"))
    specs = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            raise UsageError(f"--models {text!r}: an empty name; expected names from models/bert/ ({', '.join(known)}) or .yaml paths")
        if name.endswith((".yaml", ".yml")):
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"--models: {name} does not exist")
            specs.append(ModelSpec(path.stem, path.resolve()))
        elif name in known:
            specs.append(ModelSpec(name, ROOT / "models" / "bert" / f"{name}.yaml"))
        else:
            raise UsageError(f"--models: unknown model {name!r}; valid: {', '.join(known)} (or a path to a .yaml config)")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--models {text!r}: a model is named twice")
    return specs


def split_corpus(corpus: Path, out: Path, heldout_fraction: float) -> dict:
    """Training and held-out corpora by document (every k-th held out); held-out lines found in a
    training document are dropped. Returns the counts and the two paths."""
    text = corpus.read_text(encoding="utf-8")
    if "\n\n" in text:  # documents separated by blank lines (corpora/README.md)
        docs = [[line for line in d.split("\n") if line.strip()] for d in re.split(r"\n\s*\n", text)]
    else:  # one document per line
        docs = [[line] for line in text.split("\n") if line.strip()]
    docs = [d for d in docs if d]
    every = max(2, round(1 / heldout_fraction))
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    held = [d for i, d in enumerate(docs) if i % every == every - 1]
    if not held or not train:
        raise UsageError(f"--corpus {corpus}: {len(docs)} documents, too few to hold out every {every}th "
                         f"(--heldout_fraction {heldout_fraction}); pass a larger fraction or a larger corpus")
    seen = {line for d in train for line in d}
    kept = [[line for line in d if line not in seen] for d in held]
    dropped = sum(len(d) for d in held) - sum(len(d) for d in kept)
    kept = [d for d in kept if d]
    if not kept:
        raise UsageError(f"--corpus {corpus}: every held-out line also occurs in a training document")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.txt", "heldout": out / "heldout.txt"}
    for name, part in (("train", train), ("heldout", kept)):
        with atomic_open(paths[name]) as f:
            f.write("".join("\n".join(d) + "\n\n" for d in part))
    return {"documents": len(docs), "every": every, "train_documents": len(train), "heldout_documents": len(kept),
            "heldout_lines": sum(len(d) for d in kept), "heldout_lines_dropped": dropped,
            "sha1": hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], **{k: str(v) for k, v in paths.items()}}


# ------------------------------------------------------------------------------------ running


def preprocess(corpus: Path, dataset: Path, config: Path, vocab: Path, seq_length: int, log: Path, *extra: str) -> Path:
    sh([PY, "preprocess.py", "--corpus_path", corpus, "--data_processor", "mlm", "--config_path", config,
        "--vocab_path", vocab, "--dataset_path", dataset, "--seq_length", str(seq_length), "--processes_num", "2",
        "--no_progress", *extra], log)
    return dataset


def run_pretrain(cmd: list[str], log: Path, echo=None) -> dict:
    """Run pretrain.py; the time (s since its start) each report line was printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w", encoding="utf-8") as err:
        err.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n")
        err.flush()
        started = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True, encoding="utf-8")
        times = {}
        try:
            for line in proc.stdout:
                m = STEP_LINE.match(line)
                if m:
                    times[int(m.group(1))] = time.perf_counter() - started
                    if echo is not None:
                        echo(int(m.group(1)), times[int(m.group(1))], line)
                err.write(line)
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
    if rc != 0:
        raise UsageError(f"pretrain.py failed (exit {rc}): {last_line(log)} (log: {log})")
    text = log.read_text(encoding="utf-8", errors="replace")
    schedule = next((line for line in text.splitlines() if line.startswith("schedule:")), None)
    return {"times": times, "wall_s": wall, "schedule": schedule}


def pretrain_cmd(spec: ModelSpec, dataset: Path, vocab: Path, output: Path, steps: int, args, report_steps: int,
                 save_steps: int) -> list[str]:
    from uer.config import load_config

    cmd = [PY, "pretrain.py", "--config_path", str(spec.config_path), "--dataset_path", str(dataset),
           "--vocab_path", str(vocab), "--output_model_path", str(output), "--total_steps", str(steps),
           "--batch_size", str(args.batch_size), "--report_steps", str(report_steps),
           "--save_checkpoint_steps", str(save_steps), "--device", "cpu", "--no_progress"]
    if [t.name for t in load_config(spec.config_path).target.components] != ["mlm"]:
        cmd += ["--set", "target.components=[mlm]"]  # the mlm dataset's target (the recommended path)
    if args.bf16:
        cmd += ["--precision", "bf16"]
    return cmd


def fresh(folder: Path) -> Path:
    """The bench's own run folder, emptied (pretrain.py refuses to overwrite an earlier run)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def calibrate(spec: ModelSpec, dataset: Path, vocab: Path, out: Path, args, steps: int) -> dict:
    """Seconds per step and start-up seconds of pretrain.py for this model, from a short run."""
    folder = fresh(out / f"calibrate_{spec.label}")
    report = max(1, steps // 3)
    # (--save_checkpoint_steps 0, "only at the end" in its help, is refused by the config check)
    cmd = pretrain_cmd(spec, dataset, vocab, folder / "model.pt", steps, args, report, steps)
    got = run_pretrain(cmd, folder / "pretrain.log")
    times = sorted(got["times"].items())
    (s0, t0), (s1, t1) = times[0], times[-1]
    per_step = (t1 - t0) / (s1 - s0)  # after the first window: the first steps include one-off warm-up
    startup = max(0.0, t0 - s0 * per_step) + (got["wall_s"] - t1)  # imports, data, prior ... and the final save
    shutil.rmtree(folder)
    return {"s_per_step": per_step, "startup_s": startup, "steps": steps}


def steps_for(minutes: float, calibration: dict) -> int:
    budget = minutes * 60 - calibration["startup_s"]
    return max(1, int(0.97 * budget / calibration["s_per_step"]))  # 3%: the checkpoints and some noise


# ------------------------------------------------------------------------------------ one model


def run_model(spec: ModelSpec, args, data: dict, heldout: Path, out: Path) -> dict:
    minutes = args.minutes if args.minutes is not None else (
        QUICK_MINUTES if args.quick else DEFAULT_MINUTES.get(spec.label, OTHER_MINUTES))
    calibration = None
    if args.steps is not None:
        steps = args.steps
    else:
        calibration = calibrate(spec, data["train"], args.vocab_path, out, args,
                                QUICK_CALIBRATION_STEPS if args.quick else CALIBRATION_STEPS)
        steps = steps_for(minutes, calibration)
        print(f"{spec.label}: {calibration['s_per_step']:.3f} s/step, start-up {calibration['startup_s']:.1f} s "
              f"(calibration, {calibration['steps']} steps) -> {steps} steps for {minutes:g} min", flush=True)
    report = args.report_steps or max(1, steps // CURVE_POINTS)
    save = report * max(1, round(steps / (HELDOUT_POINTS * report)))
    folder = fresh(out / spec.label)
    cmd = [*pretrain_cmd(spec, data["train"], args.vocab_path, folder / "model.pt", steps, args, report, save),
           "--dev_dataset_path", str(heldout), "--eval_steps", str(save)]
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    shown = max(1, steps // (10 * report)) * report  # about ten progress lines per run

    def echo(step: int, seconds: float, line: str) -> None:
        if step % shown == 0 or step == steps:
            acc = re.search(r"mlm_acc ([0-9.]+)", line)
            print(f"  {spec.label} step {step}/{steps}: mlm_acc {acc.group(1) if acc else '?'} ({seconds / 60:.1f} min)", flush=True)

    got = run_pretrain(cmd, folder / "pretrain.log", echo)
    metrics = [json.loads(line) for line in (folder / "model.metrics.jsonl").read_text().splitlines() if line]
    curve = [{"step": m["step"], "seconds": round(got["times"].get(m["step"], float("nan")), 2),
              "mlm_acc": m["mlm_acc"], "mlm_loss": m["mlm_loss"], "tokens_per_s": round(m["tokens_per_s"]),
              "lr": m["lr"]} for m in metrics if "mlm_acc" in m]
    at = {p["step"]: p["seconds"] for p in curve}
    heldout_curve = [{"step": m["step"], "mlm_acc": m["dev_mlm_acc"], "mlm_loss": m["dev_mlm_loss"],
                      "seconds": round(at.get(m["step"], got["wall_s"]), 2)} for m in metrics if "dev_mlm_acc" in m]
    for spent in (folder / "model.pt.resume", folder / "model.best.pt"):  # 3x and 1x the model; model.pt stays
        spent.unlink(missing_ok=True)
    speeds = sorted(p["tokens_per_s"] for p in curve)
    return {
        "model": spec.label, "config": _shown(spec.config_path),
        "precision": "bf16" if args.bf16 else "fp32", "batch_size": args.batch_size, "seq_length": args.seq_length,
        "minutes_budget": minutes, "total_steps": steps, "report_steps": report, "save_checkpoint_steps": save,
        "calibration": calibration, "wall_s": round(got["wall_s"], 1), "tokens_per_s": speeds[len(speeds) // 2],
        "schedule": got["schedule"], "command": " ".join(shlex.quote(c) for c in cmd[1:]),
        "curve": curve, "heldout": heldout_curve, "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


# ------------------------------------------------------------------------------------ report


def is_goal_model(name: str) -> bool:
    """BERT-mini and its variants in models/bert/ (``mini``, ``mini_alibi``, ...): the goal's model."""
    return name == GOAL_MODEL or name.startswith(f"{GOAL_MODEL}_")


def goal_line(entry: dict | None, goal_acc: float = GOAL_ACC, goal_minutes: float = GOAL_MINUTES) -> str:
    """The issue's goal, judged on the training-batch MLM accuracy pretrain.py reports, with the held-out score beside."""
    variant = "" if entry is None or entry["model"] == GOAL_MODEL else f" ({entry['model']}.yaml)"
    name = f"BERT-{GOAL_MODEL}{variant}"
    head = f"{name} MLM accuracy >= {goal_acc:g} within {goal_minutes:g} min"
    if entry is None:
        return f"{head}: not measured ({GOAL_MODEL} was not run)"
    head = f"{head} ({entry['precision']})"
    curve = [p for p in entry["curve"] if p["seconds"] == p["seconds"]]  # NaN: a step whose line was not seen
    first = next((p for p in curve if p["mlm_acc"] >= goal_acc), None)
    held = entry["heldout"][-1] if entry["heldout"] else None
    held_text = f"; held-out {held['mlm_acc']:.3f} at step {held['step']}" if held else ""
    if first is not None and first["seconds"] <= goal_minutes * 60:
        return (f"{head}: met (reached {first['mlm_acc']:.3f} at step {first['step']}, {first['seconds'] / 60:.1f} min"
                f"{held_text})")
    if first is not None:
        return (f"{head}: not met (reached {first['mlm_acc']:.3f} only at step {first['step']}, "
                f"{first['seconds'] / 60:.1f} min{held_text})")
    inside = [p for p in curve if p["seconds"] <= goal_minutes * 60] or curve
    best = max(inside, key=lambda p: p["mlm_acc"])
    ran = curve[-1]["seconds"] / 60 if curve else 0.0
    more = f"; the run had {ran:.1f} min: rerun with a larger --minutes for the steps it takes" if ran < goal_minutes else ""
    return (f"{head}: not met (best {best['mlm_acc']:.3f} at step {best['step']}, {best['seconds'] / 60:.1f} min"
            f"{held_text}{more})")


def report(entries: list[dict], cpu: dict, data: dict) -> list[str]:
    lines = ["# Pre-training with the defaults: MLM accuracy (bench/pretrain_defaults.py)", "",
             cpu_line(cpu), "",
             f"Corpus {data['corpus']} (sha1 {data['sha1']}): {data['train_documents']} training documents; held out: "
             f"every {data['every']}th document, {data['heldout_documents']} documents, {data['heldout_lines']} lines "
             f"({data['heldout_lines_dropped']} lines dropped: they also occur in training documents), "
             f"{data['heldout_instances']} instances with {data['heldout_masked']} statically masked tokens.",
             "preprocess.py --data_processor mlm; pretrain.py with no tuning flags (learning rate, warmup and "
             "schedule from uer.recipe, MLM bias from the token prior). Train acc: the mean over the last report "
             "window's training batches; held-out acc: the held-out slice, never trained on. The goal line is "
             "judged on the train acc curve (what pretrain.py reports), with the last held-out score beside it; "
             "minutes count from the start of the pretrain.py process.", "",
             "| model | precision | batch x seq | steps | minutes | tokens/s | train MLM acc (last window) | held-out MLM acc |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        last, held = e["curve"][-1], e["heldout"][-1]
        lines.append(f"| {e['model']} | {e['precision']} | {e['batch_size']} x {e['seq_length']} | {e['total_steps']} | "
                     f"{e['wall_s'] / 60:.1f} | {e['tokens_per_s']} | {last['mlm_acc']:.3f} | {held['mlm_acc']:.3f} |")
    lines += ["", "MLM accuracy after N steps:", "",
              "| model | precision | step | minutes | train MLM acc | held-out MLM acc |", "| --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        train = {p["step"]: p["mlm_acc"] for p in e["curve"]}
        for h in e["heldout"]:
            t = train.get(h["step"])
            lines.append(f"| {e['model']} | {e['precision']} | {h['step']} | {h['seconds'] / 60:.1f} | "
                         f"{'n/a' if t is None else f'{t:.3f}'} | {h['mlm_acc']:.3f} |")
    lines += [""]
    for e in entries:
        lines.append(f"- {e['model']} ({e['precision']}, {e['date']}): `{e['command']}`; {e['schedule'] or 'no schedule line'}")
    lines += [""]
    goal = [e for e in entries if is_goal_model(e["model"])]
    lines += [goal_line(e) for e in goal] or [goal_line(None)]
    return lines


def plot(entries: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_step) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, e in enumerate(entries):
        color = f"C{i}"
        label = f"{e['model']} {e['precision']}"
        curve = [p for p in e["curve"] if p["seconds"] == p["seconds"]]
        by_time.plot([p["seconds"] / 60 for p in curve], [p["mlm_acc"] for p in curve], color=color, label=f"{label} train")
        by_step.plot([p["step"] for p in e["curve"]], [p["mlm_acc"] for p in e["curve"]], color=color, label=f"{label} train")
        by_time.plot([h["seconds"] / 60 for h in e["heldout"]], [h["mlm_acc"] for h in e["heldout"]], "o--", color=color,
                     label=f"{label} held-out")
        by_step.plot([h["step"] for h in e["heldout"]], [h["mlm_acc"] for h in e["heldout"]], "o--", color=color,
                     label=f"{label} held-out")
    for ax, xlabel in ((by_time, "minutes (wall clock)"), (by_step, "optimizer steps")):
        ax.axhline(GOAL_ACC, color="grey", linestyle=":", label=f"goal {GOAL_ACC:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("MLM accuracy")
        ax.grid(alpha=0.3)
    longest = max((p["seconds"] / 60 for e in entries for p in e["curve"] if p["seconds"] == p["seconds"]), default=0.0)
    if longest >= GOAL_MINUTES / 2:  # a short run keeps its own scale
        by_time.axvline(GOAL_MINUTES, color="grey", linestyle=":")
    by_step.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def merged(path: Path, entries: list[dict], data_key: str) -> list[dict]:
    """This run's entries and those of earlier runs on the same data with another model or precision."""
    if not path.is_file():
        return entries
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        previous = old["entries"] if old.get("data_key") == data_key else []
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        print(f"note: {path} is not a results file of this bench: replaced", flush=True)
        return entries
    if old.get("data_key") != data_key and old.get("entries"):
        print(f"note: {path} holds runs on other data or settings: replaced", flush=True)
    mine = {(e["model"], e["precision"]) for e in entries}
    return [e for e in previous if (e["model"], e["precision"]) not in mine] + entries


# ------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretrain_defaults.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="tiny,mini", help="comma-separated: names in models/bert/ or .yaml paths (default: tiny,mini)")
    p.add_argument("--minutes", type=positive_float,
                   help=f"wall budget of each model's run (default: {', '.join(f'{k} {v:g}' for k, v in DEFAULT_MINUTES.items())}, "
                        f"others {OTHER_MINUTES:g}; --quick: {QUICK_MINUTES:g})")
    p.add_argument("--steps", type=positive_int, help="total steps of every model, instead of --minutes (no calibration run)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_MINUTES:g} min per model: a smoke run of the whole bench")
    p.add_argument("--bf16", action="store_true", help="pretrain.py --precision bf16 (refused on a CPU without avx512_bf16 / amx_bf16)")
    p.add_argument("--batch_size", type=positive_int, default=32, help="default: pretrain.py's (32)")
    p.add_argument("--seq_length", type=positive_int, default=128, help="default: pretrain.py's (128)")
    p.add_argument("--report_steps", type=positive_int, help=f"default: total steps / {CURVE_POINTS}")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpora" / "zh_news_reviews.txt")
    p.add_argument("--vocab_path", type=Path, default=ROOT / "models" / "google_zh_vocab.txt")
    p.add_argument("--heldout_fraction", type=fraction, default=0.02, help="documents held out (every 1/f-th); default 0.02")
    p.add_argument("--out_dir", type=Path, help="runs and datasets (default: out/pretrain_defaults, --quick: out/pretrain_defaults_quick)")
    p.add_argument("--results", type=Path,
                   help="prefix of the .md/.json/.png results (default: bench/results/pretrain_defaults; --quick: <out_dir>/pretrain_defaults)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main("pretrain_defaults.py", lambda: _run(args))


def _run(args) -> int:
    cpu = cpu_info()
    print(cpu_line(cpu), flush=True)
    print(f"all CPU flags: {' '.join(cpu['flags']) or 'unknown'}", flush=True)
    if args.bf16 and not cpu["bf16_units"]:
        raise UsageError(f"--bf16: this CPU ({cpu['model']}) has neither {' nor '.join(BF16_UNITS)} in /proc/cpuinfo; "
                         "bf16 would be emulated (slower than fp32): run without --bf16")
    if args.steps is not None and args.minutes is not None:
        raise UsageError("--steps and --minutes: give one (--steps fixes the steps, --minutes the wall budget)")
    if not 0 < args.heldout_fraction <= 0.5:
        raise UsageError(f"--heldout_fraction {args.heldout_fraction}: expected a fraction in (0, 0.5]")
    specs = resolve_models(args.models)
    args.corpus, args.vocab_path = args.corpus.resolve(), args.vocab_path.absolute()  # pretrain.py runs in ROOT
    if not args.corpus.is_file():
        raise UsageError(f"--corpus {args.corpus} does not exist (the default is made by: python corpora/build_zh.py)")
    if not args.vocab_path.is_file():
        raise UsageError(f"--vocab_path {args.vocab_path} does not exist (the default is made by: python scripts/prepare.py)")
    from uer.config import load_config

    tokenizers = {s.label: load_config(s.config_path).tokenizer for s in specs}
    if len({repr(t) for t in tokenizers.values()}) > 1:
        raise UsageError(f"--models: the configs have different tokenizer sections ({', '.join(tokenizers)}), "
                         "so one dataset cannot serve them all; run them separately")
    out = (args.out_dir or ROOT / "out" / ("pretrain_defaults_quick" if args.quick else "pretrain_defaults")).resolve()
    results = args.results or (out / "pretrain_defaults" if args.quick else ROOT / "bench" / "results" / "pretrain_defaults")
    out.mkdir(parents=True, exist_ok=True)
    load = load_average()
    started = time.perf_counter()

    data = split_corpus(args.corpus, out / "corpus", args.heldout_fraction)
    data["corpus"] = _shown(args.corpus)
    log = out / "preprocess.log"
    log.unlink(missing_ok=True)
    config = specs[0].config_path
    data["train"] = preprocess(Path(data["train"]), out / f"dataset_train_{args.seq_length}", config, args.vocab_path,
                               args.seq_length, log)
    held_path = preprocess(Path(data["heldout"]), out / f"dataset_heldout_{args.seq_length}", config, args.vocab_path,
                           args.seq_length, log, "--static_masking", "--seed", str(HELDOUT_SEED))
    data["heldout_instances"], data["heldout_masked"] = masked_tokens(held_path, args.vocab_path)
    print(f"corpus: {data['train_documents']} training documents, {data['heldout_documents']} held out "
          f"({data['heldout_instances']} instances, {data['heldout_masked']} masked tokens; "
          f"{data['heldout_lines_dropped']} held-out lines dropped as duplicates of training lines)", flush=True)

    entries = [run_model(spec, args, data, held_path, out) for spec in specs]
    data_key = f"{data['sha1']}|seq {args.seq_length}|batch {args.batch_size}|heldout {data['every']}|quick {args.quick}"
    entries = merged(results.with_suffix(".json"), entries, data_key)
    lines = report(entries, cpu, data)
    lines.insert(3, f"Load average (1/5/15 min) before {load}, after {load_average()}; "
                    f"this run {(time.perf_counter() - started) / 60:.1f} min.")
    if args.quick:
        lines.insert(1, "\n**--quick: a smoke run; its numbers say nothing about the goal.**")
    text = "\n".join(lines) + "\n"
    print("\n" + text, flush=True)
    write_text(results.with_suffix(".md"), text)
    write_json(results.with_suffix(".json"), {
        "data_key": data_key, "cpu": cpu, "data": {k: v for k, v in data.items() if k not in ("train", "heldout")},
        "entries": entries, "goal": [line for line in lines if line.startswith(f"BERT-{GOAL_MODEL}")]}, indent=1)
    plot(entries, results.with_suffix(".png"), f"MLM accuracy with pretrain.py's defaults ({cpu['model']}, {cpu['cores']} cores)")
    print(f"written {results.with_suffix('.md')}, .json and .png", flush=True)
    return 0


def _shown(path: Path) -> str:
    """A path as the results show it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def masked_tokens(path: Path, vocab_path: Path) -> tuple[int, int]:
    """Instances and statically masked tokens of the held-out dataset."""
    from uer.data.batches import PretrainDataset
    from uer.data.dataset import not_masked
    from uer.tokenizers import Vocab

    held = PretrainDataset(path, Vocab.load(vocab_path))
    return len(held), int((held.files.mlm_tgt[:] != not_masked(held.files.mlm_tgt.dtype)).sum())


if __name__ == "__main__":
    sys.exit(main())
