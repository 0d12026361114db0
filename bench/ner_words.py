"""Word-level NER through ``run_ner.py``'s CoNLL path, on the word-segmented People's Daily.

No English CoNLL-form NER set ships in a package installed here, so the word-level set is People's
Daily itself at its own segmentation: the words of ``scripts/build_ner_dataset.py``'s parse (a
surname and given name joined, as there), one ``word tag`` line each (``B-PER`` / ``B-LOC`` /
``B-ORG`` / ``O``: every entity is one word of the corpus), a blank line between sentences, the
same articles in the same splits. Each word becomes its characters (``char`` tokenizer) and its
first character carries its tag; F1 is over word spans. The corpus' own segmentation gives the
entity boundaries, so this is an easier task than the character-level one (``bench/ner_tradeoff.py``).

    flock /tmp/uer-bench.lock python bench/ner_words.py               # a few minutes on 2 cores

Writes ``data/ner_pd98_words/`` and ``bench/results/ner_words.json`` (the run under ``--work_dir``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import build_ner_dataset as builder  # noqa: E402
from bench.common import PY, ROOT, char_bert_config, cpu_info, sh, write_json, write_text, zh_vocab  # noqa: E402
from uer.utils.cli import non_negative_int, parse_speeds, positive_int, run_main  # noqa: E402



def build_words(out: Path) -> dict[str, int]:
    """``out/{train,dev,test}.conll`` and ``label2id.json`` from the installed corpus; sentences per split."""
    lines = builder.read_corpus(builder.corpus_path())
    text = {"train": [], "dev": [], "test": []}
    for article in builder.articles(lines, "199801.txt"):
        name = builder.split_of(article)
        for para in article:
            for sent in builder.sentences(para):
                text[name].append("".join(f"{w.text} {'O' if w.entity is None else 'B-' + w.entity}\n" for w in sent) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in text.items():
        write_text(out / f"{name}.conll", "".join(rows))
    write_text(out / "label2id.json", json.dumps({t: i for i, t in enumerate(builder.LABELS)}, indent=1) + "\n")
    return {name: len(rows) for name, rows in text.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default=str(ROOT / "out" / "ner_words"))
    p.add_argument("--data_dir", default=str(ROOT / "data" / "ner_pd98_words"))
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "ner_words.json"))
    p.add_argument("--layers", type=positive_int, default=4)
    p.add_argument("--hidden", type=positive_int, default=128)
    p.add_argument("--train_samples", type=non_negative_int, default=8000)
    p.add_argument("--epochs_num", type=positive_int, default=3)
    p.add_argument("--speed", type=parse_speeds, default=(0.0, 0.01, 0.05))
    args = p.parse_args(argv)

    def body() -> int:
        work, data = Path(args.work_dir), Path(args.data_dir)
        work.mkdir(parents=True, exist_ok=True)
        sentences = build_words(data)
        config = work / "bert.yaml"
        write_text(config, char_bert_config(args.layers, args.hidden))
        model = work / "tagger" / "model.pt"
        seconds = sh([PY, "run_ner.py", "--config_path", config, "--vocab_path", zh_vocab(),
                      "--train_path", data / "train.conll", "--dev_path", data / "dev.conll",
                      "--test_path", data / "test.conll", "--label2id_path", data / "label2id.json",
                      "--output_model_path", model, "--train_samples", args.train_samples, "--dev_samples", 500,
                      "--epochs_num", args.epochs_num, "--distill_epochs_num", 1, "--batch_size", 32,
                      "--seq_length", 64, "--learning_rate", "1e-3", "--crf",
                      "--speed", ",".join(f"{s:g}" for s in args.speed), "--timing_samples", 0,
                      "--no_plot", "--no_progress", "--threads", 2], work / "log.txt")
        report = json.loads((model.parent / "model.report.json").read_text())
        print(f"word-level People's Daily ({sentences['test']} test sentences): full model F1 {report['teacher_f1']:.4f}, "
              f"with its CRF {report['teacher_crf_f1']:.4f}; " + ", ".join(
                  f"speed {r['speed']:g}: {r['f1']:.4f} (exit {r['mean_exit_layer']:.2f}, FLOPs x{r['flops_speedup']:.2f})"
                  for r in report["rows"]))
        write_json(Path(args.results), {
            "cpu": cpu_info(), "date": time.strftime("%Y-%m-%d"), "args": vars(args) | {"speed": list(args.speed)},
            "sentences": sentences, "teacher_f1": report["teacher_f1"], "teacher_crf_f1": report["teacher_crf_f1"],
            "rows": report["rows"], "seconds": seconds})
        return 0

    return run_main("bench/ner_words.py", body)


if __name__ == "__main__":
    sys.exit(main())
