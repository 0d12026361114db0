"""Corpus -> dataset directory, streaming, with parallel workers.

    stats = preprocess(PreprocessOptions(corpus_path="corpus.txt", dataset_path="out/dataset",
                                         processor="bert", tokenizer=cfg.tokenizer, vocab_path="vocab.txt"))

Each worker owns one byte range of the corpus (:func:`uer.data.corpus.shards`), tokenizes its
documents, turns them into instances and appends them to its own shard files in bounded chunks;
the shards are then joined by streaming copies. Nothing holds the corpus or the dataset in
memory, so peak memory depends on the number of workers, not on the corpus size.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uer.config import TokenizerConfig
from uer.data import corpus as corpus_lib
from uer.data.dataset import DatasetWriter, Instance, merge_shards, not_masked, token_dtype, write_meta
from uer.data.masking import MaskIds, MaskingConfig, mask_batch
from uer.data.processors import (
    LABELLED, LAYOUT, MASKED, PROCESSORS, ClsProcessor, Sentence, SpecialIds, Stats, TextEncoder, make_processor,
)


@dataclass(frozen=True)
class PreprocessOptions:
    corpus_path: str
    dataset_path: str
    processor: str
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    vocab_path: str | None = None
    spm_model_path: str | None = None
    seq_length: int = 128
    processes_num: int = 1
    dup_factor: int = 1
    short_seq_prob: float = 0.1
    dynamic_masking: bool = True  # False: masks drawn here, once per dup (UER's default)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    seed: int = 7
    progress: bool = True

    def __post_init__(self) -> None:
        if self.processor not in PROCESSORS:
            raise ValueError(f"unknown data processor {self.processor!r}; valid: {', '.join(PROCESSORS)}")
        if self.processes_num < 1 or self.dup_factor < 1:
            raise ValueError("processes_num and dup_factor must be >= 1")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must lie in [0, 1], got {self.short_seq_prob}")

    @property
    def word_boundaries(self) -> bool:
        """A segmenter runs only when masking needs words and the corpus is Chinese-aware."""
        return self.processor in MASKED and self.masking.strategy != "token" and self.tokenizer.name != "space"


def load_tokenizer(tokenizer: TokenizerConfig, vocab_path: str | None, spm_model_path: str | None):
    from uer.tokenizers import build_tokenizer

    return build_tokenizer(tokenizer, vocab_path=vocab_path, spm_model_path=spm_model_path)


def vocab_fingerprint(tokens: list[str]) -> str:
    return hashlib.sha1("\n".join(tokens).encode("utf-8")).hexdigest()


def continuation_table(tokens: list[str]) -> np.ndarray:
    """(V,) bool: WordPiece pieces that continue a word ("##ing")."""
    return np.array([t.startswith("##") and len(t) > 2 for t in tokens], dtype=bool)


def mask_ids(vocab) -> MaskIds:
    specials = sorted({vocab.pad_id, vocab.cls_id, vocab.sep_id, vocab.mask_id, vocab.unk_id})
    return MaskIds(vocab.mask_id, tuple(specials), len(vocab), continuation_table(vocab.tokens))


def _fields(options: PreprocessOptions) -> list[str]:
    fields = []
    if options.processor in LABELLED:
        fields.append("labels")
    if options.processor in MASKED and not options.dynamic_masking:
        fields.append("mlm_tgt")
    if options.processor in MASKED and options.dynamic_masking and options.word_boundaries:
        fields.append("word_starts")
    return fields


def _work(
    options: PreprocessOptions, shard: corpus_lib.Shard, blank_separated: bool, out: str, worker: int, counter=None,
) -> dict[str, int]:
    """One worker: its byte range of the corpus -> its shard directory. Returns its counts."""
    tokenizer = load_tokenizer(options.tokenizer, options.vocab_path, options.spm_model_path)
    vocab = tokenizer.vocab
    ids = SpecialIds.from_vocab(vocab)
    encoder = TextEncoder(tokenizer, options.tokenizer.name, options.word_boundaries)
    rng = np.random.default_rng([options.seed, worker])
    stats = Stats()
    processors = [
        make_processor(options.processor, options.seq_length, ids, rng, stats, short_seq_prob=options.short_seq_prob)
        for _ in range(options.dup_factor)
    ]
    fields = _fields(options)
    writer = DatasetWriter(out, len(vocab), fields)
    static = "mlm_tgt" in fields
    masks = mask_ids(vocab) if static else None
    pool = masks.random_pool() if static else None
    sentinel = not_masked(token_dtype(len(vocab)))

    def write(inst: Instance) -> None:
        if static:
            candidates = ~np.isin(inst.tokens, masks.special_ids)
            starts = None if inst.word_starts is None else inst.word_starts[None]
            src, tgt = mask_batch(inst.tokens[None], candidates[None], options.masking, masks, rng, starts, pool)
            inst.tokens = src[0]
            inst.mlm_tgt = np.where(tgt[0] < 0, sentinel, tgt[0])
        writer.add(inst)

    def encode(text: str) -> Sentence:
        sentence = Sentence(*encoder.encode(text))
        stats["unk_tokens"] += int((sentence.ids == ids.unk).sum())
        return sentence

    progress = None
    if counter is not None:
        def progress(n: int) -> None:
            with counter.get_lock():
                counter.value += n
    elif options.progress:
        from tqdm import tqdm

        bar = tqdm(total=shard.end - shard.start, unit="B", unit_scale=True, desc="preprocess", file=sys.stderr, dynamic_ncols=True)
        progress = bar.update
    first_row = shard.start == 0
    for unit in corpus_lib.read_units(shard, blank_separated, progress):
        if options.processor == "cls":
            line = unit[0]
            if first_row and line.split("\t")[0].strip().lower() == "label":
                first_row = False
                continue  # the header
            first_row = False
            parts = line.split("\t")
            if len(parts) not in (2, 3) or not parts[0].strip().lstrip("-").isdigit():
                raise corpus_lib.CorpusFormatError(f"{shard.path}: expected 'label<TAB>text_a[<TAB>text_b]', got {line[:80]!r}")
            stats["documents"] += 1
            a = encode(parts[1])
            b = encode(parts[2]) if len(parts) == 3 else None
            for processor in processors:
                assert isinstance(processor, ClsProcessor)
                for inst in processor.feed_row(int(parts[0]), a, b):
                    write(inst)
            continue
        stats["documents"] += 1
        stats["lines"] += len(unit)
        doc = [s for s in (encode(line) for line in unit) if len(s)]
        if not doc:
            stats.drop("document without tokens")
            continue
        for processor in processors:
            for inst in processor.feed(doc):
                write(inst)
    for processor in processors:
        for inst in processor.finish():
            write(inst)
    writer.close()
    if counter is None and options.progress:
        bar.close()
    stats["bytes"] = shard.end - shard.start
    return dict(stats)


def preprocess(options: PreprocessOptions) -> dict[str, Any]:
    """Run the whole pipeline; returns the counts that were also printed and saved in meta.json."""
    started = time.perf_counter()
    layout = corpus_lib.inspect(options.corpus_path, LAYOUT[options.processor])
    tokenizer = load_tokenizer(options.tokenizer, options.vocab_path, options.spm_model_path)
    vocab = tokenizer.vocab
    SpecialIds.from_vocab(vocab)  # a vocabulary without [CLS]/[SEP]/[MASK]... fails here, not in a worker
    out = Path(options.dataset_path)
    work = Path(f"{out}.partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    parts = corpus_lib.shards(options.corpus_path, options.processes_num, layout.blank_separated)
    shard_dirs = [work / f"shard_{i:03d}" for i in range(len(parts))]
    print(f"reading {options.corpus_path} as: {layout.description}", file=sys.stderr)
    if options.processes_num == 1:
        results = [_work(options, parts[0], layout.blank_separated, str(shard_dirs[0]), 0)]
    else:
        results = _run_parallel(options, parts, layout.blank_separated, shard_dirs)
    fields = _fields(options)
    instances, tokens = merge_shards(shard_dirs, work, fields)
    for d in shard_dirs:
        shutil.rmtree(d)
    stats = Stats()
    for r in results:
        stats.update(r)
    if instances == 0:
        shutil.rmtree(work)
        raise corpus_lib.CorpusFormatError(
            f"{options.corpus_path}: no instances were made ({_summary(dict(stats), options)}); "
            "is the corpus in the layout corpora/README.md describes for this processor?"
        )
    meta = {
        "processor": options.processor,
        "seq_length": options.seq_length,
        "instances": instances,
        "tokens": tokens,
        "token_dtype": token_dtype(len(vocab)).name,
        "fields": fields,
        "vocab_size": len(vocab),
        "vocab_sha1": vocab_fingerprint(vocab.tokens),
        "tokenizer": asdict(options.tokenizer),
        "vocab_path": None if options.vocab_path is None else str(Path(options.vocab_path).resolve()),
        "spm_model_path": None if options.spm_model_path is None else str(Path(options.spm_model_path).resolve()),
        "dynamic_masking": options.dynamic_masking,
        "masking": asdict(options.masking),
        "labels_num": (max(0, *(int(v) for v in np.unique(np.fromfile(work / "labels.bin", dtype=np.int32)))) + 1)
        if options.processor == "cls" else None,
        "dup_factor": options.dup_factor,
        "short_seq_prob": options.short_seq_prob,
        "processes_num": options.processes_num,
        "seed": options.seed,
        "corpus_path": str(Path(options.corpus_path).resolve()),
        "layout": layout.description,
        "stats": dict(sorted(stats.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_meta(work, meta)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    print(_summary(meta["stats"], options, meta), file=sys.stderr)
    return meta


def _run_parallel(options, parts, blank_separated, shard_dirs) -> list[dict[str, int]]:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counter = ctx.Value("q", 0)
    total = sum(p.end - p.start for p in parts)
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc="preprocess", file=sys.stderr, dynamic_ncols=True)
    jobs = [(options, p, blank_separated, str(d), i) for i, (p, d) in enumerate(zip(parts, shard_dirs))]
    with ctx.Pool(len(parts), initializer=_set_counter, initargs=(counter,)) as pool:
        pending = pool.map_async(_work_with_counter, jobs)
        while not pending.ready():
            pending.wait(0.2)
            if bar is not None:
                bar.n = counter.value
                bar.refresh()
        results = pending.get()
    if bar is not None:
        bar.n = counter.value
        bar.close()
    return results


_COUNTER = None


def _set_counter(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _work_with_counter(job) -> dict[str, int]:
    return _work(*job, counter=_COUNTER)


def _summary(stats: dict[str, int], options: PreprocessOptions, meta: dict | None = None) -> str:
    lines = []
    if meta is not None:
        lines.append(
            f"wrote {options.dataset_path}: {meta['instances']} instances, {meta['tokens']} tokens "
            f"({meta['tokens'] / max(1, meta['instances']):.1f} per instance of at most {options.seq_length}) "
            f"in {meta['seconds']:.1f} s"
        )
    unit = "rows" if options.processor == "cls" else "documents"
    lines.append(
        f"read {stats.get('documents', 0)} {unit}"
        + (f", {stats.get('lines', 0)} lines" if options.processor != "cls" else "")
        + f"; [UNK] tokens: {stats.get('unk_tokens', 0)}"
    )
    if stats.get("truncated_instances"):
        lines.append(
            f"truncated: {stats['truncated_instances']} instances lost {stats['truncated_tokens']} tokens "
            f"to fit seq_length {options.seq_length}"
        )
    if stats.get("short_tail_instances"):
        lines.append(f"shorter than seq_length: {stats['short_tail_instances']} (the last instance of each worker)")
    for key, value in sorted(stats.items()):
        if key.startswith("dropped: "):
            lines.append(f"dropped {value}: {key[len('dropped: '):]}")
    return "\n".join(lines)
