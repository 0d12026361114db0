"""The on-disk pre-training dataset: flat binary arrays read through ``np.memmap``, plus ``meta.json``.

A dataset is a directory::

    meta.json        format, processor, seq_length, vocabulary fingerprint, special ids, counts
    tokens.bin       every instance's token ids back to back ([CLS] A [SEP] B [SEP]), uint16 or uint32
    offsets.bin      int64, instances + 1: instance i is tokens[offsets[i]:offsets[i + 1]]
    seg_a.bin        uint16 per instance: tokens in segment 1 ([CLS] A [SEP]); the rest is segment 2
    labels.bin       int32 per instance: nsp / sop / cls label (absent for the other processors)
    mlm_tgt.bin      static masking only: per token, the original id where masked, NOT_MASKED elsewhere
    word_starts.bin  uint8 per token, 1 = first token of a word (whole-word / span masking from a segmenter)

Nothing is unpickled and nothing is loaded whole: a reader maps the files and copies out only the
rows of its batch, so memory does not grow with the dataset and every DDP rank touches only its rows.
Writers append in bounded chunks; shards written by parallel workers are joined by streaming copies.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from uer.utils.atomic import atomic_open

FORMAT = "uer-dataset-v1"
FIXED_DTYPES = {"offsets": np.int64, "seg_a": np.uint16, "labels": np.int32, "word_starts": np.uint8}
OPTIONAL_FIELDS = ("labels", "mlm_tgt", "word_starts")
# every file a dataset directory may hold: anything else in it was not written by us
DATASET_FILES = frozenset({"meta.json", *(f"{n}.bin" for n in ("tokens", "offsets", "seg_a", *OPTIONAL_FIELDS))})


class DatasetError(ValueError):
    """A dataset directory that cannot be read; the message names the file and what to do."""


def vocab_fingerprint(tokens: list[str]) -> str:
    """What meta.json stores to recognise the vocabulary a dataset was made with."""
    return hashlib.sha1("\n".join(tokens).encode("utf-8")).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id (and the NOT_MASKED sentinel, the dtype's max) fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size < np.iinfo(np.uint16).max else np.dtype(np.uint32)


def not_masked(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


@dataclass
class Instance:
    tokens: np.ndarray  # (L,) ids with the special tokens in place
    seg_a: int  # length of segment 1; tokens[seg_a:] are segment 2
    label: int = -1  # nsp / sop / cls label; -1 for processors without one
    mlm_tgt: np.ndarray | None = None  # (L,) static masking
    word_starts: np.ndarray | None = None  # (L,) bool


class DatasetWriter:
    """Appends instances to the files of one directory in bounded chunks."""

    def __init__(self, path: str | Path, vocab_size: int, fields: Sequence[str], chunk_tokens: int = 1 << 18) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.dtype = token_dtype(vocab_size)
        self.fields = ("tokens", "offsets", "seg_a", *fields)
        unknown = set(fields) - set(OPTIONAL_FIELDS)
        if unknown:
            raise ValueError(f"unknown dataset field(s) {sorted(unknown)}")
        self.files = {name: open(self.path / f"{name}.bin", "wb") for name in self.fields}
        self.buffers: dict[str, list[np.ndarray]] = {name: [] for name in self.fields}
        self.buffered = 0
        self.chunk_tokens = chunk_tokens
        self.instances = 0
        self.tokens = 0
        self._write("offsets", np.zeros(1, np.int64))

    def _dtype(self, name: str) -> np.dtype:
        return self.dtype if name in ("tokens", "mlm_tgt") else np.dtype(FIXED_DTYPES[name])

    def _write(self, name: str, array: np.ndarray) -> None:
        self.buffers[name].append(np.asarray(array, dtype=self._dtype(name)))

    def add(self, inst: Instance) -> None:
        n = len(inst.tokens)
        if not 0 < inst.seg_a <= n:
            raise ValueError(f"segment 1 length {inst.seg_a} outside 1..{n}")
        self._write("tokens", inst.tokens)
        self.tokens += n
        self.instances += 1
        self._write("offsets", np.array([self.tokens]))
        self._write("seg_a", np.array([inst.seg_a]))
        if "labels" in self.files:
            self._write("labels", np.array([inst.label]))
        if "mlm_tgt" in self.files:
            self._write("mlm_tgt", inst.mlm_tgt)
        if "word_starts" in self.files:
            self._write("word_starts", inst.word_starts)
        self.buffered += n
        if self.buffered >= self.chunk_tokens:
            self.flush()

    def flush(self) -> None:
        for name, parts in self.buffers.items():
            if parts:
                np.concatenate(parts).tofile(self.files[name])
                parts.clear()
        self.buffered = 0

    def close(self) -> None:
        self.flush()
        for f in self.files.values():
            f.close()


def write_meta(path: str | Path, meta: dict[str, Any]) -> None:
    with atomic_open(Path(path) / "meta.json") as f:
        json.dump({"format": FORMAT, **meta}, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a dataset written by preprocess.py (no meta.json); run preprocess.py first"
        )
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{meta_path}: not UTF-8 text (byte {exc.start}); re-run preprocess.py") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{meta_path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
                           "re-run preprocess.py") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DatasetError(f"{meta_path}: format {found!r}, expected {FORMAT!r}; re-run preprocess.py")
    return meta


def is_dataset(path: str | Path) -> bool:
    """``path`` is a directory whose meta.json carries our format marker (it may hold other files too)."""
    try:
        read_meta(path)
    except (OSError, ValueError):
        return False
    return True


def merge_shards(shards: Sequence[Path], out: Path, fields: Sequence[str], chunk: int = 1 << 22) -> tuple[int, int]:
    """Join shard directories into ``out`` by streaming copies; offsets are shifted as they pass.

    Returns (instances, tokens). Memory: one ``chunk`` of offsets at a time.
    """
    out.mkdir(parents=True, exist_ok=True)
    names = ("tokens", "seg_a", *fields)
    instances, tokens = 0, 0
    with open(out / "offsets.bin", "wb") as offsets_out:
        np.zeros(1, np.int64).tofile(offsets_out)
        outs = {name: open(out / f"{name}.bin", "wb") for name in names}
        try:
            for shard in shards:
                for name in names:
                    with open(shard / f"{name}.bin", "rb") as src:
                        shutil.copyfileobj(src, outs[name], 1 << 22)
                offsets = np.memmap(shard / "offsets.bin", dtype=np.int64, mode="r")
                for start in range(1, len(offsets), chunk):
                    (offsets[start:start + chunk] + tokens).tofile(offsets_out)
                instances += len(offsets) - 1
                tokens += int(offsets[-1])
                del offsets
        finally:
            for f in outs.values():
                f.close()
    return instances, tokens


def _map(path: Path, name: str, dtype: np.dtype, expected: int) -> np.ndarray:
    file = path / f"{name}.bin"
    if not file.is_file():
        raise FileNotFoundError(f"dataset {path} lacks {file.name}; re-run preprocess.py")
    size = os.path.getsize(file) // np.dtype(dtype).itemsize
    if size != expected:
        raise ValueError(f"{file}: {size} entries, meta.json says {expected}; the dataset is incomplete, re-run preprocess.py")
    if expected == 0:
        return np.zeros(0, dtype)
    return np.memmap(file, dtype=dtype, mode="r")


@dataclass
class DatasetFiles:
    """The memory-mapped arrays of a dataset directory (read-only)."""

    path: Path
    meta: dict[str, Any]
    tokens: np.ndarray
    offsets: np.ndarray
    seg_a: np.ndarray
    labels: np.ndarray | None = None
    mlm_tgt: np.ndarray | None = None
    word_starts: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | Path) -> "DatasetFiles":
        path = Path(path)
        meta = read_meta(path)
        n, t = meta["instances"], meta["tokens"]
        dtype = np.dtype(meta["token_dtype"])
        fields = meta["fields"]
        return cls(
            path=path,
            meta=meta,
            tokens=_map(path, "tokens", dtype, t),
            offsets=_map(path, "offsets", np.int64, n + 1),
            seg_a=_map(path, "seg_a", np.uint16, n),
            labels=_map(path, "labels", np.int32, n) if "labels" in fields else None,
            mlm_tgt=_map(path, "mlm_tgt", dtype, t) if "mlm_tgt" in fields else None,
            word_starts=_map(path, "word_starts", np.uint8, t) if "word_starts" in fields else None,
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def gather(self, index: np.ndarray, array: np.ndarray, fill: int, dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``index`` of a per-token array, right-padded with ``fill`` to the longest -> (B, T), lengths (B,)."""
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        t = int(lengths.max())
        cols = np.arange(t)
        real = cols[None, :] < lengths[:, None]  # (B, T)
        out = np.full((len(index), t), fill, dtype=dtype)
        out[real] = array[(starts[:, None] + cols[None, :])[real]]
        return out, lengths
