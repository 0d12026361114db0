"""A preprocessed dataset as batches for the targets: src, seg and each target's labels.

    data = PretrainDataset("out/dataset", vocab)
    loader = EpochLoader(len(data), batch_size=32, collate=data.collate, seed=7)

Rows are padded to the longest row of the batch (full-length packed rows need no padding).
Dynamic masking draws its masks from the generator the loader seeds for each batch, so a
resumed run sees exactly the masks an uninterrupted run would have seen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uer.data.dataset import DatasetFiles, not_masked, vocab_fingerprint
from uer.data.masking import IGNORE, MaskingConfig, mask_batch, mask_ids
from uer.data.processors import processor_class


class PretrainDataset:
    def __init__(self, path: str | Path, vocab) -> None:
        self.files = DatasetFiles.open(path)
        meta = self.files.meta
        if meta["vocab_sha1"] != vocab_fingerprint(vocab.tokens):
            raise ValueError(
                f"dataset {path} was made with another vocabulary ({meta['vocab_size']} tokens from "
                f"{meta.get('vocab_path') or meta.get('spm_model_path')}) than the one given ({len(vocab)} tokens "
                f"from {vocab.source}); pass the same --vocab_path / --spm_model_path as to preprocess.py"
            )
        self.meta = meta
        self.processor = meta["processor"]
        facts = processor_class(self.processor, f"{self.files.path}/meta.json processor")
        self.masked, self.label_key = facts.masked, facts.label_key
        self.pad_id = vocab.pad_id
        self.ids = mask_ids(vocab)
        self.pool = self.ids.random_pool()
        self.masking = MaskingConfig(**meta["masking"])
        self.dynamic = self.masked and meta["dynamic_masking"]
        self.special = np.zeros(len(vocab), dtype=bool)
        self.special[list(self.ids.special_ids)] = True

    def __len__(self) -> int:
        return len(self.files)

    @property
    def seq_length(self) -> int:
        return self.meta["seq_length"]

    def collate(self, index: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = index.numpy().astype(np.int64)
        f = self.files
        src, lengths = f.gather(idx, f.tokens, self.pad_id)  # (B, T)
        t = src.shape[1]
        cols = np.arange(t)[None, :]
        seg = np.where(cols < f.seg_a[idx].astype(np.int64)[:, None], 1, 2)
        seg[cols >= lengths[:, None]] = 0
        batch = {}
        if self.masked:
            if self.dynamic:
                # One RNG per sample, seeded by (batch seed, sample index): a sample's mask does not
                # depend on which rank holds it or on how wide the batch is padded (DDP == 1 process).
                base = int(torch.randint(0, 2**62, (), generator=generator))
                starts = None
                if f.word_starts is not None:
                    starts = f.gather(idx, f.word_starts, 1, np.uint8)[0].astype(bool)
                candidates = (seg > 0) & ~self.special[src]
                tgt = np.full(src.shape, IGNORE, dtype=np.int64)
                src = src.copy()
                for row, (i, n) in enumerate(zip(idx.tolist(), lengths.tolist())):
                    rng = np.random.default_rng([base, i])
                    row_starts = None if starts is None else starts[row:row + 1, :n]
                    src[row:row + 1, :n], tgt[row:row + 1, :n] = mask_batch(
                        src[row:row + 1, :n], candidates[row:row + 1, :n], self.masking, self.ids, rng, row_starts, self.pool)
            else:
                sentinel = not_masked(f.mlm_tgt.dtype)
                tgt = f.gather(idx, f.mlm_tgt, sentinel)[0]
                tgt[tgt == sentinel] = IGNORE
            batch["tgt_mlm"] = torch.from_numpy(tgt)
        batch["src"] = torch.from_numpy(src)
        batch["seg"] = torch.from_numpy(seg)
        if self.label_key is not None:
            batch[self.label_key] = torch.from_numpy(f.labels[idx].astype(np.int64))
        return batch
