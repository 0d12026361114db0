"""NER with token-level early exit, end to end: build the People's Daily NER data, pre-train a small
Chinese BERT on the training articles (our preprocess.py + pretrain.py, mlm processor), fine-tune
the tagger from it and from random init (same config, seed and flags), self-distil, sweep speeds,
print the table and the goals.

    flock /tmp/uer-bench.lock python bench/ner_tradeoff.py            # ~35 minutes on 2 cores (BERT-mini width)
    flock /tmp/uer-bench.lock python bench/ner_tradeoff.py --hidden 128 --pretrain_steps 2000   # ~17 minutes
    flock /tmp/uer-bench.lock python bench/ner_tradeoff.py --quick    # a smoke run of every step (L2/H64); out/ner_bench_quick

A finished step is not run again: the pre-trained model is reused by the same config, and
``run_ner.py`` resumes its own finished output, so a second run re-measures the sweep only.

Goals (issue 14): pre-trained full-model F1 >= random init + 3 points; token-level exit >= 2x
FLOPs at <= 1 F1 point below the full model; wall clock at batch 1 >= 0.7 x that FLOPs speed-up.
Writes ``bench/results/ner_tradeoff.json`` (and the run's outputs under ``--work_dir``).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, ROOT, cpu_info, sh, write_json, write_text  # noqa: E402
from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError, non_negative_int, parse_speeds, positive_float, positive_int, run_main  # noqa: E402

CONFIG = """# BERT L{layers}/H{hidden} for the NER bench: character tokens, vocabulary from the training split
embedding:
  components: [word, {{name: pos, max_seq_length: 128}}, seg]
  emb_size: {hidden}
  dropout: 0.1
encoder:
  name: transformer
  hidden_size: {hidden}
  layers_num: {layers}
  heads_num: {heads}
  feedforward_size: {ffn}
  act: gelu
  layernorm_positioning: post
  mask: fully_visible
  position_bias: {position_bias}
target:
  components: [mlm]
tokenizer:
  name: char
  vocab_path: {vocab}
"""

QUICK = {"work_dir": str(ROOT / "out" / "ner_bench_quick"), "results": str(ROOT / "out" / "ner_bench_quick" / "ner_tradeoff.json"),
         "layers": 2, "hidden": 64, "pretrain_steps": 100, "pretrain_seq_length": 64, "train_samples": 1000,
         "dev_samples": 200, "test_samples": 300, "epochs_num": 1, "distill_epochs_num": 1, "timing_samples": 20}


def judge(report: dict, window: int, layers: int) -> dict:
    """Print one window's table and its two exit goals; return them with the row they are judged on."""
    from uer.tagging.report import format_table

    print(f"--- exit window {window}" + (" (a token waits for its neighbours within +-%d)" % window if window else ""))
    print(format_table(report["rows"], report["teacher_f1"]))
    ok = [r for r in report["rows"] if r["f1"] >= report["teacher_f1"] - 0.01]
    best = max(ok, key=lambda r: r["flops_speedup"]) if ok else None
    goal2 = best is not None and best["flops_speedup"] >= 2.0
    # The wall-clock goal is about early exit: at speed 0 nothing exits, so there is nothing to judge.
    exits = best is not None and best["speed"] > 0
    timed = best is not None and best["wall_speedup_batch1"] is not None  # --timing_samples 0: no wall clock
    goal3 = exits and timed and best["wall_speedup_batch1"] >= 0.7 * best["flops_speedup"]
    if best is not None:
        print(f"window {window}: token-level exit within 1 F1 point: speed {best['speed']:g}, F1 {best['f1']:.4f}, mean exit layer "
              f"{best['mean_exit_layer']:.2f} of {layers}, FLOPs x{best['flops_speedup']:.2f}; goal >= 2x: {'met' if goal2 else 'not met'}")
        if not timed:
            print(f"window {window}: wall clock: not measured (--timing_samples 0); goal >= 0.7: not measured")
        else:
            verdict = ("met" if goal3 else "not met") if exits else "not measured (no speed above 0 stayed within 1 F1 point)"
            print(f"window {window}: wall clock batch 1 x{best['wall_speedup_batch1']:.2f} = "
                  f"{best['wall_speedup_batch1'] / best['flops_speedup']:.2f} of the FLOPs speed-up "
                  f"(batched x{best['wall_speedup_batched']:.2f}); goal >= 0.7: {verdict}")
            if "mean_layers_run" in best:  # what bounds batch 1: a row runs every layer its deepest token reaches
                print(f"  at batch 1 a row still runs {best['mean_layers_run']:.2f} of {layers} layers on average "
                      f"(its deepest token), against a mean exit layer of {best['mean_exit_layer']:.2f} per character; "
                      f"inference linears: {report.get('runtime', '?')}")
    return {"flops_2x_within_1_f1": goal2, "wall_batch1_0.7_of_flops": goal3, "chosen_row": best}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ner_tradeoff.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default=str(ROOT / "out" / "ner_bench"))
    p.add_argument("--data_dir", default=str(ROOT / "data" / "ner_pd98"))
    p.add_argument("--layers", type=positive_int, default=4)
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--position_bias", choices=("alibi", "none"), default="alibi",
                   help="alibi (default): the recipe for pre-training from scratch on a small budget (README, pre-training); "
                        "none: learned positions only, BERT's own (the plateau)")
    p.add_argument("--pretrain_steps", type=positive_int, default=3000)
    p.add_argument("--pretrain_batch_size", type=positive_int, default=32)
    p.add_argument("--pretrain_seq_length", type=positive_int, default=128)
    p.add_argument("--pretrain_learning_rate", type=positive_float, default=1e-3)
    p.add_argument("--train_samples", type=non_negative_int, default=20000)
    p.add_argument("--dev_samples", type=non_negative_int, default=0)
    p.add_argument("--test_samples", type=non_negative_int, default=0)
    p.add_argument("--epochs_num", type=positive_int, default=3)
    p.add_argument("--distill_epochs_num", type=non_negative_int, default=2)
    p.add_argument("--learning_rate", type=positive_float, default=1e-3)
    p.add_argument("--seq_length", type=positive_int, default=64)
    p.add_argument("--speed", default="0,0.005,0.01,0.02,0.03,0.05,0.1,0.15,0.2")
    p.add_argument("--windows", default="0,2",
                   help="exit windows to sweep on the same trained tagger (run_ner.py --window); each is judged on its own")
    p.add_argument("--timing_samples", type=non_negative_int, default=200)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "ner_tradeoff.json"),
                   help="where the JSON goes (default bench/results/ner_tradeoff.json)")
    p.add_argument("--quick", action="store_true", help="a smoke run of every step at tiny sizes; its numbers say nothing "
                   "(flags given explicitly still win; results under out/ner_bench_quick, never bench/results)")
    args = p.parse_args(argv)
    if args.quick:  # parsed again with the quick defaults
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    try:
        parse_speeds(args.speed)  # a bad --speed is refused before minutes of pre-training, not after
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    try:
        args.windows = sorted({non_negative_int(w) for w in args.windows.split(",")})
    except (argparse.ArgumentTypeError, ValueError) as exc:
        p.error(f"argument --windows: {exc} (a list of integers >= 0, e.g. 0,2)")
    return run_main("ner_tradeoff.py", lambda: _run(args, argv))


def _run(args, argv: list[str] | None) -> int:
    for flag in ("work_dir", "data_dir"):
        if Path(getattr(args, flag)).is_file():
            raise UsageError(f"--{flag} {getattr(args, flag)}: a file, but a folder belongs here")
    if Path(args.results).is_dir():
        raise UsageError(f"--results {args.results}: a directory, but the JSON file belongs here")
    work, data = Path(args.work_dir), Path(args.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    py = PY

    # 1. data
    if not (data / "test.tsv").is_file():
        seconds["build data"] = sh([py, "scripts/build_ner_dataset.py", "--out_dir", str(data)])
    # 2. character vocabulary of the training split (+ BERT's specials); pre-training and tagging share it
    counts = collections.Counter((data / "pretrain_corpus.txt").read_text(encoding="utf-8").replace("\n", ""))
    vocab = work / "vocab.txt"
    chars = sorted(ch for ch, n in counts.items() if n >= 2 and not ch.isspace())
    write_text(vocab, "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
    print(f"vocabulary: {len(chars) + 5} tokens (characters seen >= 2 times in the training articles)")
    # 3. pre-train on the training articles only
    # a model is reused only by the same shape, position bias and budget
    run_dir = work / f"L{args.layers}_H{args.hidden}_{args.position_bias}_pretrain{args.pretrain_steps}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "bert.yaml"  # each shape its own config: runs of several shapes can share --work_dir
    write_text(config, CONFIG.format(layers=args.layers, hidden=args.hidden, heads=max(2, args.hidden // 64),
                                     ffn=4 * args.hidden, vocab=vocab, position_bias=args.position_bias))
    pretrained = run_dir / "pretrain" / "model.pt"
    dataset = work / f"dataset_seq{args.pretrain_seq_length}"
    if not pretrained.is_file():
        if not (dataset / "meta.json").is_file():  # one dataset per row length serves every shape
            seconds["preprocess"] = sh([py, "preprocess.py", "--corpus_path", str(data / "pretrain_corpus.txt"),
                                        "--config_path", str(config), "--vocab_path", str(vocab),
                                        "--dataset_path", str(dataset), "--data_processor", "mlm",
                                        "--seq_length", str(args.pretrain_seq_length), "--processes_num", "1",
                                        "--dynamic_masking", "--no_progress"])
        seconds["pretrain"] = sh([py, "pretrain.py", "--dataset_path", str(dataset), "--config_path", str(config),
                                  "--vocab_path", str(vocab), "--output_model_path", str(pretrained),
                                  "--total_steps", str(args.pretrain_steps), "--batch_size", str(args.pretrain_batch_size),
                                  "--learning_rate", str(args.pretrain_learning_rate), "--report_steps", "100",
                                  "--save_checkpoint_steps", str(args.pretrain_steps), "--no_progress"])
    # 4. fine-tune + self-distil + sweep, both ways
    common = ["--vocab_path", str(vocab), "--train_path", str(data / "train.tsv"), "--dev_path", str(data / "dev.tsv"),
              "--test_path", str(data / "test.tsv"), "--label2id_path", str(data / "label2id.json"),
              "--train_samples", str(args.train_samples), "--dev_samples", str(args.dev_samples),
              "--test_samples", str(args.test_samples), "--epochs_num", str(args.epochs_num),
              "--batch_size", "32", "--seq_length", str(args.seq_length), "--learning_rate", str(args.learning_rate),
              "--distill_learning_rate", "1e-3", "--threads", str(args.threads), "--no_progress", "--report_steps", "100"]
    runs = {f"pretrained window {w}": ("pretrained", w) for w in args.windows}
    runs["random"] = ("random", 0)
    extra = {
        "pretrained": ["--pretrained_model_path", str(pretrained), "--config_path", str(config),
                       "--distill_epochs_num", str(args.distill_epochs_num), "--speed", args.speed,
                       "--timing_samples", str(args.timing_samples)],
        "random": ["--config_path", str(config), "--distill_epochs_num", "0", "--speed", "0", "--timing_samples", "0"],
    }
    reports = {}
    for label, (name, window) in runs.items():  # the first window trains; the others resume it and only sweep
        report = run_dir / name / ("report.json" if window == 0 else f"report_window{window}.json")
        seconds[f"run_ner {label}"] = sh([py, "run_ner.py", *common, *extra[name], "--window", str(window),
                                          "--output_model_path", str(run_dir / name / "model.pt"), "--report_path", str(report)])
        reports[label] = json.loads(report.read_text())

    rnd = reports["random"]
    pre = reports[f"pretrained window {args.windows[0]}"]
    last = json.loads(pretrained.with_name("model.metrics.jsonl").read_text().splitlines()[-1])
    pretrain_acc = last.get("mlm_acc")
    print(f"pre-training: {last['step']} steps, MLM accuracy {pretrain_acc:.3f} over the last report window "
          f"(position_bias {args.position_bias})")
    goal1 = pre["teacher_f1"] >= rnd["teacher_f1"] + 0.03
    print(f"full model (speed 0) test entity F1: pre-trained {pre['teacher_f1']:.4f}, random init {rnd['teacher_f1']:.4f} "
          f"({100 * (pre['teacher_f1'] - rnd['teacher_f1']):+.2f} points); goal >= +3: {'met' if goal1 else 'not met'}")
    by_window = {w: judge(reports[f"pretrained window {w}"], w, args.layers) for w in args.windows}
    out = {
        "command": "python bench/ner_tradeoff.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_info()["model"], "threads": args.threads, "args": vars(args), "seconds": seconds,
        "pretrain": {"steps": last["step"], "mlm_acc": pretrain_acc, "position_bias": args.position_bias},
        "pretrained": {k: pre[k] for k in ("teacher_f1", "teacher_precision", "teacher_recall", "rows", "full_flops_per_sentence",
                                           "train_sentences", "test_sentences", "stage1", "stage2", "runtime", "runtime_reason",
                                           "wall_seconds", "window") if k in pre},
        "windows": {str(w): {k: reports[f"pretrained window {w}"].get(k) for k in ("rows", "runtime", "runtime_reason", "wall_seconds")}
                    for w in args.windows},
        "random": {k: rnd[k] for k in ("teacher_f1", "teacher_precision", "teacher_recall", "train_sentences", "stage1")},
        "goals": {"pretrained_plus_3_f1": goal1, **by_window[args.windows[0]],
                  "by_window": {str(w): g for w, g in by_window.items()}},
    }
    results = Path(args.results)
    write_json(results, out)
    print(f"written {results}")
    for w in args.windows:  # run_ner.py's F1 vs speed-up plots, beside the JSON
        made = reports[f"pretrained window {w}"].get("plot")
        if made and Path(made).is_file():
            plot = results.with_suffix(".png") if w == 0 else results.with_name(f"{results.stem}_window{w}.png")
            with atomic_open(plot, "wb") as f:
                f.write(Path(made).read_bytes())
            print(f"written {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
