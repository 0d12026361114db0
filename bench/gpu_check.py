"""The Python parts of bench/gpu_check.sh (bench, not a test).

    python bench/gpu_check.py speed --device cuda --size base --precision bf16 --steps 20
    python bench/gpu_check.py sweep --device cuda --model out/gpu_check/fastbert/model.pt --test_path data/tweets/test.tsv

``speed``: MLM pre-training tokens/s of uer and of ``transformers.BertForMaskedLM`` with the same
sizes, batch, sequence length, optimizer and precision (bf16 autocast), on the same seeded random
batches (tokens/s does not depend on the text). Both models run in alternating rounds in this one
process; the median round counts; CUDA is synchronised before every clock reading.

``sweep``: the batched early-exit sweep (``uer.fastbert.evaluate.sweep``) of a trained FastBERT
model on ``--device``: accuracy, FLOPs and wall-clock speed-up per speed.

``runtimes``: the same model on each sentence-exit runtime on ``--device`` (``eager``, ``fused``,
``onnxruntime``, and what ``auto`` picks among them): the full model's and early exit's wall clock
at batch 1 and batched (``uer.fastbert.evaluate.sweep``'s timing, CUDA synchronised), the
accuracy, and the reason each runs or is refused. On CUDA ``onnxruntime`` runs fp32 graphs on ONNX
Runtime's CUDA provider where the installed onnxruntime has one (``onnxruntime-gpu``); where it has
none, the line says so.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SIZES, hf_batch, hf_model, ours_config, timed_steps, write_json  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.trainer import make_optimizer  # noqa: E402
from uer.utils.cli import UsageError, positive_int, run_main  # noqa: E402
from uer.utils.device import resolve_device  # noqa: E402

IGNORE = -100


def random_batches(n: int, batch_size: int, seq: int, vocab_size: int, device: torch.device) -> list[dict]:
    """Seeded full-length rows with 15% of positions predicted (ids 1000.. are ordinary tokens)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        src = torch.randint(1000, vocab_size, (batch_size, seq), generator=g)
        chosen = torch.rand(batch_size, seq, generator=g) < 0.15
        chosen[:, 1] = True  # at least one per row
        tgt = torch.where(chosen, src, torch.full_like(src, IGNORE))
        src = torch.where(chosen, torch.full_like(src, 103), src)  # a [MASK]-like id
        out.append({k: v.to(device) for k, v in {"src": src, "seg": torch.ones_like(src), "tgt_mlm": tgt}.items()})
    return out


def speed(args) -> int:
    device = resolve_device(args.device, args.precision)
    torch.manual_seed(0)
    vocab_size = args.vocab_size
    batches = random_batches(args.steps, args.batch_size, args.seq_length, vocab_size, device)
    tokens = args.steps * args.batch_size * args.seq_length
    ours = build_model(ours_config(args.size, args.seq_length), vocab_size=vocab_size).to(device).train()
    hf = hf_model(args.size, vocab_size, args.seq_length).to(device).train()
    opt_ours = make_optimizer(ours.named_parameters(), 1e-4, 0.01, device=str(device))
    opt_hf = make_optimizer(hf.named_parameters(), 1e-4, 0.01, device=str(device))
    f_ours = lambda m, b: m(b)["loss"]  # noqa: E731
    f_hf = lambda m, b: m(**hf_batch(b)).loss  # noqa: E731
    timed_steps(ours, opt_ours, batches[:2], f_ours, device, args.precision)  # warm-up (kernels, allocator)
    timed_steps(hf, opt_hf, batches[:2], f_hf, device, args.precision)
    t_ours, t_hf = [], []
    for _ in range(args.rounds):
        t_ours.append(tokens / timed_steps(ours, opt_ours, batches, f_ours, device, args.precision))
        t_hf.append(tokens / timed_steps(hf, opt_hf, batches, f_hf, device, args.precision))
    a, b = statistics.median(t_ours), statistics.median(t_hf)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"pre-training speed, BERT-{args.size} ({SIZES[args.size]}), {args.precision}, batch {args.batch_size} x seq "
          f"{args.seq_length}, {name}: uer {a:.0f} tokens/s, transformers.BertForMaskedLM {b:.0f} tokens/s, ratio {a / b:.2f}x")
    result = {"size": args.size, "precision": args.precision, "batch_size": args.batch_size, "seq_length": args.seq_length,
              "device": name, "torch": torch.__version__, "uer_tokens_per_s": a, "hf_tokens_per_s": b, "ratio": a / b,
              "uer_rounds": t_ours, "hf_rounds": t_hf}
    if args.output:
        write_json(Path(args.output), result)
    return 0


def sweep_cmd(args) -> int:
    from uer.data.tsv import read_tsv
    from uer.fastbert.data import encode_tsv
    from uer.exit.sweep import chosen_speed
    from uer.fastbert.evaluate import sweep
    from uer.fastbert.predictor import FastBertClassifier
    from uer.fastbert.report import format_table

    device = resolve_device(args.device, "fp32")
    if not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: no such file (the FastBERT step of gpu_check.sh writes it)")
    clf = FastBertClassifier.load(args.model, device=device)
    test = read_tsv(args.test_path, labels=clf.labels)
    encoded = encode_tsv(clf.tokenizer, test, clf.seq_length)
    speeds = tuple(i / 10 for i in range(11))
    result = sweep(clf.runner, encoded, clf.tokenizer.vocab.pad_id, speeds, timing_samples=args.timing_samples,
                   batch_size=args.batch_size, repeats=args.repeats)
    teacher = result["teacher"]["accuracy"]
    print(f"early-exit sweep on {device} ({result['backend']}): {len(encoded)} test rows, batch {args.batch_size}")
    print(format_table(result["rows"], teacher))
    chosen = chosen_speed(result["rows"], teacher)
    if chosen is not None:
        print(f"largest speed within 1 point of the teacher: {chosen['speed']:g}, accuracy {chosen['accuracy']:.4f} "
              f"(teacher {teacher:.4f}), FLOPs speed-up {chosen['flops_speedup']:.2f}x")
    return 0


def runtimes_cmd(args) -> int:
    from uer.data.tsv import read_tsv
    from uer.fastbert.data import encode_tsv
    from uer.fastbert.evaluate import sweep
    from uer.fastbert.predictor import FastBertClassifier

    device = resolve_device(args.device, "fp32")
    if not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: no such file (the FastBERT step of gpu_check.sh writes it)")
    reference = FastBertClassifier.load(args.model, device=device, runtime="eager")
    test = read_tsv(args.test_path, labels=reference.labels)
    encoded = encode_tsv(reference.tokenizer, test, reference.seq_length)
    speed = args.speed  # one early-exit speed beside the full model
    if not 0.0 <= speed <= 1.0:
        raise UsageError(f"--speed {speed}: expected a value in [0, 1]")
    pad = reference.tokenizer.vocab.pad_id
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"runtimes on {device} ({name}): {len(encoded)} test rows, {args.timing_samples} timed, batch 1 and {args.batch_size}, "
          f"speed {speed:g} beside the full model")
    results = {}
    for runtime in ("eager", "fused", "onnxruntime", "auto"):
        try:
            clf = reference if runtime == "eager" else FastBertClassifier.load(args.model, device=device, runtime=runtime)
        except ValueError as exc:  # a runtime that cannot run here says why (e.g. no CUDAExecutionProvider)
            print(f"  {runtime:<12} refused: {exc}")
            results[runtime] = {"refused": str(exc)}
            continue
        r = sweep(clf.runner, encoded, pad, (speed,), timing_samples=args.timing_samples, batch_size=args.batch_size,
                  repeats=args.repeats)
        walls = {batch: {k: 1000 * v / r["timing_samples"] for k, v in w.items()} for batch, w in r["wall_seconds"].items()}
        cells = "; ".join(f"{batch}: full {w['None']:.3f}, speed {speed:g} {w[str(speed)]:.3f} ms/text" for batch, w in walls.items())
        print(f"  {runtime:<12} accuracy {r['teacher']['accuracy']:.4f} (speed {speed:g}: {r['rows'][0]['accuracy']:.4f}); "
              f"{cells}\n  {'':<12} {clf.runner.name}: {clf.runner.reason}")
        results[runtime] = {"name": clf.runner.name, "reason": clf.runner.reason, "ms_per_text": walls,
                            "accuracy": r["teacher"]["accuracy"], "accuracy_at_speed": r["rows"][0]["accuracy"]}
    if args.output:
        write_json(Path(args.output), {"device": name, "speed": speed, "batch_size": args.batch_size,
                                       "timing_samples": args.timing_samples, "runtimes": results})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed", help="uer vs transformers.BertForMaskedLM pre-training tokens/s")
    s.add_argument("--device", default=None)
    s.add_argument("--size", choices=list(SIZES), default="base")
    s.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    s.add_argument("--batch_size", type=positive_int, default=32)
    s.add_argument("--seq_length", type=positive_int, default=128)
    s.add_argument("--steps", type=positive_int, default=10, help="steps per round")
    s.add_argument("--rounds", type=positive_int, default=3)
    s.add_argument("--vocab_size", type=positive_int, default=21128, help="google_zh_vocab's size")
    s.add_argument("--output", help="JSON result")
    w = sub.add_parser("sweep", help="batched early-exit sweep of a FastBERT model")
    w.add_argument("--device", default=None)
    w.add_argument("--model", required=True)
    w.add_argument("--test_path", required=True)
    w.add_argument("--batch_size", type=positive_int, default=32)
    w.add_argument("--timing_samples", type=positive_int, default=512)
    w.add_argument("--repeats", type=positive_int, default=3)
    r = sub.add_parser("runtimes", help="a FastBERT model on each sentence-exit runtime (ONNX Runtime's CUDA provider on CUDA)")
    r.add_argument("--device", default=None)
    r.add_argument("--model", required=True)
    r.add_argument("--test_path", required=True)
    r.add_argument("--speed", type=float, default=0.5, help="the early-exit speed timed beside the full model")
    r.add_argument("--batch_size", type=positive_int, default=32)
    r.add_argument("--timing_samples", type=positive_int, default=256)
    r.add_argument("--repeats", type=positive_int, default=2)
    r.add_argument("--output", help="JSON result")
    args = p.parse_args(argv)
    body = {"speed": speed, "sweep": sweep_cmd, "runtimes": runtimes_cmd}[args.command]
    return run_main(f"gpu_check.py {args.command}", lambda: body(args))


if __name__ == "__main__":
    sys.exit(main())
