"""FastBERT speed/accuracy trade-off on the tweet test set, and per-sentence latency against the
authors' package.

    python bench/fastbert_tradeoff.py                        # uses out/fastbert/model.pt (run_fastbert.py's main job)
    python bench/fastbert_tradeoff.py --model out/fastbert/model.pt --threads 2 --timing_samples 500

    python bench/fastbert_tradeoff.py --plan off             # early exit at every speed, as the policy says
    python bench/fastbert_tradeoff.py --plan here            # the model's exit profile, step costs measured now

Writes ``bench/results/fastbert_tradeoff.json`` and prints:
0. with ``--plan stored`` (default) or ``here``: the model's exit plan (``uer.exit.pays``: made on
   the dev set by ``run_fastbert.py``; ``here`` re-measures its step costs on this machine; a model
   without one gets one made on ``--dev_path``) and, per speed, whether the runner runs early exit or
   the full model (where early exit would be slower: the teacher's answer, every row at the last layer);
1. the speed table (accuracy, macro-F1, mean exit layer, FLOPs speed-up, wall-clock speed-up at
   batch 1 and at batch 32 with shrinking batches), teacher accuracy, and the goals checked at the
   largest speed whose accuracy is within 1 point of the teacher; at a full-depth speed the table
   shows the teacher (what ``predict`` answers there);
   then every speed's wall time over speed 0's (the full model), batch 1 and batched, against 0.95;
2. latency per sentence at batch 1, 128 tokens, for a 3-layer/384 (MiniLM-sized) and a
   12-layer/768 (BERT-base-sized) model, full depth and exiting at layer 1, beside the authors'
   ``fastbert==0.2.2`` numbers measured on 2 threads (batch 1 only, always padded to 128).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT as REPO, timed, write_json  # noqa: E402

from uer.config import load_config  # noqa: E402
from uer.data.tsv import read_tsv  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.fastbert.data import encode_tsv  # noqa: E402
from uer.exit.sweep import chosen_speed  # noqa: E402
from uer.fastbert.evaluate import plan_exits, sweep  # noqa: E402
from uer.fastbert.inference import EarlyExit  # noqa: E402
from uer.fastbert.predictor import FastBertClassifier  # noqa: E402
from uer.exit.report import plot_tradeoff  # noqa: E402
from uer.fastbert.report import format_table  # noqa: E402

SPEEDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# fastbert==0.2.2 (the authors' package), 2 threads, batch 1, padded to 128 tokens: ms per sentence
AUTHORS = {"3-layer/384": {"full": 17.3, "layer1": 7.0}, "12-layer/768": {"full": (196 + 202) / 2, "layer1": 17.6}}


def latency_ms(runner: EarlyExit, speed: float, length: int, repeats: int, vocab_size: int) -> float:
    """Median ms per sentence of ``length`` real tokens, batch 1."""
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1000, vocab_size, (1, length), generator=g)
    seg = torch.ones_like(src)
    for _ in range(3):
        runner.predict(src, seg, speed)
    return 1000 * statistics.median(timed(lambda: runner.predict(src, seg, speed)) for _ in range(repeats))


def against_speed_0(walls: dict[str, float]) -> dict[str, float]:
    """Every speed's seconds over speed 0's (the full model, as ``predict`` runs it): > 1 is faster."""
    return {k: walls["0.0"] / v for k, v in walls.items() if k != "None"}


def authors_comparison(repeats: int) -> list[dict]:
    rows = []
    shapes = {
        "3-layer/384": ("models/bert/minilm_l6_h384.yaml", {"encoder.layers_num": 3}),
        "12-layer/768": ("models/bert/base.yaml", {}),
    }
    for name, (path, overrides) in shapes.items():
        torch.manual_seed(0)
        config = load_config(REPO / path, overrides).with_target({"name": "fastbert"})
        runner = EarlyExit(build_model(config, vocab_size=30522, labels_num=3))  # timing only: random weights
        ours_full = latency_ms(runner, 0.0, 128, repeats, 30522)
        ours_l1 = latency_ms(runner, 1.0, 128, repeats, 30522)
        rows.append({"model": name, "tokens": 128, "batch": 1, "ours_full_ms": ours_full, "ours_layer1_ms": ours_l1,
                     "authors_full_ms": AUTHORS[name]["full"], "authors_layer1_ms": AUTHORS[name]["layer1"],
                     "backend": runner.name})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "out/fastbert/model.pt"))
    p.add_argument("--test_path", default=str(REPO / "data/tweets/test.tsv"))
    p.add_argument("--dev_path", default=str(REPO / "data/tweets/dev.tsv"))
    p.add_argument("--plan", choices=("stored", "here", "off"), default="stored",
                   help="stored: the model's exit plan (early exit only where it pays); here: its profile with step costs "
                        "measured now; off: early exit at every speed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtime", default="auto", help="the sentence-exit runtime (uer.runtime.runtime_names())")
    p.add_argument("--timing_samples", type=int, default=400)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no_authors", action="store_true", help="skip the latency comparison")
    p.add_argument("--output", default=str(REPO / "bench/results/fastbert_tradeoff.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not Path(args.model).is_file():
        print(f"{args.model} does not exist: run `python run_fastbert.py` first (the main job trains it)", file=sys.stderr)
        return 2

    clf = FastBertClassifier.load(args.model, runtime=args.runtime, exit_plan=args.plan)
    test = read_tsv(args.test_path, labels=clf.labels)
    encoded = encode_tsv(clf.tokenizer, test, clf.seq_length)
    if args.plan != "off" and clf.runner.exit_plan is None:  # a model trained before exit plans
        dev = encode_tsv(clf.tokenizer, read_tsv(args.dev_path, labels=clf.labels), clf.seq_length)
        plan_exits(clf.runner, dev, clf.tokenizer.vocab.pad_id, clf.extra.get("exit_policy") or "entropy")
    kept = clf.runner.exit_plan
    plans = {}
    if kept is not None:
        costs = kept.costs
        print(f"step costs ({costs.rows[0]} and {costs.rows[1]} rows, measured on {kept.measured_on}): full model "
              f"{1000 * costs.full[0]:.2f} / {1000 * costs.full[1]:.2f} ms, one step {1000 * costs.step[0]:.3f} / "
              f"{1000 * costs.step[1]:.3f} ms, one shrinking {1000 * costs.keep:.3f} ms")
        plans = {str(float(speed)): clf.runner.plan(speed) for speed in SPEEDS}
        for speed, plan in plans.items():
            print(f"  speed {speed}: {plan.reason}")
    result = sweep(clf.runner, encoded, clf.tokenizer.vocab.pad_id, SPEEDS, timing_samples=args.timing_samples,
                   batch_size=args.batch_size, repeats=args.repeats)
    teacher = result["teacher"]["accuracy"]
    rows = result["rows"]
    chosen = chosen_speed(rows, teacher)
    print(f"tweets test set: {len(encoded)} rows; {args.threads} threads; backend {result['backend']}; "
          f"wall clock on the first {result['timing_samples']} rows, best of {args.repeats}")
    print(format_table(rows, teacher))
    goals = None
    if chosen is not None:
        goals = {
            "speed": chosen["speed"], "accuracy": chosen["accuracy"], "teacher_accuracy": teacher,
            "flops_speedup": chosen["flops_speedup"], "flops_goal_2x": chosen["flops_speedup"] >= 2.0,
            # like for like: the FLOPs speed-up of the rows whose wall clock was measured
            "flops_speedup_timed": chosen["flops_speedup_timed"],
            "wall_batch1_over_flops": chosen["wall_speedup_batch1"] / chosen["flops_speedup_timed"],
            "wall_batch1_goal_0.85": chosen["wall_speedup_batch1"] >= 0.85 * chosen["flops_speedup_timed"],
            "wall_batched": chosen["wall_speedup_batched"], "wall_batched_goal_1.6x": chosen["wall_speedup_batched"] >= 1.6,
        }
        print(f"largest speed within 1 point of the teacher: {chosen['speed']:g} -> " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in goals.items() if k != "speed"))
    ratios = {size: against_speed_0(walls) for size, walls in result["wall_seconds"].items()}
    for size, by_speed in ratios.items():
        slow = [k for k, r in by_speed.items() if r < 0.95]
        print(f"{size}, wall of speed 0 / wall of each speed: " + " ".join(f"{k}:{r:.2f}" for k, r in by_speed.items())
              + f" -> every speed >= 0.95x speed 0: {'yes' if not slow else 'no (' + ', '.join(slow) + ')'}")
    authors = [] if args.no_authors else authors_comparison(max(10, args.repeats * 5))
    for r in authors:
        print(f"{r['model']} batch 1, 128 tokens: ours {r['ours_full_ms']:.1f} ms full / {r['ours_layer1_ms']:.1f} ms at layer 1; "
              f"authors' fastbert==0.2.2 {r['authors_full_ms']:.1f} ms / {r['authors_layer1_ms']:.1f} ms")
    load = os.getloadavg()
    print(f"load average during the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
          "(other processes on the machine distort wall-clock numbers)")
    out = {"model": args.model, "load_average": load, "test_rows": len(encoded), "threads": args.threads, "teacher_accuracy": teacher,
           "labels_num": len(clf.labels), "rows": rows, "chosen": goals, "authors_comparison": authors,
           "wall_seconds": result["wall_seconds"], "timing_samples": result["timing_samples"],
           "plan": args.plan, "exit_plan": None if kept is None else kept.as_dict(),
           "plans": {k: {"step": p.step, "reason": p.reason} for k, p in plans.items()},
           "wall_over_speed_0": ratios,
           "backend": result["backend"], "torch": torch.__version__}
    write_json(Path(args.output), out)
    plot_tradeoff(Path(args.output).with_suffix(".png"), rows, teacher, title="FastBERT on tweets (MiniLM)",
                  metric="accuracy", reference_label="teacher")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
