"""Checkpoints: config inside, strict loading with named mismatches, atomic writes, no code execution."""
import os
import pickle

import pytest
import torch

from tests.helpers import random_batch, tiny_config
from uer import build_model
from uer.checkpoint import CheckpointError, load_model, save_checkpoint


def test_save_load_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config(), vocab_size=99).eval()
    save_checkpoint(tmp_path / "m.pt", model, model.config, vocab_size=99)
    loaded, extra = load_model(tmp_path / "m.pt")
    loaded.eval()
    batch = random_batch()
    assert extra == {"vocab_size": 99}
    torch.testing.assert_close(loaded.encode(batch["src"], batch["seg"]), model.encode(batch["src"], batch["seg"]), rtol=0, atol=0)
    # tying survives the round trip: the decoder is the embedding, not a copy
    assert loaded.target.components["mlm"].head.decoder.weight is loaded.embedding.word.weight


def test_mismatch_names_keys_and_config(tmp_path):
    model = build_model(tiny_config(), vocab_size=99)
    save_checkpoint(tmp_path / "m.pt", model, model.config, vocab_size=99)
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "m.pt", vocab_size=98)
    assert "embedding.components.word.embedding.weight: checkpoint (99, 32) vs model (98, 32)" in str(exc.value)
    other = build_model(tiny_config(targets=("mlm", "nsp")), vocab_size=99)
    state = other.state_dict()
    from uer.checkpoint import load_state
    with pytest.raises(CheckpointError) as exc:
        load_state(model, state, "other.pt", "tiny.yaml")
    msg = str(exc.value)
    assert "other.pt does not fit the model built from tiny.yaml" in msg
    assert "unexpected keys (4): target.components.nsp.dense.bias" in msg


def test_refuses_pickled_code_and_foreign_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "uer-checkpoint-v1", "x": Evil()}, f)
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "evil.pt")
    assert str(exc.value) == (f"{tmp_path / 'evil.pt'} is not a uer checkpoint (not a file of tensors: it is another "
                              "kind of file, or a pickle of Python objects, which is never loaded)")
    assert not (tmp_path / "pwned").exists()
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a uer checkpoint"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model = build_model(tiny_config(), vocab_size=99)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, model.config, vocab_size=99, step=1)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, model.config, vocab_size=99, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
