"""Early-exit policies side by side, batched, on the same trained models: accuracy against FLOPs
speed-up and measured wall clock, per policy and per way of training the branches.

    flock /tmp/uer-bench.lock python bench/exit_policies.py --quick      # ~20 min on 2 CPU cores
    python bench/exit_policies.py --datasets tweets --branch_trainings joint --policies entropy patience

For every dataset x branch training (``distill``: FastBERT's stage 1 + self-distillation;
``joint``: PABEE's weighted cross-entropy over every branch, see ``uer.fastbert.training``) one
model is trained (or reused: ``<out_dir>/<dataset>_<training>/model.pt`` with the same settings),
every branch's probabilities on the test rows are computed ONCE, and every policy is swept
offline over its ``speed`` grid (``exits_for_speeds``): accuracy, mean exit layer and analytic
FLOPs per point. Wall clock is measured only at each policy's chosen point (the largest FLOPs
speed-up within 1 point of the model's own teacher), batch 1 and batched, against the full model.

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
import os
import platform
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from uer.checkpoint import load_state, read_checkpoint, save_checkpoint  # noqa: E402
from uer.config import ConfigError, load_config, to_dict  # noqa: E402
from uer.data.tsv import TsvData, TsvError, read_tsv  # noqa: E402
from uer.fastbert.build import build_fastbert, fastbert_config, load_backbone  # noqa: E402
from uer.fastbert.data import Encoded, encode_tsv  # noqa: E402
from uer.fastbert.evaluate import all_layer_probs, timing_batches  # noqa: E402
from uer.fastbert.flops import FlopModel  # noqa: E402
from uer.fastbert.inference import EarlyExit, exits_for_speeds  # noqa: E402
from uer.fastbert.report import classification_metrics, write_json  # noqa: E402
from uer.fastbert.training import BRANCH_TRAININGS, StageOptions, distill, finetune, needs_distillation  # noqa: E402
from uer.utils.cli import UsageError, non_negative_int, output_dir, positive_float, positive_int, run_main  # noqa: E402

from uer.fastbert.policies import POLICIES  # noqa: E402

POLICY_NAMES: tuple[str, ...] = tuple(POLICIES.names())

# The sweep grid of ``speed`` (every policy reads it in [0, 1]: 0 = the full model, 1 = the most
# eager exit). Denser near 1, where many-class entropy exits start to fire.
SPEEDS = tuple(round(0.05 * i, 2) for i in range(19)) + (0.92, 0.94, 0.96, 0.97, 0.98, 0.99, 0.995, 1.0)
TOLERANCE = 0.01  # "within 1 point of the teacher"


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


@dataclass(frozen=True)
class TrainSettings:
    train_samples: int
    dev_samples: int
    epochs: int
    distill_epochs: int
    batch_size: int
    seq_length: int
    learning_rate: float
    distill_learning_rate: float
    seed: int
    precision: str = "fp32"  # training only (autocast); the sweep and the timings run in fp32


# ------------------------------------------------------------------------------------ training


def subsample(data: TsvData, n: int, seed: int) -> TsvData:
    if not n or n >= len(data.examples):
        return data
    rows = sorted(random.Random(seed).sample(range(len(data.examples)), n))
    return TsvData(data.path, [data.examples[i] for i in rows], data.labels, data.pair, data.skipped)


def trained_model(name: str, choice: ModelChoice, data_dir: Path, training: str, settings: TrainSettings,
                  test_samples: int, out_dir: Path, say) -> tuple[torch.nn.Module, Encoded, int, dict[str, Any]]:
    """Train (or reuse) one model; return it, the encoded test rows, the pad id and what was trained."""
    from uer.tokenizers import build_tokenizer

    config = fastbert_config(load_config(resolve(choice.config_path)))
    tokenizer = build_tokenizer(config.tokenizer, vocab_path=resolve(choice.vocab_path))
    train_full = read_tsv(data_dir / "train.tsv")
    labels = train_full.labels
    train = subsample(train_full, settings.train_samples, settings.seed)
    dev = subsample(read_tsv(data_dir / "dev.tsv", labels=labels), settings.dev_samples, settings.seed + 1)
    test = subsample(read_tsv(data_dir / "test.tsv", labels=labels), test_samples, settings.seed + 2)
    seq = settings.seq_length
    train_enc, dev_enc, test_enc = (encode_tsv(tokenizer, d, seq) for d in (train, dev, test))
    folder = out_dir / f"{name}_{training}"
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.pt"
    signature = {"model": asdict(choice), "training": training, "settings": asdict(settings),
                 "train": digest_rows(train_enc), "dev": digest_rows(dev_enc)}
    vocab_size, pad_id = len(tokenizer.vocab), tokenizer.vocab.pad_id
    torch.manual_seed(settings.seed)
    model = build_fastbert(config, vocab_size=vocab_size, labels_num=len(labels))
    info = {"labels_num": len(labels), "train_rows": len(train.examples), "dev_rows": len(dev.examples),
            "test_rows": len(test.examples), "model": asdict(choice), "training": training}
    if model_path.is_file() and read_checkpoint(model_path)["extra"].get("bench_signature") == signature:
        load_state(model, read_checkpoint(model_path)["model"], str(model_path), config.source)
        say(f"{name}/{training}: reusing {model_path}")
        info["reused"] = True
        return model.eval(), test_enc, pad_id, info
    if choice.pretrained_model_path:
        load_backbone(model, resolve(choice.pretrained_model_path), config.source)
    extra = {"labels": list(labels), "vocab_size": vocab_size, "seq_length": seq, "vocab_file": "vocab.txt"}

    def stage(n: int, epochs: int, lr: float) -> StageOptions:
        return StageOptions(epochs=epochs, batch_size=settings.batch_size, learning_rate=lr, warmup=0.1, weight_decay=0.01,
                            seed=settings.seed, report_steps=10**9, checkpoint_path=str(folder / f"stage{n}.pt"),
                            best_path=str(folder / f"stage{n}_best.pt"), progress=False, precision=settings.precision)

    started = time.perf_counter()
    quiet = _Quiet()
    with quiet:
        s1 = finetune(model, config, train_enc, dev_enc, pad_id, stage(1, settings.epochs, settings.learning_rate), extra,
                      branch_training=training)
        s2 = None
        if needs_distillation(training) and settings.distill_epochs > 0:
            s2 = distill(model, config, Encoded(train_enc.ids, train_enc.segs, None), dev_enc, pad_id,
                         stage(2, settings.distill_epochs, settings.distill_learning_rate), extra)
    info["train_seconds"] = time.perf_counter() - started
    info["stage1_dev"], info["stage2_dev"] = s1["dev"], s2["dev"] if s2 else None
    save_checkpoint(model_path, model, config, **extra, bench_signature=signature)
    (folder / "vocab.txt").write_bytes(resolve(choice.vocab_path).read_bytes())
    say(f"{name}/{training}: trained in {info['train_seconds']:.0f}s ({len(train.examples)} rows, "
        f"{settings.epochs} epoch(s){f' + {settings.distill_epochs} distillation' if s2 else ''}); "
        f"dev {json.dumps(s1['dev'][-1])}")
    return model.eval(), test_enc, pad_id, info


class _Quiet:
    """The stages print a line per epoch; the bench prints its own summary."""

    def __enter__(self):
        self._stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")

    def __exit__(self, *exc):
        sys.stdout.close()
        sys.stdout = self._stdout


def digest_rows(data: Encoded) -> str:
    h = hashlib.sha1(repr((data.ids, data.labels)).encode())
    return f"{len(data)} rows, sha1 {h.hexdigest()[:16]}"


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO / p


# ------------------------------------------------------------------------------------ sweeps


def sweep_policy(layer_probs, gold, lengths, flop_model: FlopModel, policy: str, labels_num: int) -> list[dict]:
    full = float(flop_model.full(lengths).mean())
    rows = []
    for speed, result in zip(SPEEDS, exits_for_speeds(layer_probs, SPEEDS, policy=policy)):
        flops = float(flop_model.early_exit(lengths, result.exit_layer.double()).mean())
        rows.append({"speed": speed, "accuracy": classification_metrics(result.probs.argmax(-1), gold, labels_num)["accuracy"],
                     "mean_exit_layer": float(result.exit_layer.double().mean()), "flops_speedup": full / flops})
    return rows


def static_points(layer_probs, gold, lengths, flop_model: FlopModel) -> list[dict]:
    """The first k layers + branch k, k = 1..L-1: a smaller model cut from the same one."""
    full = float(flop_model.full(lengths).mean())
    out = []
    for k in range(1, layer_probs.shape[1]):
        flops = float((flop_model.embedding(lengths) + k * flop_model.layer(lengths) + flop_model.branch_flops(lengths)).mean())
        out.append({"layers": k, "accuracy": float((layer_probs[:, k - 1].argmax(-1) == gold).double().mean()),
                    "flops_speedup": full / flops})
    return out


def chosen(rows: Sequence[dict], teacher: float) -> dict | None:
    """The largest FLOPs speed-up whose accuracy is within 1 point of the teacher's."""
    ok = [r for r in rows if r["accuracy"] >= teacher - TOLERANCE - 1e-12]
    return max(ok, key=lambda r: (r["flops_speedup"], r["accuracy"])) if ok else None


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


# ------------------------------------------------------------------------------------ wall clock


def timed(runner: EarlyExit, batch, config) -> float:
    start = time.perf_counter()
    if config is None:
        runner.full_model_probs(batch["src"], batch["seg"])
    else:
        runner.predict(batch["src"], batch["seg"], config[1], policy=config[0])
    return time.perf_counter() - start


def measure(runner: EarlyExit, batches, configs: Sequence[tuple[str, float]], repeats: int) -> dict:
    """Seconds over ``batches`` for the full model (key None) and each (policy, speed); each batch
    best of ``repeats`` after a warm-up, the configurations taking turns batch by batch."""
    keys = [None, *configs]
    total = {k: 0.0 for k in keys}
    for batch in batches:
        for k in keys:
            timed(runner, batch, k)
            total[k] += min(timed(runner, batch, k) for _ in range(repeats))
    return total


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def fmt(value, spec=".2f", suffix="x") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def cpu_model() -> dict[str, str]:
    info = {"machine": platform.machine(), "cpus": str(os.cpu_count())}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            info["model"] = value.strip()
        elif key.strip() == "Flags":
            flags = value.split()
            info["flags"] = " ".join(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4")))
    return info


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


# ------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["tweets", "reviews_zh", "sotu_decades"],
                   help="folders under --data_dir holding train/dev/test.tsv")
    p.add_argument("--data_dir", default=str(REPO / "data"))
    p.add_argument("--branch_trainings", nargs="+", choices=BRANCH_TRAININGS, default=list(BRANCH_TRAININGS))
    p.add_argument("--policies", nargs="+", choices=POLICY_NAMES, default=list(POLICY_NAMES))
    p.add_argument("--model", nargs=4, action="append", default=[], metavar=("DATASET", "CONFIG", "PRETRAINED", "VOCAB"),
                   help="the model of one dataset; PRETRAINED 'none' starts from random weights")
    p.add_argument("--quick", action="store_true", help="smaller subsets and fewer epochs (the ~20-minute run)")
    p.add_argument("--train_samples", type=non_negative_int, help="seeded training subset (0: all)")
    p.add_argument("--dev_samples", type=non_negative_int, help="seeded dev subset (0: all)")
    p.add_argument("--test_samples", type=non_negative_int, help="seeded test subset the curves use (0: all)")
    p.add_argument("--epochs", type=positive_int, help="stage 1 / joint epochs")
    p.add_argument("--distill_epochs", type=non_negative_int, help="self-distillation epochs (distill only)")
    p.add_argument("--batch_size", type=positive_int, default=32)
    p.add_argument("--seq_length", type=positive_int, default=64)
    p.add_argument("--learning_rate", type=positive_float, default=1e-4)
    p.add_argument("--distill_learning_rate", type=positive_float, default=5e-4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="training autocast (bf16 pays only on CPUs with bf16 units: avx512_bf16 / AMX); inference is fp32")
    p.add_argument("--timing_samples", type=non_negative_int, help="test rows timed at batch 1 and batched (0: no wall clock)")
    p.add_argument("--timing_batch_size", type=positive_int, default=32)
    p.add_argument("--repeats", type=positive_int, default=2)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out_dir", default=str(REPO / "out" / "exit_policies"), help="trained models (reused when settings match)")
    p.add_argument("--results_dir", default=str(REPO / "bench" / "results"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        started = time.perf_counter()
        torch.set_num_threads(args.threads)
        quick = args.quick
        settings = TrainSettings(
            train_samples=args.train_samples if args.train_samples is not None else (600 if quick else 8000),
            dev_samples=args.dev_samples if args.dev_samples is not None else (200 if quick else 1000),
            epochs=args.epochs or (1 if quick else 3), distill_epochs=args.distill_epochs if args.distill_epochs is not None else (1 if quick else 2),
            batch_size=args.batch_size, seq_length=args.seq_length, learning_rate=args.learning_rate,
            distill_learning_rate=args.distill_learning_rate, seed=args.seed, precision=args.precision)
        test_samples = args.test_samples if args.test_samples is not None else (400 if quick else 0)
        timing_samples = args.timing_samples if args.timing_samples is not None else (32 if quick else 256)
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
                if path and not resolve(path).is_file():
                    raise UsageError(f"--model {name}: {path} does not exist")
        out_dir, results_dir = output_dir(args.out_dir, "--out_dir"), output_dir(args.results_dir, "--results_dir")

        def say(message: str) -> None:
            print(message, flush=True)

        results: dict[str, dict[str, dict]] = {}
        for name in args.datasets:
            results[name] = {}
            for training in args.branch_trainings:
                model, test, pad_id, info = trained_model(name, models[name], data_dir / name, training, settings,
                                                          test_samples, out_dir, say)
                runner = EarlyExit(model)
                t0 = time.perf_counter()
                layer_probs = all_layer_probs(runner, test, pad_id, 64)  # once per model: every policy is swept from it
                gold = torch.tensor(test.labels)
                lengths = torch.tensor(test.lengths(), dtype=torch.float64)
                flop_model = FlopModel.of(model)
                teacher = float((layer_probs[:, -1].argmax(-1) == gold).double().mean())
                policies = {}
                for policy in args.policies:
                    rows = sweep_policy(layer_probs, gold, lengths, flop_model, policy, info["labels_num"])
                    policies[policy] = {"rows": rows, "chosen": chosen(rows, teacher)}
                static = static_points(layer_probs, gold, lengths, flop_model)
                for p in policies.values():
                    p["above_static"] = above_static(p["rows"], static)
                sweep_seconds = time.perf_counter() - t0
                walls = None
                timed_n = min(timing_samples, len(test))
                if timed_n:
                    index = list(range(timed_n))
                    configs = [(p, policies[p]["chosen"]["speed"]) for p in policies if policies[p]["chosen"]]
                    configs = list(dict.fromkeys(configs))
                    singles = timing_batches(test, index, pad_id, 1, runner.device)
                    batched = timing_batches(test, index, pad_id, args.timing_batch_size, runner.device)
                    walls = {"1": measure(runner, singles, configs, args.repeats), "b": measure(runner, batched, configs, args.repeats)}
                    sub = Encoded(test.ids[:timed_n], test.segs[:timed_n], test.labels[:timed_n])
                    sub_probs = layer_probs[:timed_n]
                    sub_len = lengths[:timed_n]
                    for p, speed in configs:
                        ch = policies[p]["chosen"]
                        (ex,) = exits_for_speeds(sub_probs, [speed], policy=p)
                        ch["flops_speedup_timed"] = float(flop_model.full(sub_len).mean()) / float(
                            flop_model.early_exit(sub_len, ex.exit_layer.double()).mean())
                        ch["wall_speedup_batch1"] = walls["1"][None] / walls["1"][(p, speed)]
                        ch["wall_speedup_batched"] = walls["b"][None] / walls["b"][(p, speed)]
                    del sub
                results[name][training] = {
                    **info, "teacher_accuracy": teacher, "policies": policies, "static": static, "layers": runner.layers_num,
                    "sweep_seconds": sweep_seconds, "timing_samples": timed_n, "backend": runner.backend,
                    "wall_seconds": None if walls is None else {
                        which: {("full" if k is None else f"{k[0]}@{k[1]:g}"): v for k, v in w.items()} for which, w in walls.items()},
                }
                say(f"{name}/{training}: teacher {teacher:.4f} on {len(test)} test rows; "
                    + ", ".join(f"{p} {fmt(c['chosen'] and c['chosen']['flops_speedup'])}" for p, c in policies.items()))
            plot(results_dir / f"exit_policies_{name}.png", name, results[name])

        # ------------------------------------------------------------------ the table and goals
        head = (f"{'dataset':<13} {'training':<8} {'policy':<13} {'teacher':>7} {'speed':>6} {'acc':>7} {'exit':>5} "
                f"{'FLOPsx':>7} {'timedx':>7} {'wall1x':>7} {'wallBx':>7}  above static")
        lines = ["largest FLOPs speed-up within 1 point of the teacher, per policy", head, "-" * len(head)]
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
        goals = goal_lines(results)
        for goal, met, evidence in goals:
            status = "info" if met is None else ("met" if met else "NOT met")
            lines.append(f"goal [{status}]: {goal} -- {evidence}")
        cpu = cpu_model()
        load = os.getloadavg()
        lines.append(f"CPU: {cpu.get('model', '?')} ({cpu.get('cpus')} CPUs; {cpu.get('flags', '')}); {args.threads} threads; "
                     f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {time.perf_counter() - started:.0f}s in all")
        print("\n".join(lines), flush=True)
        out = {"command": "python bench/exit_policies.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "settings": asdict(settings), "test_samples": test_samples, "speeds": list(SPEEDS),
               "results": results,
               "goals": [{"goal": g, "met": m, "evidence": e} for g, m, e in goals], "cpu": cpu, "load_average": load,
               "threads": args.threads, "torch": torch.__version__, "seconds": time.perf_counter() - started}
        write_json(results_dir / "exit_policies.json", out)
        print(f"written {results_dir / 'exit_policies.json'} and exit_policies_<dataset>.png", flush=True)
        return 0

    return run_main("exit_policies.py", body, (ConfigError, TsvError))


if __name__ == "__main__":
    sys.exit(main())
