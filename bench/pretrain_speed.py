"""MLM pre-training speed: uer vs ``transformers.BertForMaskedLM``, same config, batch and length (bench, not a test).

    python corpora/build_zh.py                     # once
    python bench/pretrain_speed.py --sizes tiny mini --threads 2                      # fp32, as the peers
    python bench/pretrain_speed.py --sizes tiny mini --threads 2 --precisions fp32 bf16   # and both under bf16 autocast
    python bench/pretrain_speed.py --sizes tiny mini --threads 2 --uer_py_path ../UER-py   # and UER-py's own pretrain.py

A third model is ours with the position scaffold that ``pretrain.py`` holds by default from
scratch (``uer.scaffold``: gradient hooks and a write-back after each optimizer step), timed in the
same rounds: its column and the ratio to ours without it are the scaffold's cost.

Both models get the same batches (People's Daily packed into full-length MLM rows, dynamic
masking, google_zh_vocab, seq 128, batch 32) and the same optimizer (``uer.trainer.make_optimizer``:
AdamW, fused where available); a step is forward + backward + optimizer step. The two run in
alternating rounds inside one process, so machine load hits both alike; the median round counts.
Tokens are real (non-padding) tokens: packed rows are ~100% real. A last line times the whole
``Trainer.fit`` loop (data, clipping, logging) for ours.

``--uer_py_path DIR`` (a checkout of dbiir/UER-py, never copied here; it needs ``pip install six``)
also runs UER-py's documented command lines on the same corpus, vocabulary, size, batch and
sequence length: its ``preprocess.py`` (``--data_processor mlm --full_sentences --dynamic_masking``:
packed rows and masking per batch, as ours; without ``--full_sentences`` each corpus line becomes
one padded row, ~30% real tokens on People's Daily, and its steps do less work) once, then its
``pretrain.py`` on the CPU for ``--uer_py_steps``, reporting every ``--report_every``; its own
log's tokens/s (first report dropped, median) gives its seconds per step. Printed beside
our ``Trainer.fit`` seconds per step (windows of ``--report_every`` steps before and after UER-py's run,
first window of each run dropped, median), with the ratio of real tokens per second.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import preprocess  # noqa: E402
from bench.common import (ROOT, SIZES, cpu_info, hf_batch, hf_model, ours_config, sh, timed_steps, write_json,  # noqa: E402
                          zh_vocab)
from uer.data.batches import PretrainDataset  # noqa: E402
from uer.data.loader import EpochLoader  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.scaffold import apply_scaffold  # noqa: E402
from uer.tokenizers import Vocab  # noqa: E402
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler  # noqa: E402
from uer.utils.cli import UsageError, run_main  # noqa: E402

UER = {"tiny": "12.8k-14.7k", "mini": "3.9k", "base": "~270"}  # UER-py on CPU, batch 32 (the issue)


def uer_py_config(uer_py: Path, size: str, out: Path) -> Path:
    """UER-py's own JSON config of this size, with the MLM target alone (as ours)."""
    source = uer_py / "models" / "bert" / f"{size}_config.json"
    if not source.is_file():
        raise UsageError(f"--uer_py_path {uer_py}: no {source.relative_to(uer_py)} (is it a UER-py checkout?)")
    write_json(out, {**json.loads(source.read_text(encoding="utf-8")), "target": ["mlm"], "data_processor": "mlm"})
    return out


def uer_py_seconds_per_step(uer_py: Path, size: str, corpus: str, vocab: Path, args, work: Path) -> tuple[float, float]:
    """UER-py's seconds per step, from its own log, and the real-token share of its rows.

    One ``pretrain.py`` run of ``--uer_py_steps`` steps that reports every ``--report_every``; the
    first report (start-up, first allocations) is dropped and the median of the rest is taken. UER-py
    counts batch x seq_length tokens per step, so seconds per step = batch x seq / its tokens/s.
    (An earlier version took the difference of two runs' wall times; one run's start-up noise then
    decided the answer, and it reported UER-py 0.155 s/step where its own log says 0.24.)
    """
    if importlib.util.find_spec("six") is None:
        raise UsageError("--uer_py_path: UER-py imports six: pip install six")
    for script in ("preprocess.py", "pretrain.py"):
        if not (uer_py / script).is_file():
            raise UsageError(f"--uer_py_path {uer_py}: no {script} there (is it a UER-py checkout?)")
    config = uer_py_config(uer_py, size, work / f"uer_py_{size}.json")
    dataset = work / f"uer_py_{args.seq_length}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    log = work / f"uer_py_{size}.log"
    if not dataset.exists():
        sh([sys.executable, "preprocess.py", "--corpus_path", Path(corpus).resolve(), "--vocab_path", vocab,
            "--dataset_path", dataset, "--processes_num", 1, "--seq_length", args.seq_length,
            "--data_processor", "mlm", "--full_sentences", "--dynamic_masking"], log, cwd=uer_py, env=env)
    log.write_text("", encoding="utf-8")  # its tokens/s lines: this run's only
    sh([sys.executable, "pretrain.py", "--dataset_path", dataset, "--vocab_path", vocab, "--config_path", config,
        "--output_model_path", work / f"uer_py_{size}.bin", "--total_steps", args.uer_py_steps,
        "--save_checkpoint_steps", 10 * args.uer_py_steps, "--report_steps", args.report_every,
        "--batch_size", args.batch_size], log, cwd=uer_py, env=env)
    # (UER-py's pretrain.py has no --seq_length: the length comes from its dataset)
    rates = [float(m) for m in re.findall(r"\|\s*([0-9.]+) tokens/s\|", log.read_text(encoding="utf-8"))]
    if len(rates) < 2:
        raise UsageError(f"UER-py pretrain.py: expected at least 2 '| N tokens/s|' reports in its log, found {len(rates)} "
                         f"(--uer_py_steps {args.uer_py_steps} / --report_every {args.report_every})")
    tokens_per_s = statistics.median(rates[1:])
    return args.batch_size * args.seq_length / tokens_per_s, uer_py_real_fraction(dataset)


def uer_py_real_fraction(dataset: Path, limit: int = 20000) -> float:
    """Non-padding share of the first ``limit`` rows of a UER-py MLM dataset we built above.

    Its rows are pickled ``((ids, pad_num), seg_pos)`` tuples (dynamic masking); this is our own
    output file, so unpickling it is safe. A lower share than ours would mean its steps do less work.
    """
    import pickle

    real = padded = 0
    with dataset.open("rb") as f:
        for _ in range(limit):
            try:
                (ids, pad), *_ = pickle.load(f)
            except EOFError:
                break
            real, padded = real + len(ids), padded + len(ids) + pad
    return real / padded if padded else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["tiny", "mini"], choices=list(SIZES))
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seq_length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpora" / "peoples_daily.txt"))
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "pretrain_speed.json"))
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                   help="bf16: both models under CPU autocast (fast only on CPUs with bf16 units, e.g. avx512_bf16 / AMX)")
    p.add_argument("--uer_py_path", help="a dbiir/UER-py checkout: also time its pretrain.py (see above)")
    p.add_argument("--uer_py_steps", type=int, default=60, help="steps of each Trainer run (ours, UER-py's)")
    p.add_argument("--report_every", type=int, default=10,
                   help="steps per timed window; the first window is warm-up, the median of the rest counts")
    args = p.parse_args(argv)
    return run_main("pretrain_speed.py", lambda: _run(args))


def _run(args) -> int:
    uer_py = Path(args.uer_py_path).resolve() if args.uer_py_path else None
    if uer_py is not None and not uer_py.is_dir():
        raise UsageError(f"--uer_py_path {args.uer_py_path}: not a directory")
    if args.report_every < 1 or args.uer_py_steps < 2 * args.report_every:
        raise UsageError(f"--uer_py_steps {args.uer_py_steps} --report_every {args.report_every}: expected "
                         "a positive window and at least two windows (the first is warm-up)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    dataset = tmp / "mlm"
    vocab_path = zh_vocab()
    if preprocess.main(["--corpus_path", args.corpus, "--data_processor", "mlm", "--vocab_path", str(vocab_path),
                        "--dataset_path", str(dataset), "--seq_length", str(args.seq_length), "--no_progress"]):
        raise UsageError("preprocess failed (run python corpora/build_zh.py first)")
    vocab = Vocab.load(vocab_path)
    data = PretrainDataset(dataset, vocab)
    n = args.steps
    g = torch.Generator().manual_seed(1)
    batches = [data.collate(torch.randperm(len(data), generator=g)[:args.batch_size], g) for _ in range(n)]
    real = sum(int((b["seg"] > 0).sum()) for b in batches)
    padded = sum(b["seg"].numel() for b in batches)
    results = {"threads": args.threads, "batch_size": args.batch_size, "seq_length": args.seq_length,
               "real_token_fraction": real / padded, "torch": torch.__version__, "sizes": {}}
    cpu = cpu_info()
    results["cpu"] = cpu["model"]
    print(f"threads {args.threads}, batch {args.batch_size}, seq {args.seq_length}, real tokens {real / padded:.1%}, "
          f"torch {torch.__version__}, {cpu['model']}")
    print(f"{'size':<6} {'prec':<5} {'uer tok/s':>10} {'HF tok/s':>10} {'ratio':>6} {'UER-py tok/s':>13} "
          f"{'uer+scaffold tok/s':>19} {'scaffold cost':>14}")
    for size, precision in [(size, prec) for size in args.sizes for prec in args.precisions]:
        cfg = ours_config(size, args.seq_length)
        ours = build_model(cfg, vocab_size=len(vocab))
        held = build_model(cfg, vocab_size=len(vocab))
        scaffold = apply_scaffold(held, cfg)
        hf = hf_model(size, len(vocab), args.seq_length)
        ours.train(), hf.train()
        opt_ours = make_optimizer(ours.named_parameters(), 1e-4, 0.01)
        opt_hf = make_optimizer(hf.named_parameters(), 1e-4, 0.01)
        held.train()
        opt_held = make_optimizer(held.named_parameters(), 1e-4, 0.01)
        scaffold.attach(opt_held)
        f_ours = lambda m, b: m(b)["loss"]  # noqa: E731
        f_hf = lambda m, b: m(**hf_batch(b)).loss  # noqa: E731
        timed_steps(ours, opt_ours, batches[:2], f_ours, precision=precision)  # warm-up
        timed_steps(hf, opt_hf, batches[:2], f_hf, precision=precision)
        timed_steps(held, opt_held, batches[:2], f_ours, precision=precision)
        t_ours, t_hf, t_held = [], [], []
        for _ in range(args.rounds):
            t_ours.append(real / timed_steps(ours, opt_ours, batches, f_ours, precision=precision))
            t_hf.append(real / timed_steps(hf, opt_hf, batches, f_hf, precision=precision))
            t_held.append(real / timed_steps(held, opt_held, batches, f_ours, precision=precision))
        a, b, c = statistics.median(t_ours), statistics.median(t_hf), statistics.median(t_held)
        key = size if precision == "fp32" else f"{size}_{precision}"
        results["sizes"][key] = {"precision": precision, "uer_tokens_per_s": a, "hf_tokens_per_s": b, "ratio": a / b,
                                 "uer_rounds": t_ours, "hf_rounds": t_hf, "uer_scaffold_tokens_per_s": c,
                                 "uer_scaffold_rounds": t_held, "scaffold_slowdown": a / c}
        print(f"{size:<6} {precision:<5} {a:>10.0f} {b:>10.0f} {a / b:>5.2f}x {UER.get(size, '') if precision == 'fp32' else '':>13} "
              f"{c:>19.0f} {a / c:>13.2f}x")
        if precision != "fp32":
            continue
        # the whole loop: loader + dynamic masking + clipping + logging, timed in report windows as UER-py's

        def trainer_windows() -> list[float]:
            opts = TrainerOptions(report_steps=args.report_every, progress=False)
            model = build_model(cfg, vocab_size=len(vocab))
            opt = make_optimizer(model.named_parameters(), 1e-4, 0.01)
            trainer = Trainer(model, opt, make_scheduler(opt, "constant", 0, 10**9), cfg, opts)
            loader = EpochLoader(len(data), args.batch_size, data.collate, seed=3, drop_last=True)
            return [line["tokens_per_s"] for line in trainer.fit(loader, args.uer_py_steps)[1:]]  # 1st = warm-up

        windows = trainer_windows()
        if uer_py is not None:
            theirs, their_real = uer_py_seconds_per_step(uer_py, size, args.corpus, vocab_path, args, tmp)
            windows += trainer_windows()  # ours before and after theirs: a drift in machine load hits both
        loop = statistics.median(windows)
        ours_s = args.batch_size * args.seq_length * (real / padded) / loop
        results["sizes"][key].update({"uer_trainer_tokens_per_s": loop, "uer_trainer_windows": windows,
                                      "uer_s_per_step": ours_s})
        print(f"{size:<6} Trainer.fit loop (data + masking + clipping): {loop:.0f} real tokens/s, {ours_s:.3f} s/step "
              f"(median of {len(windows)} windows of {args.report_every} steps)")
        if uer_py is not None:
            their_tok = args.batch_size * args.seq_length * their_real / theirs
            results["sizes"][key].update({"uer_py_s_per_step": theirs, "uer_py_real_tokens_per_s": their_tok,
                                          "uer_py_real_token_fraction": their_real, "uer_py_path": str(uer_py),
                                          "uer_vs_uer_py": loop / their_tok})
            print(f"{size:<6} batch {args.batch_size} x seq {args.seq_length}, real tokens uer {real / padded:.1%}, "
                  f"UER-py {their_real:.1%}: uer {ours_s:.3f} s/step, UER-py {theirs:.3f} s/step ({uer_py}); "
                  f"uer / UER-py real tokens/s {loop / their_tok:.2f}x (goal 1.5x: {'met' if loop / their_tok >= 1.5 else 'not met'})")
    write_json(Path(args.output), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
