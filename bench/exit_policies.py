"""Early-exit policies side by side, batched, on the same trained models: accuracy against FLOPs
speed-up and measured wall clock, per policy and per way of training the branches.

    flock /tmp/uer-bench.lock python bench/exit_policies.py --quick      # ~20 min on 2 CPU cores
    python bench/exit_policies.py --datasets tweets --branch_trainings joint --policies entropy patience

For every dataset x branch training (``distill``: FastBERT's stage 1 + self-distillation;
``joint``: PABEE's weighted cross-entropy over every branch, see ``uer.fastbert.training``) one
model is trained by ``run_fastbert.py`` (or reused: ``<out_dir>/<dataset>_<training>/`` holds it
with its command and data digest), then every policy is swept over its ``speed`` grid with the
library's sweep (``uer.fastbert.evaluate.sweep``): accuracy, mean exit layer and analytic FLOPs per
point. Wall clock is measured only at each policy's chosen point (the largest speed within 1 point
of the model's own teacher), batch 1 and batched, against the full model.

Static baselines: the first k layers of the same model with branch k as the head, k = 1..L-1
(accuracy of branch k; FLOPs of k layers + one branch). Goal lines are printed with met / not met.

Outputs (``--results_dir``, default ``bench/results``): ``exit_policies.json``, and one plot per
dataset ``exit_policies_<dataset>.png`` (a panel per branch training; a curve per policy; static
points; stars at the measured wall-clock speed-ups).

Datasets (``--data_dir``/<name>/{train,dev,test}.tsv): ``tweets`` and ``reviews_zh`` from
``scripts/build_sentiment_datasets.py``, ``sotu_decades`` from ``scripts/build_sotu_dataset.py``.
Default models: the MiniLM backbone (``models/minilm``) for the English sets; BERT-mini from
random weights with the Chinese vocabulary for ``reviews_zh`` (MiniLM's vocabulary covers 27% of
the review characters). ``--model NAME CONFIG PRETRAINED|none VOCAB`` changes one.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, cpu_info, load_average, write_json, write_text  # noqa: E402
from uer.config import ConfigError  # noqa: E402
from uer.data.tsv import TsvError, read_tsv  # noqa: E402
from uer.fastbert.data import Encoded, encode_tsv  # noqa: E402
from uer.exit.pipeline import subsample  # noqa: E402
from uer.exit.policies import policy_names  # noqa: E402
from uer.exit.sweep import chosen_speed  # noqa: E402
from uer.fastbert.evaluate import all_layer_probs, sweep  # noqa: E402
from uer.fastbert.flops import FlopModel  # noqa: E402
from uer.fastbert.predictor import FastBertClassifier  # noqa: E402
from uer.fastbert.training import BRANCH_TRAININGS  # noqa: E402
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, non_negative_int, output_dir, positive_float, positive_int, run_main  # noqa: E402
from uer.utils.paths import resolve_path  # noqa: E402

POLICY_NAMES: tuple[str, ...] = policy_names()

# The sweep grid of ``speed`` (every policy reads it in [0, 1]: 0 = the full model, 1 = the most
# eager exit). Denser near 1, where many-class entropy exits start to fire.
SPEEDS = tuple(round(0.05 * i, 2) for i in range(19)) + (0.92, 0.94, 0.96, 0.97, 0.98, 0.99, 0.995, 1.0)
TOLERANCE = 0.01  # "within 1 point of the teacher"
ROW_KEYS = ("speed", "accuracy", "macro_f1", "mean_exit_layer", "flops_speedup")


@dataclass(frozen=True)
class ModelChoice:
    config_path: str
    pretrained_model_path: str | None
    vocab_path: str


MINILM = ModelChoice("models/bert/minilm_l6_h384.yaml", "models/minilm/model.pt", "models/minilm/vocab.txt")
DEFAULT_MODELS = {
    "tweets": MINILM,
    "sotu_decades": MINILM,
    "reviews_zh": ModelChoice("models/bert/mini.yaml", None, "models/google_zh_vocab.txt"),
}


# run_fastbert.py's flags the bench passes on, and the bench's own names for them
TRAINING_FLAGS = {"train_samples": "train_samples", "dev_samples": "dev_samples", "epochs_num": "epochs",
                  "distill_epochs_num": "distill_epochs", "batch_size": "batch_size", "seq_length": "seq_length",
                  "learning_rate": "learning_rate", "distill_learning_rate": "distill_learning_rate", "seed": "seed",
                  "precision": "precision"}  # precision: training only (autocast); the sweeps and timings run in fp32
QUICK = {"train_samples": 600, "dev_samples": 200, "test_samples": 400, "epochs": 1, "distill_epochs": 1, "timing_samples": 32}


# ------------------------------------------------------------------------------------ training


def trained_model(name: str, choice: ModelChoice, data_dir: Path, training: str, settings: dict, threads: int,
                  folder: Path) -> tuple[Path, dict[str, Any]]:
    """``run_fastbert.py`` trains one model into ``folder`` (no test set: the sweeps are ours); a
    finished run of the same command and data is reused, an interrupted one resumed. Returns the
    model and run_fastbert.py's report."""
    import run_fastbert

    argv = [*(["--pretrained_model_path", choice.pretrained_model_path] if choice.pretrained_model_path else []),
            "--config_path", choice.config_path, "--vocab_path", choice.vocab_path,
            "--train_path", str(data_dir / "train.tsv"), "--dev_path", str(data_dir / "dev.tsv"),
            *(x for flag, key in TRAINING_FLAGS.items() for x in (f"--{flag}", str(settings[key]))),
            "--branch_training", training, "--threads", str(threads), "--no_progress",
            "--output_model_path", str(folder / "model.pt"), "--report_path", str(folder / "report.json")]
    data = hashlib.sha1(b"".join((data_dir / f"{split}.tsv").read_bytes() for split in ("train", "dev"))).hexdigest()
    signature = folder / "bench_signature.txt"
    key = "\n".join([*argv, f"data sha1 {data}"]) + "\n"
    ours = signature.is_file() and signature.read_text(encoding="utf-8") == key
    if ours and (folder / "report.json").is_file():
        print(f"{name}/{training}: reusing {folder / 'model.pt'}", flush=True)
        return folder / "model.pt", {**_read(folder / "report.json"), "reused": True}
    if not ours and folder.is_dir() and any(folder.iterdir()):
        if not signature.is_file():
            raise UsageError(f"--out_dir: {folder} holds files this bench did not write; choose another --out_dir")
        shutil.rmtree(folder)  # this bench's run with other settings or data: trained again
    write_text(signature, key)  # before training: an interrupted run is resumed by run_fastbert.py
    code = run_fastbert.main(argv)
    if code != 0:
        raise UsageError(f"{name}/{training}: run_fastbert.py failed (exit {code}); its message is above")
    return folder / "model.pt", _read(folder / "report.json")


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ sweeps


def static_points(layer_probs, gold, lengths, flop_model: FlopModel) -> list[dict]:
    """The first k layers + branch k, k = 1..L-1: a smaller model cut from the same one."""
    full = float(flop_model.full(lengths).mean())
    out = []
    for k in range(1, layer_probs.shape[1]):
        flops = float((flop_model.embedding(lengths) + k * flop_model.layer(lengths) + flop_model.branch(lengths)).mean())
        out.append({"layers": k, "accuracy": float((layer_probs[:, k - 1].argmax(-1) == gold).double().mean()),
                    "flops_speedup": full / flops})
    return out


def accuracy_at(rows: Sequence[dict], speedup: float) -> float | None:
    """The policy's accuracy at a FLOPs speed-up, reading its curve as the best accuracy it offers at
    that speed-up or more (a user picks the better speed), linearly interpolated between points;
    None when the policy never gets that fast."""
    points = sorted((r["flops_speedup"], r["accuracy"]) for r in rows)
    frontier = []  # (speed-up, best accuracy at >= that speed-up), speed-up increasing
    best = -1.0
    for x, y in reversed(points):
        best = max(best, y)
        frontier.append((x, best))
    frontier.reverse()
    if speedup > frontier[-1][0] + 1e-9:
        return None
    if speedup <= frontier[0][0]:
        return frontier[0][1]
    for (x0, y0), (x1, y1) in zip(frontier, frontier[1:]):
        if x0 <= speedup <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (speedup - x0) / (x1 - x0)
    return frontier[-1][1]


def above_static(rows: Sequence[dict], static: Sequence[dict]) -> dict[str, Any]:
    checks = []
    for s in static:
        acc = accuracy_at(rows, s["flops_speedup"])
        checks.append({"layers": s["layers"], "static_accuracy": s["accuracy"], "policy_accuracy": acc,
                       "above": acc is not None and acc >= s["accuracy"] - 1e-12})
    return {"all_above": all(c["above"] for c in checks), "checks": checks}


def evaluate(clf: FastBertClassifier, test: Encoded, policies: Sequence[str], timing_samples: int, batch_size: int,
             repeats: int) -> dict[str, Any]:
    """Teacher, static points, every policy's sweep and the wall clock at its chosen point."""
    runner, pad_id = clf.runner, clf.tokenizer.vocab.pad_id
    started = time.perf_counter()
    layer_probs = all_layer_probs(runner, test, pad_id, 64)
    gold, lengths = torch.tensor(test.labels), torch.tensor(test.lengths(), dtype=torch.float64)
    teacher = float((layer_probs[:, -1].argmax(-1) == gold).double().mean())
    static = static_points(layer_probs, gold, lengths, FlopModel.of(runner.model))
    timed_n = min(timing_samples, len(test))
    timed = Encoded(test.ids[:timed_n], test.segs[:timed_n], test.labels[:timed_n])
    out, walls = {}, {}
    for policy in policies:
        rows = [{k: r[k] for k in ROW_KEYS} for r in sweep(runner, test, pad_id, SPEEDS, measure=False, policy=policy)["rows"]]
        ch = chosen_speed(rows, teacher, tolerance=TOLERANCE)
        out[policy] = {"rows": rows, "chosen": ch and dict(ch), "above_static": above_static(rows, static)}
        if ch and timed_n:  # the library's timing: each batch best of repeats, full model and speed taking turns
            at = sweep(runner, timed, pad_id, [ch["speed"]], timing_samples=timed_n, batch_size=batch_size,
                       repeats=repeats, policy=policy)
            out[policy]["chosen"].update({k: at["rows"][0][k] for k in
                                          ("flops_speedup_timed", "wall_speedup_batch1", "wall_speedup_batched")})
            walls[f"{policy}@{ch['speed']:g}"] = at["wall_seconds"]
    return {"teacher_accuracy": teacher, "policies": out, "static": static, "layers": runner.layers_num,
            "sweep_seconds": time.perf_counter() - started, "timing_samples": timed_n, "runtime": runner.name,
            "wall_seconds": walls or None}


# ------------------------------------------------------------------------------------ report


def plot(path: Path, dataset: str, results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trainings = list(results)
    fig, axes = plt.subplots(1, len(trainings), figsize=(6.2 * len(trainings), 4.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, training in zip(axes[0], trainings):
        r = results[training]
        for i, (policy, p) in enumerate(r["policies"].items()):
            c = colours[i % len(colours)]
            pts = sorted((row["flops_speedup"], row["accuracy"]) for row in p["rows"])
            ax.plot(*zip(*pts), marker=".", color=c, label=f"{policy} (FLOPs)")
            ch = p["chosen"]
            if ch and ch.get("wall_speedup_batch1"):
                ax.plot([ch["wall_speedup_batch1"]], [ch["accuracy"]], marker="*", markersize=11, color=c, linestyle="none")
                ax.plot([ch["wall_speedup_batched"]], [ch["accuracy"]], marker="P", markersize=9, color=c, linestyle="none")
        st = r["static"]
        ax.plot([s["flops_speedup"] for s in st], [s["accuracy"] for s in st], "ks", linestyle="none", label="static first k layers")
        for s in st:
            ax.annotate(f"k={s['layers']}", (s["flops_speedup"], s["accuracy"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.axhline(r["teacher_accuracy"], color="grey", linestyle="--", linewidth=1, label="teacher")
        ax.axhline(r["teacher_accuracy"] - TOLERANCE, color="grey", linestyle=":", linewidth=1, label="teacher - 1 point")
        ax.set_title(f"{dataset}, branches trained by {training}")
        ax.set_xlabel("speed-up vs full model (x): lines FLOPs; * wall batch 1, + wall batched")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def fmt(value, spec=".2f", suffix="x") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def goal_lines(results: dict[str, dict[str, dict]]) -> list[tuple[str, bool | None, str]]:
    """(goal, met?, evidence); met None = the data for it was not run."""
    goals = []

    def speedup(ds, tr, policy):
        ch = results[ds][tr]["policies"].get(policy, {}).get("chosen")
        return ch["flops_speedup"] if ch else None

    many = [ds for ds in results if results[ds][next(iter(results[ds]))]["labels_num"] >= 10]
    for ds in many:
        evidence, met = [], False
        for tr, r in results[ds].items():
            ent = speedup(ds, tr, "entropy")
            others = {p: speedup(ds, tr, p) for p in r["policies"] if p != "entropy"}
            best = max(((v, p) for p, v in others.items() if v is not None), default=(None, None))
            if best[0] is not None and best[0] >= 1.5 and ent is not None and ent < 1.2:
                met = True
            evidence.append(f"{tr}: entropy {fmt(ent)}, best other {best[1]} {fmt(best[0])}")
        entropy_fine = all((speedup(ds, tr, "entropy") or 0) >= 1.5 for tr in results[ds])
        goals.append((f"{ds} ({results[ds][next(iter(results[ds]))]['labels_num']} classes): a policy >= 1.5x FLOPs within 1 point "
                      "where entropy < 1.2x" + (" (entropy itself >= 1.5x: entropy is fine here)" if entropy_fine else ""),
                      met, "; ".join(evidence)))
    for ds in results:
        if ds in many:
            continue
        evidence = []
        for tr, r in results[ds].items():
            evidence.append(f"{tr}: " + ", ".join(f"{p} {fmt(speedup(ds, tr, p))}" for p in r["policies"]))
        goals.append((f"{ds}: each policy's FLOPs speed-up within 1 point of the teacher, beside entropy's", None, "; ".join(evidence)))
    failures = []
    for ds in results:
        for tr, r in results[ds].items():
            for p, pr in r["policies"].items():
                if not pr["above_static"]["all_above"]:
                    below = [c["layers"] for c in pr["above_static"]["checks"] if not c["above"]]
                    failures.append(f"{ds}/{tr}/{p} at k={','.join(map(str, below))}")
    goals.append(("every adaptive curve lies above the static k-layer points at equal FLOPs", not failures,
                  "below or never that fast: " + "; ".join(failures) if failures else "all above"))
    return goals


def table(results: dict[str, dict[str, dict]]) -> list[str]:
    head = (f"{'dataset':<13} {'training':<8} {'policy':<13} {'teacher':>7} {'speed':>6} {'acc':>7} {'exit':>5} "
            f"{'FLOPsx':>7} {'timedx':>7} {'wall1x':>7} {'wallBx':>7}  above static")
    lines = ["largest speed within 1 point of the teacher, per policy", head, "-" * len(head)]
    for name, per in results.items():
        for training, r in per.items():
            for policy, p in r["policies"].items():
                c = p["chosen"] or {}
                beaten = sum(x["above"] for x in p["above_static"]["checks"])
                lines.append(
                    f"{name:<13} {training:<8} {policy:<13} {r['teacher_accuracy']:>7.4f} {fmt(c.get('speed'), '6.3f', ''):>6} "
                    f"{fmt(c.get('accuracy'), '7.4f', ''):>7} {fmt(c.get('mean_exit_layer'), '5.2f', ''):>5} "
                    f"{fmt(c.get('flops_speedup')):>7} {fmt(c.get('flops_speedup_timed')):>7} "
                    f"{fmt(c.get('wall_speedup_batch1')):>7} {fmt(c.get('wall_speedup_batched')):>7}  "
                    f"{beaten}/{len(p['above_static']['checks'])}")
            lines.append(f"{name:<13} {training:<8} {'static k':<13} " + ", ".join(
                f"k={s['layers']}: {s['accuracy']:.4f} @ {s['flops_speedup']:.2f}x" for s in r["static"]))
    return lines


# ------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["tweets", "reviews_zh", "sotu_decades"],
                   help="folders under --data_dir holding train/dev/test.tsv")
    p.add_argument("--data_dir", default=str(ROOT / "data"))
    p.add_argument("--branch_trainings", nargs="+", choices=BRANCH_TRAININGS, default=list(BRANCH_TRAININGS))
    p.add_argument("--policies", nargs="+", choices=POLICY_NAMES, default=list(POLICY_NAMES))
    p.add_argument("--model", nargs=4, action="append", default=[], metavar=("DATASET", "CONFIG", "PRETRAINED", "VOCAB"),
                   help="the model of one dataset; PRETRAINED 'none' starts from random weights")
    p.add_argument("--quick", action="store_true", help=f"the ~20-minute run: {QUICK} (flags given explicitly still win)")
    p.add_argument("--train_samples", type=non_negative_int, default=8000, help="seeded training subset (0: all)")
    p.add_argument("--dev_samples", type=non_negative_int, default=1000, help="seeded dev subset (0: all)")
    p.add_argument("--test_samples", type=non_negative_int, default=0, help="seeded test subset the curves use (0: all)")
    p.add_argument("--epochs", type=positive_int, default=3, help="stage 1 / joint epochs")
    p.add_argument("--distill_epochs", type=non_negative_int, default=2, help="self-distillation epochs (distill only)")
    p.add_argument("--batch_size", type=positive_int, default=32)
    p.add_argument("--seq_length", type=positive_int, default=64)
    p.add_argument("--learning_rate", type=positive_float, default=1e-4)
    p.add_argument("--distill_learning_rate", type=positive_float, default=5e-4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="training autocast (bf16 pays only on CPUs with bf16 units: avx512_bf16 / AMX); inference is fp32")
    p.add_argument("--timing_samples", type=non_negative_int, default=256, help="test rows timed at batch 1 and batched (0: no wall clock)")
    p.add_argument("--timing_batch_size", type=positive_int, default=32)
    p.add_argument("--repeats", type=positive_int, default=2)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out_dir", default=str(ROOT / "out" / "exit_policies"), help="trained models (reused when settings match)")
    p.add_argument("--results_dir", default=str(ROOT / "bench" / "results"))
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.quick:  # parsed again with the quick defaults
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    return run_main("exit_policies.py", lambda: _run(args, argv), (ConfigError, TsvError))


def _run(args, argv: list[str] | None) -> int:
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    settings = {key: getattr(args, key) for key in TRAINING_FLAGS.values()}
    models = dict(DEFAULT_MODELS)
    for name, config, pretrained, vocab in args.model:
        models[name] = ModelChoice(config, None if pretrained == "none" else pretrained, vocab)
    data_dir = Path(args.data_dir)
    for name in args.datasets:
        if name not in models:
            raise UsageError(f"--datasets {name}: no model for it; give --model {name} CONFIG PRETRAINED|none VOCAB")
        if not (data_dir / name / "test.tsv").is_file():
            raise UsageError(f"--datasets {name}: {data_dir / name / 'test.tsv'} does not exist "
                             "(scripts/build_sentiment_datasets.py builds tweets and reviews_zh, scripts/build_sotu_dataset.py sotu_decades)")
        for path in (models[name].config_path, models[name].vocab_path, models[name].pretrained_model_path):
            if path and not resolve_path(path).is_file():
                raise UsageError(f"--model {name}: {path} does not exist")
    out_dir, results_dir = output_dir(args.out_dir, "--out_dir"), output_dir(args.results_dir, "--results_dir")

    results: dict[str, dict[str, dict]] = {}
    for name in args.datasets:
        results[name] = {}
        for training in args.branch_trainings:
            path, report = trained_model(name, models[name], data_dir / name, training, settings, args.threads,
                                         out_dir / f"{name}_{training}")
            clf = FastBertClassifier.load(path)
            full = encode_tsv(clf.tokenizer, read_tsv(data_dir / name / "test.tsv", labels=clf.labels), clf.seq_length)
            rows = subsample(len(full), args.test_samples, args.seed + 2) or range(len(full))
            encoded = Encoded([full.ids[i] for i in rows], [full.segs[i] for i in rows], [full.labels[i] for i in rows])
            r = evaluate(clf, encoded, args.policies, args.timing_samples, args.timing_batch_size, args.repeats)
            results[name][training] = {
                "labels_num": len(clf.labels), "train_rows": report["train_rows"], "dev_rows": report["dev_rows"],
                "test_rows": len(encoded), "model": asdict(models[name]), "training": training,
                "train_seconds": report["seconds"], "reused": report.get("reused", False),
                "stage1_dev": report["stage1"]["dev"], "stage2_dev": (report["stage2"] or {}).get("dev"), **r}
            print(f"{name}/{training}: teacher {r['teacher_accuracy']:.4f} on {len(encoded)} test rows; "
                  + ", ".join(f"{p} {fmt(c['chosen'] and c['chosen']['flops_speedup'])}" for p, c in r["policies"].items()),
                  flush=True)
        plot(results_dir / f"exit_policies_{name}.png", name, results[name])

    lines = table(results)
    goals = goal_lines(results)
    for goal, met, evidence in goals:
        lines.append(f"goal [{'info' if met is None else ('met' if met else 'NOT met')}]: {goal} -- {evidence}")
    cpu = cpu_info()
    lines.append(f"CPU: {cpu['model']} ({cpu['cores']} CPUs; {' '.join(cpu['shown_flags'])}); {args.threads} threads; "
                 f"load average {load_average()}; {time.perf_counter() - started:.0f}s in all")
    print("\n".join(lines), flush=True)
    write_json(results_dir / "exit_policies.json", {
        "command": "python bench/exit_policies.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": settings, "test_samples": args.test_samples, "speeds": list(SPEEDS), "results": results,
        "goals": [{"goal": g, "met": m, "evidence": e} for g, m, e in goals], "cpu": cpu, "load_average": load_average(),
        "threads": args.threads, "torch": torch.__version__, "seconds": time.perf_counter() - started})
    print(f"written {results_dir / 'exit_policies.json'} and exit_policies_<dataset>.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
