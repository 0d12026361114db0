"""What the benches share, once: the repository, the CPU they ran on, one way to run a step, timing
loops, atomic writes, the pre-training peers, and the few-label FastBERT runs. A bench imports
nothing else from bench/."""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable

from uer.utils.atomic import atomic_open  # noqa: E402
from uer.utils.cli import UsageError  # noqa: E402

SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BF16_UNITS = ("avx512_bf16", "amx_bf16")


# ------------------------------------------------------------------------------------ the machine


def cpu_info() -> dict:
    """Model name, cores this process may use, every flag (Linux /proc/cpuinfo; elsewhere no flags),
    the bf16 units among them and torch's thread count."""
    import torch

    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = value.split()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": cores, "flags": sorted(set(flags)), "shown_flags": shown_flags(flags),
            "bf16_units": [f for f in BF16_UNITS if f in flags], "torch_threads": torch.get_num_threads()}


def shown_flags(flags) -> list[str]:
    """The flags that decide how fast our kernels run (AVX-512, VNNI, bf16 units, AMX)."""
    return [f for f in SHOWN_FLAGS if f in flags]


def cpu_line(cpu: dict) -> str:
    units = ", ".join(cpu["bf16_units"]) or "none (bf16 would be emulated: slow)"
    return (f"CPU: {cpu['model']}, {cpu['cores']} cores; flags: "
            f"{' '.join(shown_flags(cpu['flags'])) or 'none of ' + ' '.join(SHOWN_FLAGS)}; bf16 units: {units}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def zh_vocab() -> Path:
    """The Chinese vocabulary: models/ (scripts/prepare.py copies it there), else the fastbert package's copy."""
    here = ROOT / "models" / "google_zh_vocab.txt"
    spec = importlib.util.find_spec("fastbert")
    if here.is_file() or spec is None or not spec.submodule_search_locations:
        return here
    return Path(spec.submodule_search_locations[0], "files", "google_zh_vocab.txt")


# ------------------------------------------------------------------------------------ running a step


def sh(cmd: list, log: Path | None = None, cwd: Path = ROOT, env: dict | None = None) -> float:
    """Print ``$ cmd`` and run it in ``cwd``; returns its seconds. Its output is appended to ``log``
    after the same ``$`` line, or shown here when there is no log. A failure is a UsageError naming
    the step, its exit code and its last line (or, without a log, pointing at its message above)."""
    line = " ".join(shlex.quote(str(c)) for c in cmd)
    print(f"$ {line}", flush=True)
    start = time.perf_counter()
    if log is None:
        code = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env).returncode
    else:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {line}\n")
            f.flush()
            code = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        step = next((Path(str(c)).name for c in cmd if str(c).endswith(".py")), Path(str(cmd[0])).name)
        said = "its message is above" if log is None else f"{last_line(log)} (log: {log})"
        raise UsageError(f"{step} failed (exit {code}): {said}")
    return time.perf_counter() - start


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# ------------------------------------------------------------------------------------ timing


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_time(fn, repeats: int) -> float:
    """Best of ``repeats`` calls after one warm-up: a slow spell on a shared machine spoils one try."""
    fn()
    return min(timed(fn) for _ in range(repeats))


def peak_gemms(n: int = 2048) -> dict:
    """Large fp32 GEMMs for the machine's peak: name -> (FLOPs, call); torch.mm and oneDNN's linear."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = {"torch.mm": (2.0 * n**3, lambda: torch.mm(a, b))}
    if torch.backends.mkldnn.is_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b, n)
        out["onednn linear"] = (2.0 * n**3, lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    return out


def encoder_flops(encoder, lengths) -> float:
    """Useful FLOPs of a transformer encoder over samples of these real lengths (no padding): the
    library's analytic per-layer count (``uer.fastbert.flops``: ``TransformerLayer.compute`` on
    a shape-only executor), times the layers."""
    import torch

    from uer.fastbert.flops import FlopModel

    counter = FlopModel(projection=None, block=encoder.block(0), head=None, layers_num=encoder.layers_num)
    return encoder.layers_num * float(counter.layer(torch.tensor(lengths, dtype=torch.float64)).sum())


def timed_steps(model, optimizer, batches, forward, device="cpu", precision: str = "fp32") -> float:
    """Seconds for len(batches) optimizer steps (forward + backward + step) under autocast, as
    ``pretrain.py --precision``; CUDA is synchronised before each clock reading."""
    import torch

    device = torch.device(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    sync(device)
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = forward(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------ writing


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:  # makes the folder; a temp file renamed on success
        f.write(text)


def write_json(path: Path, data, indent: int = 2) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


# ------------------------------------------------------------------------------------ pre-training peers

SIZES = {  # UER-py's names: layers, hidden, heads, feed-forward
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}


def ours_config(size: str, seq: int):
    from uer.config import config_from_dict

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
    return BertForMaskedLM(BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=heads, intermediate_size=ffn,
                                      max_position_embeddings=max(512, seq), type_vocab_size=2))


def hf_batch(batch):
    seg = batch["seg"]
    return {"input_ids": batch["src"], "token_type_ids": (seg == 2).long(), "attention_mask": (seg > 0).long(),
            "labels": batch["tgt_mlm"]}


# ------------------------------------------------------------------------------------ few-label FastBERT runs


def label_budgets(text: str) -> str:
    """``--labels``: a positive number of training rows, or ``all``."""
    if text != "all" and not (text.isdigit() and int(text) > 0):
        import argparse

        raise argparse.ArgumentTypeError(f"expected positive numbers or 'all', got {text!r}")
    return text


def kept_fastbert_run(runs_dir: Path, tag: str, command: list, log: Path, **meta) -> dict:
    """One ``run_fastbert.py`` run whose summary is kept in ``runs_dir/<tag>.json``: reused if it
    exists (it finished before an interruption); a half-finished run starts over. ``command`` is the
    run without its outputs (``--output_model_path``, ``--report_path`` go to ``runs_dir/<tag>/``);
    ``meta`` (backbone, labels, seed) leads the summary."""
    report = runs_dir / f"{tag}.json"
    if report.is_file():
        return json.loads(report.read_text(encoding="utf-8"))
    work = runs_dir / tag
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sh([*command, "--output_model_path", work / "model.pt", "--report_path", work / "report.json"], log)
    full = json.loads((work / "report.json").read_text(encoding="utf-8"))
    chosen = full["chosen"] or {}
    import yaml

    # the rate the run trained with, as its model's config records it (a flag's, the YAML's or uer.recipe's)
    used = yaml.safe_load((work / "model.config.yaml").read_text(encoding="utf-8"))["fastbert"]
    kept = {**meta, "train_rows": full["train_rows"], "teacher_accuracy": full["teacher_accuracy"],
            "chosen_speed": chosen.get("speed"), "chosen_accuracy": chosen.get("accuracy"),
            "flops_speedup": chosen.get("flops_speedup"), "learning_rate": used["learning_rate"],
            "dev_accuracy": full["stage1"]["best"]}
    write_json(report, kept)
    return kept


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def budget_table(runs: list[dict], label_sets: list[str], backbones: tuple[str, ...]) -> tuple[list[str], dict]:
    """The markdown table of teacher accuracy (mean ± std over seeds, in points) per label budget and
    backbone, and those means: ``{(labels, backbone): (mean, std)}``."""
    lines = ["| labels | backbone | test accuracy, speed 0 (mean ± std) | FLOPs speed-up within 1 point (mean) | seeds |",
             "| --- | --- | --- | --- | --- |"]
    means = {}
    for labels in label_sets:
        for backbone in backbones:
            mine = [r for r in runs if r["labels"] == labels and r["backbone"] == backbone]
            means[labels, backbone] = mean_std([100 * r["teacher_accuracy"] for r in mine])
            speedups = [r["flops_speedup"] for r in mine if r["flops_speedup"] is not None]
            speed = f"{statistics.fmean(speedups):.2f}x" if speedups else "n/a"
            mean, std = means[labels, backbone]
            lines.append(f"| {labels} | {backbone} | {mean:.2f} ± {std:.2f} | {speed} | {len(mine)} |")
    return lines, means


CHAR_BERT = """# BERT L{layers}/H{hidden}, learned positions (ALiBi does not export), character tokens
embedding:
  components: [word, {{name: pos, max_seq_length: 128}}, seg]
  emb_size: {hidden}
encoder: {{name: transformer, hidden_size: {hidden}, layers_num: {layers}, heads_num: {heads}, feedforward_size: {ffn}}}
target:
  components: [mlm]
tokenizer: {{name: char}}
"""


def char_bert_config(layers: int, hidden: int) -> str:
    """The YAML of a small character-level BERT (the NER export and word-level benches' tagger)."""
    return CHAR_BERT.format(layers=layers, hidden=hidden, heads=max(hidden // 64, 2), ffn=4 * hidden)
