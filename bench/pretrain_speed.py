"""MLM pre-training speed: uer vs ``transformers.BertForMaskedLM``, same config, batch and length (bench, not a test).

    python corpora/build_zh.py                     # once
    python bench/pretrain_speed.py --sizes tiny mini --threads 2                      # fp32, as the peers
    python bench/pretrain_speed.py --sizes tiny mini --threads 2 --precisions fp32 bf16   # and both under bf16 autocast

Both models get the same batches (People's Daily packed into full-length MLM rows, dynamic
masking, google_zh_vocab, seq 128, batch 32) and the same optimizer (``uer.trainer.make_optimizer``:
AdamW, fused where available); a step is forward + backward + optimizer step. The two run in
alternating rounds inside one process, so machine load hits both alike; the median round counts.
Tokens are real (non-padding) tokens: packed rows are ~100% real. A last line times the whole
``Trainer.fit`` loop (data, clipping, logging) for ours.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import preprocess  # noqa: E402
from bench.encoder_speed import cpu_name  # noqa: E402
from uer.config import config_from_dict  # noqa: E402
from uer.data.batches import PretrainDataset  # noqa: E402
from uer.data.loader import EpochLoader  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.tokenizers import Vocab  # noqa: E402
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler  # noqa: E402

VOCAB = Path(importlib.util.find_spec("fastbert").submodule_search_locations[0], "files", "google_zh_vocab.txt")
SIZES = {  # UER-py's names: layers, hidden, heads, feed-forward
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}
UER = {"tiny": "12.8k-14.7k", "mini": "3.9k", "base": "~270"}  # UER-py on CPU, batch 32 (the issue)


def ours_config(size: str, seq: int):
    layers, hidden, heads, ffn = SIZES[size]
    return config_from_dict({
        "embedding": {"emb_size": hidden, "components": ["word", {"name": "pos", "max_seq_length": max(512, seq)}, "seg"]},
        "encoder": {"name": "transformer", "hidden_size": hidden, "heads_num": heads, "layers_num": layers,
                    "feedforward_size": ffn},
        "target": {"components": ["mlm"]},
    })


def hf_model(size: str, vocab_size: int, seq: int):
    from transformers import BertConfig, BertForMaskedLM

    layers, hidden, heads, ffn = SIZES[size]
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=max(512, seq), type_vocab_size=2)
    return BertForMaskedLM(cfg)


def hf_batch(batch):
    seg = batch["seg"]
    return {"input_ids": batch["src"], "token_type_ids": (seg == 2).long(), "attention_mask": (seg > 0).long(),
            "labels": batch["tgt_mlm"]}


def steps(model, optimizer, batches, forward, precision: str = "fp32") -> float:
    """Seconds for len(batches) optimizer steps; bf16 = autocast, as ``pretrain.py --precision bf16``."""
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


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
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="uer-bench-"))
    dataset = tmp / "mlm"
    if preprocess.main(["--corpus_path", args.corpus, "--data_processor", "mlm", "--vocab_path", str(VOCAB),
                        "--dataset_path", str(dataset), "--seq_length", str(args.seq_length), "--no_progress"]):
        raise SystemExit("preprocess failed (run python corpora/build_zh.py first)")
    vocab = Vocab.load(VOCAB)
    data = PretrainDataset(dataset, vocab)
    n = args.steps
    g = torch.Generator().manual_seed(1)
    batches = [data.collate(torch.randperm(len(data), generator=g)[:args.batch_size], g) for _ in range(n)]
    real = sum(int((b["seg"] > 0).sum()) for b in batches)
    padded = sum(b["seg"].numel() for b in batches)
    results = {"threads": args.threads, "batch_size": args.batch_size, "seq_length": args.seq_length,
               "real_token_fraction": real / padded, "torch": torch.__version__, "sizes": {}}
    cpu = cpu_name()
    results["cpu"] = cpu
    print(f"threads {args.threads}, batch {args.batch_size}, seq {args.seq_length}, real tokens {real / padded:.1%}, "
          f"torch {torch.__version__}, {cpu}")
    print(f"{'size':<6} {'prec':<5} {'uer tok/s':>10} {'HF tok/s':>10} {'ratio':>6} {'UER-py tok/s':>13}")
    for size, precision in [(size, prec) for size in args.sizes for prec in args.precisions]:
        ours = build_model(ours_config(size, args.seq_length), vocab_size=len(vocab))
        hf = hf_model(size, len(vocab), args.seq_length)
        ours.train(), hf.train()
        opt_ours = make_optimizer(ours.named_parameters(), 1e-4, 0.01)
        opt_hf = make_optimizer(hf.named_parameters(), 1e-4, 0.01)
        f_ours = lambda m, b: m(b)["loss"]  # noqa: E731
        f_hf = lambda m, b: m(**hf_batch(b)).loss  # noqa: E731
        steps(ours, opt_ours, batches[:2], f_ours, precision)  # warm-up
        steps(hf, opt_hf, batches[:2], f_hf, precision)
        t_ours, t_hf = [], []
        for _ in range(args.rounds):
            t_ours.append(real / steps(ours, opt_ours, batches, f_ours, precision))
            t_hf.append(real / steps(hf, opt_hf, batches, f_hf, precision))
        a, b = statistics.median(t_ours), statistics.median(t_hf)
        key = size if precision == "fp32" else f"{size}_{precision}"
        results["sizes"][key] = {"precision": precision, "uer_tokens_per_s": a, "hf_tokens_per_s": b, "ratio": a / b,
                                 "uer_rounds": t_ours, "hf_rounds": t_hf}
        print(f"{size:<6} {precision:<5} {a:>10.0f} {b:>10.0f} {a / b:>5.2f}x {UER.get(size, '') if precision == 'fp32' else '':>13}")
        if precision != "fp32":
            continue
        # the whole loop: loader + dynamic masking + clipping + logging
        opts = TrainerOptions(report_steps=10**9, progress=False)
        cfg = ours_config(size, args.seq_length)
        model = build_model(cfg, vocab_size=len(vocab))
        opt = make_optimizer(model.named_parameters(), 1e-4, 0.01)
        trainer = Trainer(model, opt, make_scheduler(opt, "constant", 0, 10**9), cfg, opts)
        loader = EpochLoader(len(data), args.batch_size, data.collate, seed=3, drop_last=True)
        trainer.fit(loader, 2)
        start = time.perf_counter()
        history = trainer.fit(loader, 2 + args.rounds * n)
        loop = history[-1]["tokens_per_s"]
        results["sizes"][key]["uer_trainer_tokens_per_s"] = loop
        print(f"{size:<6} Trainer.fit loop (data + masking + clipping): {loop:.0f} real tokens/s "
              f"({args.rounds * n} steps, {time.perf_counter() - start:.1f} s)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
