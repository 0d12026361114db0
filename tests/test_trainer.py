"""The training loop: loss goes down, and an interrupted run resumes to identical parameters."""
import json

import pytest
import torch

from tests.helpers import random_batch, tiny_config
from uer import build_model
from uer.data.loader import EpochLoader
from uer.trainer import Trainer, TrainerOptions, make_optimizer, make_scheduler

DATA = [random_batch(batch_size=1, seed=i, pad_last=i % 3) for i in range(24)]


def collate(index, generator):
    rows = [DATA[int(i)] for i in index]
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


class Crash(Exception):
    pass


def crash_at(step):
    def on_step(trainer):
        if trainer.step == step:
            raise Crash

    return on_step


def run(tmp_path, total_steps, on_step=None, resume=False, name="ckpt.pt"):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg, vocab_size=99)
    opt = make_optimizer(model.named_parameters(), lr=3e-3, weight_decay=0.01)
    sched = make_scheduler(opt, "linear", 2, total_steps)
    options = TrainerOptions(report_steps=2, save_checkpoint_steps=3, checkpoint_path=str(tmp_path / name),
                             metrics_path=str(tmp_path / f"{name}.jsonl"), progress=False, accumulation_steps=2)
    trainer = Trainer(model, opt, sched, cfg, options)
    loader = EpochLoader(len(DATA), batch_size=4, collate=collate, seed=3)
    if resume:
        assert trainer.maybe_resume(loader)
    trainer.fit(loader, total_steps, on_step=on_step)
    return model, trainer


def test_loss_decreases(tmp_path):
    _, trainer = run(tmp_path, 12)
    lines = [json.loads(l) for l in (tmp_path / "ckpt.pt.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 4, 6, 8, 10, 12]
    assert lines[-1]["mlm_loss"] < lines[0]["mlm_loss"] - 0.1
    assert {"loss", "mlm_acc", "tokens_per_s", "lr"} <= set(lines[0])


def test_resume_equals_uninterrupted(tmp_path):
    full, _ = run(tmp_path, 10, name="full.pt")
    # crash during step 7: the last checkpoint holds step 6, so step 7 is redone after resume
    with pytest.raises(Crash):
        run(tmp_path, 10, on_step=crash_at(7), name="part.pt")
    assert torch.load(tmp_path / "part.pt", weights_only=True)["extra"]["trainer"]["step"] == 6
    part, _ = run(tmp_path, 10, resume=True, name="part.pt")
    for (name, a), b in zip(full.state_dict().items(), part.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    steps = [json.loads(l)["step"] for l in (tmp_path / "part.pt.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]


def test_resume_state_of_another_run_is_refused(tmp_path):
    run(tmp_path, 4, name="other.pt")
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg, vocab_size=99)
    opt = make_optimizer(model.named_parameters(), lr=3e-3, weight_decay=0.01)
    trainer = Trainer(model, opt, make_scheduler(opt, "linear", 2, 4), cfg,
                      TrainerOptions(checkpoint_path=str(tmp_path / "other.pt"), progress=False))
    trainer.signature = {"data": "another corpus", "learning_rate": 3e-3}
    with pytest.raises(ValueError, match=r"different run \(it differs in: data, learning_rate\)"):
        trainer.maybe_resume(EpochLoader(len(DATA), batch_size=4, collate=collate, seed=3))
