"""Small synthetic data for the multi-label and regression FastBERT tests (written by us): random
sentences over ``tests/data/fastbert_vocab.txt``'s words, whose labels follow from the words, so a
2-layer tiny model learns them in seconds."""
from __future__ import annotations

import random
from pathlib import Path

import torch

from tests.helpers import tiny_config
from tests.test_fastbert_cli import TINY_YAML  # the tiny encoder config the FastBERT tests share
from uer import build_model
from uer.checkpoint import save_checkpoint

DATA = Path("tests/data")
VOCAB = DATA / "fastbert_vocab.txt"
POS = ["good", "great", "excellent", "wonderful", "lovely", "happy"]
NEG = ["bad", "terrible", "awful", "horrible", "boring", "sad"]
THING = ["car", "phone", "movie", "book", "song", "meal", "trip"]
FILL = ["the", "this", "my", "is", "was", "really", "so", "today", "day", "again"]


def sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(FILL, 3) + [rng.choice(POS + NEG + THING + FILL) for _ in range(rng.randint(1, 3))]
        rng.shuffle(words)
        out.append(words)
    return out


def multi_label(words: list[str]) -> str:
    """NEG / POS / THING when the sentence has such a word; "" when none."""
    return ",".join(name for name, group in (("NEG", NEG), ("POS", POS), ("THING", THING)) if set(words) & set(group))


def year(words: list[str]) -> str:
    return f"{1990 + 2.0 * sum(w in POS for w in words) - 2.0 * sum(w in NEG for w in words):.1f}"


def write_sets(folder: Path, label, sizes=(("train", 240, 1), ("dev", 48, 2), ("test", 48, 3))) -> None:
    """``train/dev/test.tsv`` in ``folder``, ``label(words)`` the label column; plus the tiny
    config and a tiny pre-trained MLM checkpoint (``tiny.yaml``, ``pretrained.pt``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in sizes:
        rows = [f"{label(w)}\t{' '.join(w)}\n" for w in sentences(n, seed)]
        (folder / f"{name}.tsv").write_text("label\ttext_a\n" + "".join(rows))
    (folder / "tiny.yaml").write_text(TINY_YAML)
    torch.manual_seed(0)
    cfg = tiny_config(targets=["mlm"])
    save_checkpoint(folder / "pretrained.pt", build_model(cfg, vocab_size=len(VOCAB.read_text().splitlines())), cfg)


def run_args(folder: Path, task: str, *extra: str) -> list[str]:
    return [
        "--config_path", str(folder / "tiny.yaml"), "--pretrained_model_path", str(folder / "pretrained.pt"),
        "--vocab_path", str(VOCAB), "--train_path", str(folder / "train.tsv"), "--dev_path", str(folder / "dev.tsv"),
        "--test_path", str(folder / "test.tsv"), "--output_model_path", str(folder / "out" / "model.pt"),
        "--epochs_num", "5", "--distill_epochs_num", "2", "--batch_size", "16", "--seq_length", "16",
        "--learning_rate", "3e-3", "--distill_learning_rate", "3e-3", "--seed", "3", "--report_steps", "100",
        "--branch_size", "16", "--timing_samples", "3", "--no_progress", "--runtime", "eager", "--task", task,
        # the policy at every speed: the default plan comes from timings (a loaded or another CPU may keep the
        # full model at speed 1); these tests are about the stages and the report, test_exit_pays about the plan
        "--exit_plan", "always", *extra,
    ]
