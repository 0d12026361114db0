"""Corpus -> dataset directory, streaming, with parallel workers.

    stats = preprocess(PreprocessOptions(corpus_path="corpus.txt", dataset_path="out/dataset",
                                         processor="bert", tokenizer=cfg.tokenizer, vocab_path="vocab.txt"))

Each worker owns one byte range of the corpus (:func:`uer.data.corpus.shards`), tokenizes its
documents, turns them into instances and appends them to its own shard files in bounded chunks;
the shards are then joined by streaming copies. Nothing holds the corpus or the dataset in
memory, so peak memory depends on the number of workers, not on the corpus size.

The output is safe to point anywhere: the dataset is written to ``<dataset_path>.partial`` and
renamed into place at the end, under a lock (``<dataset_path>.lock``) that makes a second run into
the same path fail at once. Only a dataset we wrote (meta.json with our format marker, and no
file we did not write) is ever replaced; any other existing directory, a file, the current
directory or a directory that holds an input is refused before any work starts. An interrupted
run leaves the previous dataset as it was and no ``.partial`` behind.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from uer.config import TokenizerConfig
from uer.data import corpus as corpus_lib
from uer.data.dataset import (
    DATASET_FILES, DatasetWriter, Instance, is_dataset, merge_shards, not_masked, token_dtype, vocab_fingerprint,
    write_meta,
)
from uer.data.masking import MaskingConfig, mask_batch, mask_ids
from uer.data.processors import (
    Plan, Processor, ProcessorConfig, Sentence, SpecialIds, Stats, make_processor, processor_class,
)
from uer.data.words import TextEncoder, needs_segmenter
from uer.utils.cli import OutputLock, UsageError, on_interrupt, output_dir
from uer.utils.paths import resolve_path

PARTIAL_MARK = ".uer-preprocess"  # inside <dataset>.partial: the directory is ours to clean up


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
    skip_malformed: bool = False  # cls: skip and count malformed TSV rows instead of stopping

    def __post_init__(self) -> None:
        processor_class(self.processor)  # unknown -> an error listing the valid ones
        if self.processes_num < 1 or self.dup_factor < 1:
            raise ValueError("processes_num and dup_factor must be >= 1")
        self.processor_config  # seq_length and short_seq_prob are checked there, before any work

    @property
    def processor_config(self) -> ProcessorConfig:
        return ProcessorConfig(seq_length=self.seq_length, short_seq_prob=self.short_seq_prob)


# ----------------------------------------------------------------------------- inputs


def _utf8_file(path: Path, what: str) -> None:
    """A text input must be UTF-8: name the file and the line where it is not."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UsageError(f"{what} {path}:{line}: not UTF-8 text") from None


def load_tokenizer(tokenizer: TokenizerConfig, vocab_path: str | None, spm_model_path: str | None):
    """The tokenizer, with its files checked first: a directory, a missing file, a vocabulary that
    is not UTF-8 or a file that is no sentencepiece model is a UsageError naming the file."""
    from uer.tokenizers import build_tokenizer
    from uer.utils.cli import input_file

    vocab = vocab_path if vocab_path is not None else tokenizer.vocab_path
    spm = spm_model_path if spm_model_path is not None else tokenizer.spm_model_path
    if tokenizer.name != "sentencepiece" and vocab is not None:
        _utf8_file(input_file(vocab, "vocabulary file"), "vocabulary file")
    if tokenizer.name == "sentencepiece" and spm is not None:
        input_file(spm, "sentencepiece model")
    try:
        return build_tokenizer(tokenizer, vocab_path=vocab_path, spm_model_path=spm_model_path)
    except RuntimeError as exc:  # sentencepiece's C++ loader: the only RuntimeError on this path
        raise UsageError(f"sentencepiece model {spm}: not a sentencepiece model ({str(exc).splitlines()[0]})") from None


# ----------------------------------------------------------------------------- the output directory


def _is_partial_of_ours(path: Path) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / PARTIAL_MARK).is_file() or is_dataset(path):
        return True
    # a .partial left by an older preprocess.py: shard directories and dataset files only
    names = {e.name for e in path.iterdir()}
    return bool(names) and all(n in DATASET_FILES or re.fullmatch(r"shard_\d{3}", n) for n in names)


def _foreign_files(path: Path) -> list[str]:
    return sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir()
                  if e.name not in DATASET_FILES or not e.is_file() or e.is_symlink())


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check_dataset_path(out: Path, inputs: list[Path]) -> bool:
    """Refuse, before any work, an output that would destroy something; True if a dataset of ours
    is there (it will be replaced). Nothing is created or changed here."""
    flag = f"--dataset_path {out}"
    output_dir(out, "--dataset_path")  # an existing file, or a path under a file
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise UsageError(f"{flag} is the current directory or one above it; preprocess.py writes a directory "
                         f"of its own: give a new path, e.g. {out / 'dataset'}")
    for given in inputs:
        if target in given.resolve().parents:
            raise UsageError(f"{flag} holds the input {given}; give the dataset a directory of its own")
    for sibling in (Path(f"{out}.partial"), Path(f"{out}.old")):
        if (sibling.exists() or sibling.is_symlink()) and not _is_partial_of_ours(sibling):
            raise UsageError(f"{sibling} exists and was not left by preprocess.py; remove it or choose another --dataset_path")
    if out.is_symlink():
        raise UsageError(f"{flag} is a symbolic link; give the real directory")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not is_dataset(out):
        names = _foreign_files(out)
        raise UsageError(f"{flag} is a directory that is not a dataset written by preprocess.py (it holds "
                         f"{_shown(names)}); nothing was changed: choose a new path")
    foreign = _foreign_files(out)
    if foreign:
        raise UsageError(f"{flag} holds a dataset but also files preprocess.py did not write ({_shown(foreign)}); "
                         "nothing was changed: move them away or choose another path")
    return True


def _fresh_partial(out: Path) -> Path:
    work = Path(f"{out}.partial")
    if work.exists():
        shutil.rmtree(work)  # stale and ours (checked by check_dataset_path, under the lock)
    work.mkdir(parents=True)
    (work / PARTIAL_MARK).write_text(f"{os.getpid()}\n")
    return work


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C / SIGTERM wait until the block is done (the two renames that swap a dataset)."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _swap_in(work: Path, out: Path, replacing: bool) -> None:
    (work / PARTIAL_MARK).unlink()
    if not replacing:
        os.replace(work, out)  # out is absent or an empty directory
        return
    old = Path(f"{out}.old")
    if old.exists():
        shutil.rmtree(old)  # a stale one of ours (checked)
    with _signals_held():
        os.rename(out, old)
        os.rename(work, out)
    shutil.rmtree(old)


# ----------------------------------------------------------------------------- one worker


@dataclass(frozen=True)
class Job:
    """What every worker needs, decided once in the main process."""

    options: PreprocessOptions
    plan: Plan
    fields: tuple[str, ...]  # optional dataset fields (uer.data.dataset.OPTIONAL_FIELDS)
    word_boundaries: bool  # a word start per token is needed (whole-word / span masking)


def dataset_fields(processor: type[Processor], dynamic_masking: bool, word_boundaries: bool) -> tuple[str, ...]:
    fields = []
    if processor.label_key is not None:
        fields.append("labels")
    if processor.masked and not dynamic_masking:
        fields.append("mlm_tgt")
    if processor.masked and dynamic_masking and word_boundaries:
        fields.append("word_starts")
    return tuple(fields)


def _static_masker(vocab, masking: MaskingConfig, rng: np.random.Generator) -> Callable[[Instance], Instance]:
    """Masks drawn here, once per instance, stored as mlm_tgt (NOT_MASKED where not predicted)."""
    ids = mask_ids(vocab)
    pool = ids.random_pool()
    sentinel = not_masked(token_dtype(len(vocab)))

    def mask(inst: Instance) -> Instance:
        candidates = ~np.isin(inst.tokens, ids.special_ids)
        starts = None if inst.word_starts is None else inst.word_starts[None]
        src, tgt = mask_batch(inst.tokens[None], candidates[None], masking, ids, rng, starts, pool)
        inst.tokens = src[0]
        inst.mlm_tgt = np.where(tgt[0] < 0, sentinel, tgt[0])
        return inst

    return mask


def _encoder(tokenizer, word_boundaries: bool, unk: int, stats: Stats) -> Callable[[str], Sentence]:
    text = TextEncoder(tokenizer, word_boundaries)

    def encode(line: str) -> Sentence:
        sentence = Sentence(*text.encode(line))
        stats["unk_tokens"] += int((sentence.ids == unk).sum())
        return sentence

    return encode


@contextmanager
def _progress_bar(total: int, enabled: bool):
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc="preprocess", file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _work(job: Job, shard: corpus_lib.Shard, out: str, worker: int, counter=None) -> dict[str, int]:
    """Preprocess one shard: its byte range of the corpus -> its shard directory. Returns its counts."""
    options = job.options
    tokenizer = load_tokenizer(options.tokenizer, options.vocab_path, options.spm_model_path)
    vocab = tokenizer.vocab
    ids = SpecialIds.from_vocab(vocab)
    rng = np.random.default_rng([options.seed, worker])
    stats = Stats()
    processor = processor_class(options.processor)
    copies = [make_processor(options.processor, options.processor_config, ids, rng, stats)
              for _ in range(options.dup_factor)]  # one per --dup_factor copy, each with its own state
    writer = DatasetWriter(out, len(vocab), job.fields)
    mask = _static_masker(vocab, options.masking, rng) if "mlm_tgt" in job.fields else None
    encode = _encoder(tokenizer, job.word_boundaries, ids.unk, stats)

    def write(instances: Iterator[Instance]) -> None:
        for inst in instances:
            writer.add(mask(inst) if mask is not None else inst)

    with _progress_bar(shard.end - shard.start, counter is None and options.progress) as bar:
        progress = bar.update if bar is not None else None
        if counter is not None:
            def progress(n: int) -> None:
                with counter.get_lock():
                    counter.value += n
        for unit in processor.read(shard, job.plan, encode, stats, progress):
            for copy in copies:
                write(copy.feed(unit))
        for copy in copies:
            write(copy.finish())
    writer.close()
    stats["bytes"] = shard.end - shard.start
    return dict(stats)


# ----------------------------------------------------------------------------- the pipeline


def preprocess(options: PreprocessOptions) -> dict[str, Any]:
    """Run the whole pipeline; returns the meta.json it wrote (counts included, also printed)."""
    started = time.perf_counter()
    out = Path(options.dataset_path)
    given = (options.corpus_path, options.vocab_path or options.tokenizer.vocab_path,
             options.spm_model_path or options.tokenizer.spm_model_path)
    inputs = [resolve_path(p) for p in given if p]
    check_dataset_path(out, inputs)
    processor = processor_class(options.processor)
    plan = processor.plan(options.corpus_path, options.skip_malformed)
    tokenizer = load_tokenizer(options.tokenizer, options.vocab_path, options.spm_model_path)
    vocab = tokenizer.vocab
    SpecialIds.from_vocab(vocab)  # a vocabulary without [CLS]/[SEP]/[MASK]... fails here, not in a worker
    word_boundaries = processor.masked and options.masking.strategy != "token" and needs_segmenter(tokenizer)
    job = Job(options, plan, dataset_fields(processor, options.dynamic_masking, word_boundaries), word_boundaries)
    lock = OutputLock(out, "--dataset_path")
    try:
        lock.__enter__()
    except OSError as exc:
        raise UsageError(f"--dataset_path {out}: cannot write there ({exc.strerror})") from None
    try:
        replacing = check_dataset_path(out, inputs)  # again, now that no other run can change it
        on_interrupt(f"interrupted; {'the dataset at ' + str(out) + ' is unchanged' if replacing else 'nothing was written to ' + str(out)}")
        try:
            work = _fresh_partial(out)
        except OSError as exc:
            raise UsageError(f"--dataset_path {out}: cannot write there ({exc.strerror})") from None
        try:
            meta = _build(job, work, vocab, started)
            _swap_in(work, out, replacing)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        on_interrupt(f"interrupted after {out} was written")
    finally:
        lock.__exit__(None, None, None)
    for note in plan.notes:
        print(note, file=sys.stderr)
    if replacing:
        print(f"replaced the previous dataset at {out}", file=sys.stderr)
    print(_summary(meta["stats"], options, meta), file=sys.stderr)
    if options.processes_num > meta["stats"].get("documents", 0):
        unit = "rows" if processor.layout == "tsv" else "documents"
        print(f"note: --processes_num {options.processes_num} is more than the corpus's {meta['stats'].get('documents', 0)} "
              f"{unit}: some workers had nothing to read, and each one only pairs or packs its own {unit}", file=sys.stderr)
    return meta


def _build(job: Job, work: Path, vocab, started: float) -> dict[str, Any]:
    """Workers -> shards -> the joined dataset in ``work`` with its meta.json."""
    options, plan = job.options, job.plan
    parts = corpus_lib.shards(options.corpus_path, options.processes_num, plan.blank_separated)
    shard_dirs = [work / f"shard_{i:03d}" for i in range(len(parts))]
    print(f"reading {options.corpus_path} as: {plan.description}", file=sys.stderr)
    if options.processes_num == 1:
        results = [_work(job, parts[0], str(shard_dirs[0]), 0)]
    else:
        results = _run_parallel(job, parts, shard_dirs)
    instances, tokens = merge_shards(shard_dirs, work, job.fields)
    for d in shard_dirs:
        shutil.rmtree(d)
    stats = Stats()
    for r in results:
        stats.update(r)
    for reason, n in plan.dropped:
        stats.drop(reason, n)
    if instances == 0:
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
        "fields": list(job.fields),
        "vocab_size": len(vocab),
        "vocab_sha1": vocab_fingerprint(vocab.tokens),
        "tokenizer": asdict(options.tokenizer),
        "vocab_path": None if options.vocab_path is None else str(Path(options.vocab_path).resolve()),
        "spm_model_path": None if options.spm_model_path is None else str(Path(options.spm_model_path).resolve()),
        "dynamic_masking": options.dynamic_masking,
        "masking": asdict(options.masking),
        "labels_num": len(plan.labels) if plan.labels else None,
        "labels": list(plan.labels) if plan.labels else None,
        "dup_factor": options.dup_factor,
        "short_seq_prob": options.short_seq_prob,
        "processes_num": options.processes_num,
        "seed": options.seed,
        "corpus_path": str(Path(options.corpus_path).resolve()),
        "layout": plan.description,
        "stats": dict(sorted(stats.items())),
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_meta(work, meta)
    return meta


def _run_parallel(job: Job, parts, shard_dirs) -> list[dict[str, int]]:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counter = ctx.Value("q", 0)
    total = sum(p.end - p.start for p in parts)
    jobs = [(job, p, str(d), i) for i, (p, d) in enumerate(zip(parts, shard_dirs))]
    with _progress_bar(total, job.options.progress) as bar:
        # Workers ignore Ctrl-C: the main process gets it, leaves the pool (which terminates them)
        # and cleans up, so one line is printed instead of a traceback per worker.
        with ctx.Pool(len(parts), initializer=_init_worker, initargs=(counter,)) as pool:
            pending = pool.map_async(_work_with_counter, jobs)
            while not pending.ready():
                pending.wait(0.2)
                if bar is not None:
                    bar.n = counter.value
                    bar.refresh()
            results = pending.get()
        if bar is not None:
            bar.n = counter.value
    return results


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    rows = processor_class(options.processor).layout == "tsv"
    lines.append(
        f"read {stats.get('documents', 0)} {'rows' if rows else 'documents'}"
        + (f", {stats.get('lines', 0)} lines" if not rows else "")
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
