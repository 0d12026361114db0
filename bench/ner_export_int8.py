"""An exported tagger, fp32 against int8, on People's Daily: train a small tagger with run_ner.py
(learned positions, so that it exports; ``--crf`` too, for ``teacher_crf_f1``), export it both ways
with ``python -m uer export``, run the files on ONNX Runtime by the manifest's rule
(``uer.tagging.export.ExportedTagger``) over the whole test split, and score entity F1 per speed
beside the eager model's.

    flock /tmp/uer-bench.lock python bench/ner_export_int8.py          # ~10 minutes on 2 cores

Goal (issue 25): the int8 export within 1 F1 point of the fp32 export, at every speed measured.
Writes ``bench/results/ner_export_int8.json`` (the run itself under ``--work_dir``).
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PY, ROOT, char_bert_config, cpu_info, sh, write_json, write_text, zh_vocab  # noqa: E402
from uer.utils.cli import non_negative_int, parse_speeds, positive_int, run_main  # noqa: E402


class Exported:
    """An :class:`uer.tagging.export.ExportedTagger` as :func:`uer.tagging.predictor.tag_chunks` runs a
    ``TokenExit`` (its own exit rule: the manifest's)."""

    device = "cpu"

    def __init__(self, exported) -> None:
        self.exported = exported

    def predict(self, src, seg, speed, window, policy):
        import torch

        probs, layers = self.exported.predict(src.numpy(), seg.numpy(), speed, window)
        return types.SimpleNamespace(probs=torch.from_numpy(probs), exit_layer=torch.from_numpy(layers))


def evaluate(runner, chunks, gold, id2label, pad_id: int, speed: float, batch_size: int = 64) -> dict:
    """Entity scores and the mean exit layer of its units at ``speed`` over ``chunks``, as NerTagger tags them."""
    from uer.tagging.data import assemble, pick
    from uer.tagging.metrics import entity_scores
    from uer.tagging.predictor import tag_chunks

    ids, exits = tag_chunks(runner, chunks, pad_id, speed, 0, batch_size)
    units = [e for r, row in enumerate(exits) for e in pick(row, chunks.units(r))]
    scores = entity_scores(gold, assemble(chunks, [[id2label[k] for k in row] for row in ids]))
    return {"f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
            "mean_exit_layer": sum(units) / len(units)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default=str(ROOT / "out" / "ner_export_int8"))
    p.add_argument("--results", default=str(ROOT / "bench" / "results" / "ner_export_int8.json"))
    p.add_argument("--layers", type=positive_int, default=4)
    p.add_argument("--hidden", type=positive_int, default=128)
    p.add_argument("--train_samples", type=non_negative_int, default=8000)
    p.add_argument("--epochs_num", type=positive_int, default=3)
    p.add_argument("--distill_epochs_num", type=positive_int, default=1)
    p.add_argument("--speed", type=parse_speeds, default=(0.0, 0.01, 0.05, 0.1))
    args = p.parse_args(argv)

    def body() -> int:
        import torch

        from uer.tagging import NerTagger
        from uer.tagging.data import encode_sentences, read_ner_tsv
        from uer.tagging.export import ExportedTagger

        torch.set_num_threads(2)
        work, data = Path(args.work_dir), ROOT / "data" / "ner_pd98"
        work.mkdir(parents=True, exist_ok=True)
        log = work / "log.txt"
        seconds = {}
        if not (data / "test.tsv").is_file():
            seconds["build data"] = sh([PY, "scripts/build_ner_dataset.py", "--out_dir", str(data)], log)
        config = work / "bert.yaml"
        write_text(config, char_bert_config(args.layers, args.hidden))
        model = work / "tagger" / "model.pt"
        seconds["run_ner"] = sh([PY, "run_ner.py", "--config_path", config, "--vocab_path", zh_vocab(),
                                 "--train_path", data / "train.tsv", "--dev_path", data / "dev.tsv",
                                 "--test_path", data / "test.tsv", "--label2id_path", data / "label2id.json",
                                 "--output_model_path", model, "--train_samples", args.train_samples,
                                 "--dev_samples", 500, "--epochs_num", args.epochs_num,
                                 "--distill_epochs_num", args.distill_epochs_num, "--batch_size", 32,
                                 "--seq_length", 64, "--learning_rate", "1e-3", "--crf",
                                 "--speed", ",".join(f"{s:g}" for s in args.speed), "--timing_samples", 0,
                                 "--no_plot", "--no_progress", "--threads", 2], log)
        exports = {}
        for kind, extra in (("fp32", []), ("int8", ["--quantize", "int8"])):
            folder = work / f"onnx_{kind}"
            seconds[f"export {kind}"] = sh([PY, "-m", "uer", "export", model, folder, *extra], log)
            exports[kind] = ExportedTagger(folder, threads=2)
        tagger = NerTagger.load(model, runtime="eager")
        test = read_ner_tsv(data / "test.tsv", {t: i for i, t in enumerate(tagger.id2label)})
        chunks = encode_sentences(tagger.vocab, test.chars, None, tagger.seq_length)
        runners = {"eager": tagger.runner, **{kind: Exported(e) for kind, e in exports.items()}}
        rows = []
        for speed in args.speed:
            row = {"speed": speed}
            for name, runner in runners.items():
                t0 = time.perf_counter()
                row[name] = evaluate(runner, chunks, test.tags, tagger.id2label, tagger.vocab.pad_id, speed)
                row[name]["seconds"] = time.perf_counter() - t0
            row["int8_minus_fp32_points"] = 100 * (row["int8"]["f1"] - row["fp32"]["f1"])
            rows.append(row)
            print(f"speed {speed:g}: F1 eager {row['eager']['f1']:.4f}, fp32 export {row['fp32']['f1']:.4f}, "
                  f"int8 export {row['int8']['f1']:.4f} ({row['int8_minus_fp32_points']:+.2f} points); mean exit layer "
                  f"{row['fp32']['mean_exit_layer']:.2f} / {row['int8']['mean_exit_layer']:.2f}", flush=True)
        import json

        report = json.loads((model.parent / "model.report.json").read_text())
        met = all(abs(r["int8_minus_fp32_points"]) <= 1.0 for r in rows)
        print(f"goal: int8 export within 1 F1 point of fp32 at every speed: {'met' if met else 'NOT met'}; "
              f"run_ner.py's full model F1 {report['teacher_f1']:.4f}, with its CRF {report['teacher_crf_f1']:.4f}")
        write_json(Path(args.results), {
            "cpu": cpu_info(), "date": time.strftime("%Y-%m-%d"), "args": vars(args) | {"speed": list(args.speed)},
            "test_sentences": len(test.chars), "rows": rows, "goal_int8_within_1_point": met,
            "teacher_f1": report["teacher_f1"], "teacher_crf_f1": report["teacher_crf_f1"], "seconds": seconds})
        return 0

    return run_main("bench/ner_export_int8.py", body)


if __name__ == "__main__":
    sys.exit(main())
