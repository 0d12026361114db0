"""Small builders shared by tests: tiny odd-sized configs, seeded batches."""
from __future__ import annotations

import torch

from uer.config import Config, config_from_dict

TINY = {"vocab": 99, "hidden": 32, "heads": 4, "ffn": 37}


def tiny_config(targets=("mlm",), encoder: dict | None = None, embedding: dict | None = None, **sections) -> Config:
    enc = {"name": "transformer", "hidden_size": TINY["hidden"], "heads_num": TINY["heads"], "layers_num": 2,
           "feedforward_size": TINY["ffn"], "dropout": 0.1, "attention_dropout": 0.1}
    enc.update(encoder or {})
    emb = {"emb_size": TINY["hidden"], "components": ["word", {"name": "pos", "max_seq_length": 64}, "seg"]}
    emb.update(embedding or {})
    return config_from_dict({"embedding": emb, "encoder": enc, "target": {"components": list(targets)}, **sections})


def random_batch(batch_size=4, seq_length=11, vocab=TINY["vocab"], seed=0, pad_last=3) -> dict[str, torch.Tensor]:
    """Token ids >= 5 (ids below are 'specials'), the last sample padded by ``pad_last``."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, vocab, (batch_size, seq_length), generator=g)
    seg = torch.ones(batch_size, seq_length, dtype=torch.long)
    seg[:, seq_length // 2:] = 2
    if pad_last:
        seg[-1, -pad_last:] = 0
        src[-1, -pad_last:] = 0
    tgt = torch.full_like(src, -100)
    tgt[:, 1::3] = src[:, 1::3]
    tgt[seg == 0] = -100
    return {"src": src, "seg": seg, "tgt_mlm": tgt}


def ctrl_c_at_step(monkeypatch, step: int = 3) -> None:
    """Make the shared trainer raise KeyboardInterrupt in its step ``step`` (0-based), as Ctrl-C would;
    ``monkeypatch.undo()`` (or the test's end) restores it."""
    import uer.trainer

    real = uer.trainer.Trainer._global_loss

    def interrupted(self, loss_out):
        if self.step == step:
            raise KeyboardInterrupt
        return real(self, loss_out)

    monkeypatch.setattr(uer.trainer.Trainer, "_global_loss", interrupted)
