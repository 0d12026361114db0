"""Checkpoints: config inside, strict loading with named mismatches, atomic writes, no code execution."""
import os
import pickle

import pytest
import torch

from tests.helpers import random_batch, tiny_config
from uer import build_model
from uer.checkpoint import CheckpointError, load_backbone, load_model, save_checkpoint


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


def test_load_model_requires_keys_and_derives_labels_num(tmp_path):
    """What FastBertClassifier.load needs: refuse a checkpoint of another command by name, and
    take ``labels_num`` from the saved label list."""
    cfg = tiny_config(targets=("cls",))
    model = build_model(cfg, vocab_size=99, labels_num=3)
    save_checkpoint(tmp_path / "c.pt", model, cfg, vocab_size=99, labels=["a", "b", "c"])
    loaded, extra = load_model(tmp_path / "c.pt", require=("labels", "vocab_size"), written_by="run_fastbert.py")
    assert extra["labels"] == ["a", "b", "c"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "c.pt", require=("seq_length",), written_by="run_fastbert.py")
    assert str(exc.value) == f"{tmp_path / 'c.pt'} was not written by run_fastbert.py (no 'seq_length' in it)"


def test_unreadable_files_are_named_in_one_line(tmp_path):
    (tmp_path / "dir.pt").mkdir()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 8)
    model = build_model(tiny_config(), vocab_size=99)
    save_checkpoint(tmp_path / "ok.pt", model, model.config, vocab_size=99)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:5000])
    expected = {
        "dir.pt": "checkpoint {} is a directory, expected a checkpoint file",
        "empty.pt": "{} is not a uer checkpoint (the file is empty)",
        "garbage.pt": "{} is not a uer checkpoint (not a file of tensors: it is another kind of file, "
                      "or a pickle of Python objects, which is never loaded)",
        "cut.pt": "{} is not a uer checkpoint (a damaged or truncated PyTorch file)",
    }
    for name, message in expected.items():
        with pytest.raises(CheckpointError) as exc:
            load_model(tmp_path / name)
        assert str(exc.value) == message.format(tmp_path / name)


def test_load_backbone_keeps_or_refreshes_heads(tmp_path):
    """heads=True: a head the checkpoint has is loaded, a new one stays fresh, a foreign one is named;
    heads=False: only the backbone is loaded."""
    torch.manual_seed(0)
    source = build_model(tiny_config(targets=("mlm", "nsp")), vocab_size=99)
    save_checkpoint(tmp_path / "s.pt", source, source.config, vocab_size=99)
    torch.manual_seed(1)
    model = build_model(tiny_config(targets=("mlm", "sop")), vocab_size=99)
    fresh_sop = {k: v.clone() for k, v in model.state_dict().items() if ".sop." in k}
    loaded = load_backbone(model, tmp_path / "s.pt", "tiny", heads=True)
    assert loaded.notes == [f"target head 'sop' is not in {tmp_path / 's.pt'}: initialised at random",
                            f"target head 'nsp' of {tmp_path / 's.pt'} is not used by this config"]
    state = model.state_dict()
    for name, value in source.state_dict().items():
        if ".nsp." not in name:
            torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
    for name, value in fresh_sop.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
    assert loaded.ignored and all(".nsp." in k for k in loaded.ignored)
    torch.manual_seed(1)
    model = build_model(tiny_config(targets=("mlm",)), vocab_size=99)
    head = model.target.components["mlm"].state_dict()
    loaded = load_backbone(model, tmp_path / "s.pt", "tiny", heads=False)
    assert all(k.startswith("target.components.mlm.") for k in loaded.fresh)
    for name, value in model.target.components["mlm"].state_dict().items():
        if "decoder.weight" not in name:  # tied to the (loaded) word embedding
            torch.testing.assert_close(value, head[name], rtol=0, atol=0, msg=name)
