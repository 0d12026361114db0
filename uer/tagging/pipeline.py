"""What ``run_ner.py`` does: the shared early-exit run (:mod:`uer.exit.pipeline`) on UER's NER TSV
(``text_a<TAB>label``, characters and BIO tags) or CoNLL-form words (``word tag`` lines; each
word's first sub-token carries its tag) with the ``token_exit`` target (``crf: true``: plus the
full model's CRF, reported as ``teacher_crf_f1``).

Token-level pieces only: the label map, reading and cutting sentences into rows, the entity-F1
sweep with its exit window, and per-speed predictions in the input's format. Its training
hyper-parameters are the config's ``ner`` section.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uer.config import Config
from uer.exit import pipeline as run_
from uer.exit.pipeline import Outputs, RunOptions, UsageError
from uer.exit.report import plot_tradeoff
from uer.exit.sweep import chosen_speed
from uer.model_builder import build_model
from uer.tagging.data import (NerData, NerDataError, assemble, data_format, encode_sentences, read_label2id, read_ner,
                              word_pieces)
from uer.tagging.evaluate import crf_decode, sweep
from uer.tagging.inference import TokenExit, token_exit_target
from uer.tagging.metrics import entity_scores
from uer.tagging.report import format_table, write_predictions
from uer.tagging.training import distill, fingerprint, finetune
from uer.utils.cli import input_file, on_interrupt, set_deterministic

SECTION = "ner"  # the config section with the training hyper-parameters
MAX_WINDOW = 1 << 20  # any window at least a row long means the same: "the whole row"


@dataclass(frozen=True)
class NerOptions(RunOptions):
    """``run_ner.py``'s own options beside the shared ones."""

    label2id_path: str = ""
    window: int = 0  # a token exits only when every real token within +-window is sure enough too
    data_format: str | None = None  # "tsv" | "conll"; None: from the files' extension


def _is_our_report(data: dict) -> bool:
    return "tags" in data


def _subset(data: NerData, n: int, seed: int) -> NerData:
    rows = run_.subsample(len(data.chars), n, seed)
    if rows is None:
        return data
    return NerData(data.path, [data.chars[i] for i in rows], None if data.tags is None else [data.tags[i] for i in rows],
                   data.skipped, data.data_format)


def input_format(opts: NerOptions) -> str:
    """The one format of the train, dev and test files (``--data_format``, else their extensions)."""
    found = {flag: data_format(path, opts.data_format) for flag, path in (
        ("--train_path", opts.train_path), ("--dev_path", opts.dev_path), ("--test_path", opts.test_path)) if path}
    if len(set(found.values())) > 1:
        raise NerDataError("the data files are of different formats (" + ", ".join(f"{k} {v}" for k, v in found.items())
                           + "); give files of one format, or --data_format")
    return found["--train_path"]


def run(opts: NerOptions) -> dict[str, Any]:
    from uer.tokenizers import Vocab

    started = time.perf_counter()
    on_interrupt("interrupted before training began; nothing of this run was written yet")
    run_.check_options(opts)
    if not 0 <= opts.window <= MAX_WINDOW:
        raise UsageError(f"--window {opts.window}: expected an integer in [0, {MAX_WINDOW}] (any window longer than a row "
                         "means the whole row)")
    opts, device = run_.start(opts)
    paths = {flag: input_file(path, flag) for flag, path in (
        ("--train_path", opts.train_path), ("--dev_path", opts.dev_path), ("--test_path", opts.test_path),
        ("--label2id_path", opts.label2id_path), ("--config_path", opts.config_path),
        ("--pretrained_model_path", opts.pretrained_model_path), ("--vocab_path", opts.vocab_path)) if path}
    fmt = input_format(opts)  # the files exist: a bad --data_format or an unknown extension, before anything is read
    if not opts.vocab_path:
        raise UsageError("--vocab_path: no vocabulary given")
    config = run_.resolve_config(opts, "token_exit", SECTION)
    run_.check_config(config, opts, SECTION)
    out = Outputs(Path(opts.output_model_path), "" if opts.window == 0 else f".window{opts.window}")
    report_path = run_.check_outputs(opts, out, paths, _is_our_report, "run_ner.py")
    vocab_path = paths["--vocab_path"]
    try:
        vocab = Vocab.load(vocab_path)
        vocab.cls_id, vocab.pad_id  # noqa: B018  (a vocabulary without them cannot make rows)
    except (ValueError, OSError) as exc:  # the vocabulary's own message names file:line
        raise UsageError(f"--vocab_path {vocab_path}: {exc}") from None
    # CoNLL words -> sub-tokens as the model's tokenizer splits them (a tokenizer that cannot: refused here)
    pieces = word_pieces(vocab, config.tokenizer.name, config.tokenizer) if fmt == "conll" else None
    label2id = read_label2id(paths["--label2id_path"])
    id2label = [t for t, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    ner = config.ner
    train_full = read_ner(paths["--train_path"], label2id, fmt, opts.skip_malformed)
    dev_full = read_ner(paths["--dev_path"], label2id, fmt, opts.skip_malformed)
    test_full = read_ner(paths["--test_path"], label2id, fmt, opts.skip_malformed) if opts.test_path else None
    tables = (train_full, _subset(train_full, opts.train_samples, ner.seed), dev_full,
              _subset(dev_full, opts.dev_samples, ner.seed + 1),
              None if test_full is None else _subset(test_full, opts.test_samples, ner.seed + 2), test_full)
    set_deterministic(opts.deterministic)
    torch.manual_seed(ner.seed)
    with run_.claim(out, report_path):
        return _run_locked(opts, config, device, out, report_path, vocab_path, vocab, id2label, label2id, tables,
                           (fmt, pieces), started)


def _run_locked(opts: NerOptions, config: Config, device: torch.device, out: Outputs, report_path: Path, vocab_path: Path,
                vocab, id2label: list[str], label2id: dict[str, int], tables, form, started: float) -> dict[str, Any]:
    ner, log = config.ner, opts.log
    fmt, pieces = form  # the input's format and how its words become sub-tokens (None: characters)
    train_full, train, dev_full, dev, test, test_full = tables
    skipped = {d.path: {"rows": len(d.skipped), "first": [f"line {n}: {r}" for n, r in d.skipped[:5]]}
               for d in (train_full, dev_full, test_full) if d is not None}
    for path, info in skipped.items():
        if info["rows"]:
            log(f"skipped {info['rows']} malformed rows in {path} (e.g. {info['first'][0]})")
    log(f"tags: {id2label}; train {len(train.chars)} sentences"
        + (f" (a seeded subsample of {len(train_full.chars)})" if train is not train_full else "")
        + f", dev {len(dev.chars)} of {len(dev_full.chars)}" + (f", test {len(test.chars)} of {len(test_full.chars)}" if test else ""))
    seq = ner.seq_length
    train_chunks = encode_sentences(vocab, train.chars, train.tag_ids(label2id), seq, pieces)
    dev_chunks = encode_sentences(vocab, dev.chars, dev.tag_ids(label2id), seq, pieces)
    unk = sum(r.count(vocab.unk_id) for r in train_chunks.ids)
    log(f"train: {len(train_chunks)} rows of at most {seq} tokens; {unk} [UNK] {'tokens' if pieces else 'characters'}")
    model = build_model(config, vocab_size=len(vocab), labels_num=len(id2label), vocab_tokens=vocab.tokens)
    distills = ner.distill_epochs_num > 0 and model.encoder.layers_num > 1

    # the files at the output must be this run's (resume) or none: checked before anything is written
    resume = run_.prepare(opts, config, SECTION, model, out, vocab_path,
                          (fingerprint(train_chunks), fingerprint(train_chunks.without_tags()), fingerprint(dev_chunks)),
                          distills, device)
    extra = {"id2label": id2label, "vocab_size": len(vocab), "seq_length": seq, "vocab_file": out.vocab.name,
             "exit_policy": opts.exit_policy, "window": opts.window, "data_format": fmt}

    trained = run_.train_and_save(
        opts, config, SECTION, out, resume, device, model, extra,
        lambda so: finetune(model, config, train_chunks, dev_chunks, dev.tags, id2label, vocab.pad_id, so, extra),
        (lambda so: distill(model, config, train_chunks, dev_chunks, dev.tags, id2label, vocab.pad_id, so, extra))
        if distills else None, "entity F1")
    if trained is None:
        return {}
    s1, s2 = trained

    report: dict[str, Any] = {"tags": id2label, "skipped_rows": skipped, "train_sentences": len(train.chars),
                              "train_sentences_available": len(train_full.chars), "dev_sentences": len(dev.chars),
                              "stage1": run_.brief(s1), "stage2": run_.brief(s2), "window": opts.window,
                              "exit_policy": opts.exit_policy}
    plot = None
    if test is not None:
        test_chunks = encode_sentences(vocab, test.chars, test.tag_ids(label2id), seq, pieces)
        runner = TokenExit(model, runtime=opts.runtime)
        log(f"inference runtime: {runner.name} ({runner.reason})")
        result = sweep(runner, test_chunks, test.tags, id2label, vocab.pad_id, opts.speeds, window=opts.window,
                       timing_samples=opts.timing_samples, measure=opts.timing_samples > 0, batch_size=opts.timing_batch_size, policy=opts.exit_policy)
        teacher, rows = result["teacher"], result["rows"]
        entities = sum(t.startswith("B-") or t.startswith("I-") for s in test.tags for t in s)
        chosen = chosen_speed(rows, teacher["f1"], "f1") if entities else None
        report.update({
            "teacher_f1": teacher["f1"], "teacher_precision": teacher["precision"], "teacher_recall": teacher["recall"],
            "test_sentences": len(test.chars), "rows": rows, "full_flops_per_sentence": result["full_flops_per_sentence"],
            "timing_samples": result["timing_samples"], "timing_batch_size": opts.timing_batch_size,
            "wall_seconds": result["wall_seconds"], "device": str(device), "threads": torch.get_num_threads(),
            "chosen": chosen, "runtime": runner.name, "runtime_reason": runner.reason,
        })
        suffix = f".{fmt}"  # the predictions are written in the input's format (.tsv, .conll)
        write_predictions(out.predictions / f"full_model{suffix}", test.chars, result["teacher_tags"], fmt)
        crf = token_exit_target(model).crf
        if crf is not None:  # the full model decoded by its CRF, beside its softmax tags
            ids = crf_decode(runner, crf, test_chunks, vocab.pad_id, opts.timing_batch_size)
            crf_tags = assemble(test_chunks, [[id2label[k] for k in row] for row in ids])
            scores = entity_scores(test.tags, crf_tags)
            report.update(teacher_crf_f1=scores["f1"], teacher_crf_precision=scores["precision"],
                          teacher_crf_recall=scores["recall"])
            write_predictions(out.predictions / f"full_model_crf{suffix}", test.chars, crf_tags, fmt)
            log(f"full model with its CRF: entity F1 {scores['f1']:.4f} (softmax {teacher['f1']:.4f})")
        written = []
        for speed, tags in zip(opts.speeds, result["predictions"]):
            path = out.predictions / f"speed_{speed:.2f}{suffix}"
            write_predictions(path, test.chars, tags, fmt)
            written.append(path.name)
        run_.write_predictions_folder(out.predictions, written)
        report["predictions"] = str(out.predictions)
        log(format_table(rows, teacher["f1"]))
        if not entities:
            run_.warn(f"--test_path {opts.test_path} has no entities: F1 is 0 at every speed and no speed is chosen")
        elif chosen is not None:
            flops = f"{chosen['flops_speedup']:.2f}" if chosen["flops_speedup"] is not None else "-"
            log(f"largest speed within 1 F1 point of the full model: {chosen['speed']:g} "
                f"(F1 {chosen['f1']:.4f}, FLOPs x{flops})")
        run_.record_choice(out.model, model, config, extra, chosen)
        if opts.plot and len(rows) > 1:
            plot = lambda: plot_tradeoff(out.plot, rows, teacher["f1"], "token-level early exit", "f1", "full model")  # noqa: E731
    report["seconds"] = time.perf_counter() - started
    run_.write_report(report_path, report, plot, log)
    return report
