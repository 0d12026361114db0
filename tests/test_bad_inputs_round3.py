"""Bad inputs, round 3 (issue 22), pretrain.py and scripts/build_ner_dataset.py rows 82-85, 109-114
and 120: one line naming the culprit, exit 2, no traceback, and every file that existed before is
byte-identical (and keeps its mode)."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

import pretrain
from tests.test_bad_inputs_pretrain import one_error, snapshot
from tests.test_preprocess import VOCAB_ZH, peoples_daily, run_preprocess
from uer.checkpoint import read_checkpoint
from uer.utils.atomic import atomic_open

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_ner_dataset as builder  # noqa: E402

CONFIG = ROOT / "tests" / "data" / "pretrain_mlm.yaml"
SAMPLE = ROOT / "tests" / "data" / "ner_pd98_sample.txt"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("round3")
    return run_preprocess(tmp, peoples_daily(tmp / "pd.txt", lines=200), "mlm", seq_length=32)


def pt(dataset: Path, out: Path, *extra: str, config: Path = CONFIG) -> list[str]:
    return ["--dataset_path", str(dataset), "--config_path", str(config), "--vocab_path", str(VOCAB_ZH),
            "--output_model_path", str(out / "model.pt"), "--no_progress", "--device", "cpu", "--batch_size", "4",
            "--report_steps", "1", "--save_checkpoint_steps", "2", *extra]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, dataset) -> Path:
    """A 2-step run (a .resume at step 2, the recorded config), copied by each test (PT-res)."""
    out = tmp_path_factory.mktemp("stopped")
    assert pretrain.main(pt(dataset, out, "--total_steps", "2")) == 0
    (out / "model.pt").unlink()  # as if killed after the checkpoint
    return out


def copy_of(run: Path, to: Path) -> Path:
    to.mkdir()
    for p in run.iterdir():
        if p.is_file() and not p.name.endswith(".lock"):
            (to / p.name).write_bytes(p.read_bytes())
    return to


# ------------------------------------------------------------------- rows 109-114: --resume after a change
def _edit_recorded_lr(out: Path) -> None:
    side = out / "model.config.yaml"
    data = yaml.safe_load(side.read_text())
    data["train"]["learning_rate"] = 0.5
    side.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("change, key, there, now, source", [
    (("--learning_rate", "0.5"), "train.learning_rate", "0.005", "0.5", "--learning_rate"),           # row 109 (W)
    ("edit", "train.learning_rate", "0.005", "0.5", "recorded in {out}/model.config.yaml"),          # row 110 (W)
    (("--weight_decay", "0.5"), "train.weight_decay", "0.01", "0.5", "--weight_decay"),               # row 111 (W)
    (("--warmup", "0.9"), "train.warmup", "0.05", "0.9", "--warmup"),                                 # row 112 (S)
    (("--scheduler", "constant"), "train.scheduler", "'linear'", "'constant'", "--scheduler"),        # row 112 (S)
    (("--accumulation_steps", "2"), "train.accumulation_steps", "1", "2", "--accumulation_steps"),     # row 113 (S)
    (("--set", "encoder.dropout=0.0"), "encoder.dropout", "0.1", "0.0", "--config_path / --set encoder.dropout"),  # 114
    (("--precision", "bf16"), "train.precision", "'fp32'", "'bf16'", "--precision"),                   # row 114 (S)
])
def test_resume_with_a_changed_value_is_refused_naming_it(tmp_path, dataset, stopped_run, capsys, change, key, there,
                                                           now, source):
    """The restored optimizer and scheduler used to win over the printed and recorded value (W), or the
    run silently changed mid-way (S). Changing the run being continued is refused: nothing written."""
    out = copy_of(stopped_run, tmp_path / "run")
    extra: tuple[str, ...] = ()
    if change == "edit":
        _edit_recorded_lr(out)
    else:
        extra = change
    before = snapshot(out)
    capsys.readouterr()
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume", *extra)) == 2
    line = one_error(capsys.readouterr().err)
    assert line.startswith(f"pretrain.py: error: {out}/model.pt.resume is the resume state of another run: ")
    assert f"{key} is {there} there, {now} now ({source.format(out=out)})" in line
    assert "--pretrained_model_path" in line and "--output_model_path" in line  # how to go on
    after = snapshot(out)
    assert {k: after[k] for k in before} == before and set(after) - set(before) <= {"model.pt.lock"}
    assert not (out / "model.pt").exists()


def test_resume_without_a_change_continues_and_may_extend(tmp_path, dataset, stopped_run, capsys):
    """The reference: the same values (a longer --total_steps, other report and save steps) continue."""
    out = copy_of(stopped_run, tmp_path / "run")
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume", "--save_checkpoint_steps", "1")) == 0
    assert "resumed from" in capsys.readouterr().err
    assert read_checkpoint(out / "model.pt.resume")["extra"]["trainer"]["step"] == 4


def test_a_resume_state_from_before_signatures_is_continued_with_a_note(tmp_path, dataset, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(pretrain, "run_signature", lambda *a: None)  # as pretrain.py wrote it before
    assert pretrain.main(pt(dataset, out, "--total_steps", "2")) == 0
    monkeypatch.undo()
    assert read_checkpoint(out / "model.pt.resume")["extra"]["trainer"]["signature"] is None
    capsys.readouterr()
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume")) == 0
    err = capsys.readouterr().err
    assert f"note: {out}/model.pt.resume was written before pretrain.py recorded what defines a run" in err
    assert read_checkpoint(out / "model.pt.resume")["extra"]["trainer"]["signature"]["train.learning_rate"] == 0.005


# ---------------------------------------------------------------------------------- row 120: --threads
def test_more_threads_than_cores_is_refused(tmp_path, dataset, capsys):
    """Row 120: ``--threads 4096`` on 2 cores was accepted and ran 12x slower."""
    cores = len(os.sched_getaffinity(0))
    out = tmp_path / "run"
    assert pretrain.main(pt(dataset, out, "--total_steps", "1", "--threads", "4096")) == 2
    line = one_error(capsys.readouterr().err)
    assert line == (f"pretrain.py: error: --threads 4096 is more than the {cores} CPU cores this process may use; "
                    f"pass --threads {cores} or fewer")
    assert not out.exists()


# ----------------------------------------------------------------------- train values the ranges let through
@pytest.mark.parametrize("yaml_train, expected", [
    ("learning_rate: 0", "train.learning_rate is 0.0 ({config} or its flag --learning_rate): expected a number > 0"),
    ("warmup: .nan", "train.warmup is nan ({config} or its flag --warmup): expected a fraction of total_steps in [0, 1]"),
])
def test_train_values_no_range_refuses_are_refused(tmp_path, dataset, capsys, yaml_train, expected):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.read_text() + f"train:\n  {yaml_train}\n")
    assert pretrain.main(pt(dataset, tmp_path / "run", "--total_steps", "1", config=config)) == 2
    assert one_error(capsys.readouterr().err) == f"pretrain.py: error: {expected.format(config=config)}"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------- rows 82-85: build_ner_dataset.py
def bnd(corpus: Path, out: Path, *extra: str) -> int:
    return builder.main(["--corpus_path", str(corpus), "--out_dir", str(out), *extra])


def test_a_latin1_corpus_names_the_file_and_line(tmp_path, capsys):
    """Row 82: a UnicodeDecodeError traceback without file or line."""
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("迈向/v  充满/v\n".encode("utf-8") + "caf\xe9/n  ok/n\n".encode("latin-1"))
    assert bnd(corpus, tmp_path / "out") == 2
    line = one_error(capsys.readouterr().err, "build_ner_dataset.py")
    assert line == (f"build_ner_dataset.py: error: {corpus}:2: not UTF-8 text (byte 0xe9 at column 4); "
                    "save the corpus as UTF-8")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["", "\n  \n\t\n"])
def test_an_empty_or_blank_corpus_is_refused(tmp_path, capsys, text):
    """Row 83: exit 0 with header-only splits and an empty pretrain_corpus.txt."""
    corpus = tmp_path / "empty.txt"
    corpus.write_text(text)
    assert bnd(corpus, tmp_path / "out") == 2
    line = one_error(capsys.readouterr().err, "build_ner_dataset.py")
    assert line == f"build_ner_dataset.py: error: {corpus}: no word/TAG items (the file is empty or blank); nothing written"
    assert not (tmp_path / "out").exists()


def test_the_users_own_files_in_out_dir_are_not_replaced(tmp_path, capsys):
    """Row 84: a folder's own train.tsv and label2id.json were replaced without a word."""
    out = tmp_path / "userdata"
    out.mkdir()
    (out / "train.tsv").write_text("text_a\tlabel\n我 的\tO O\n")
    (out / "label2id.json").write_text('{"O": 0}\n')
    before = snapshot(out)
    assert bnd(SAMPLE, out) == 2
    line = one_error(capsys.readouterr().err, "build_ner_dataset.py")
    assert line == (f"build_ner_dataset.py: error: --out_dir {out} already holds train.tsv, which build_ner_dataset.py "
                    "did not write there (it is not in build_ner_dataset.manifest.json); choose another --out_dir, "
                    "or pass --force to replace it")
    assert snapshot(out) == before
    # --force replaces them
    assert bnd(SAMPLE, out, "--force") == 0
    assert (out / "train.tsv").read_text() != before["train.tsv"].decode()


def test_a_rebuild_replaces_its_own_files_but_not_edited_ones(tmp_path, capsys):
    out = tmp_path / "ner"
    assert bnd(SAMPLE, out) == 0
    first = snapshot(out)
    assert bnd(SAMPLE, out) == 0  # our own files: replaced without --force, the same bytes
    assert snapshot(out) == first
    (out / "dev.tsv").write_text((out / "dev.tsv").read_text() + "新 行\tO O\n")  # the user edits a split
    edited = snapshot(out)
    capsys.readouterr()
    assert bnd(SAMPLE, out) == 2
    line = one_error(capsys.readouterr().err, "build_ner_dataset.py")
    assert line == (f"build_ner_dataset.py: error: {out / 'dev.tsv'} was changed since build_ner_dataset.py wrote it; "
                    "choose another --out_dir, or pass --force to replace it")
    assert snapshot(out) == edited


@pytest.fixture
def umask():
    def set_to(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_to
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, expected):
    """Row 85: every file written through atomic_open was 0600 (tempfile.mkstemp) whatever the umask."""
    umask(mask)
    out = tmp_path / "ner"
    assert bnd(SAMPLE, out) == 0
    for p in out.iterdir():
        assert _mode(p) == expected, p.name
    with atomic_open(tmp_path / "x" / "model.config.yaml") as f:
        f.write("a: 1\n")
    assert _mode(tmp_path / "x" / "model.config.yaml") == expected


def test_a_replaced_file_keeps_its_own_mode(tmp_path, umask, capsys):
    """Row 85: replacing the user's 0644 train.tsv left it 0600."""
    umask(0o077)  # a new file would be 0600 ...
    out = tmp_path / "userdata"
    out.mkdir()
    (out / "train.tsv").write_text("text_a\tlabel\n")
    os.chmod(out / "train.tsv", 0o644)  # ... but this one is the user's, readable by others
    assert bnd(SAMPLE, out, "--force") == 0
    assert _mode(out / "train.tsv") == 0o644
    assert _mode(out / "dev.tsv") == 0o600
    with atomic_open(out / "label2id.json") as f:  # and a mode the umask could not give survives too
        f.write("{}\n")
    os.chmod(out / "label2id.json", 0o640)
    with atomic_open(out / "label2id.json") as f:
        f.write("{}\n")
    assert _mode(out / "label2id.json") == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("new\n")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_longer_total_steps_on_resume_says_what_it_does_to_the_schedule(tmp_path, dataset, stopped_run, capsys):
    """The reference resume of rows 109-114 (``--total_steps 20`` after a shorter run) is allowed, but
    the schedule is a function of total_steps: the note says the rate jumps (linear decay: 0 at the
    old end, half the peak now)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    out = copy_of(stopped_run, tmp_path / "run")
    used: list[float] = []
    hook = register_optimizer_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))
    try:
        assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume")) == 0
    finally:
        hook.remove()
    err = capsys.readouterr().err
    assert ("note: the resumed run was to end at step 2, this one ends at 4: its warmup and decay now span 4 steps "
            "(the rate after step 2: 0.00e+00 before, 2.50e-03 now)") in err
    # ... and the rate said is the rate used: step 3 of 4 at half the peak (5e-3), step 4 at a quarter
    assert used == pytest.approx([2.5e-3, 1.25e-3])
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume")) == 0  # the same end: no note
    assert "note: the resumed run" not in capsys.readouterr().err


def test_the_learning_rate_of_a_resumed_run_changes_only_when_asked_explicitly(tmp_path, dataset, stopped_run, capsys):
    """Rows 109-110 refuse --learning_rate on --resume and point here: --new_learning_rate goes on
    with another peak from the next step; the rate used, the rate printed and the rate recorded agree,
    and a later plain resume continues at the new rate."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    out = copy_of(stopped_run, tmp_path / "run")
    capsys.readouterr()
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume", "--learning_rate", "1e-3")) == 2
    assert "to change only the peak learning rate of the resumed run, pass --new_learning_rate instead" in \
        one_error(capsys.readouterr().err)
    used: list[float] = []
    hook = register_optimizer_step_pre_hook(lambda opt, *_: used.append(opt.param_groups[0]["lr"]))
    try:
        assert pretrain.main(pt(dataset, out, "--total_steps", "4", "--resume", "--new_learning_rate", "1e-3")) == 0
        err = capsys.readouterr().err
        assert used == pytest.approx([5e-4, 2.5e-4])  # the linear decay over 4 steps, peak 1e-3
        assert ("learning rate: peak 5.0e-03 until step 2, 1.0e-03 from step 3 on (--new_learning_rate; "
                "the rate after step 2 is 5.00e-04)") in err
        assert yaml.safe_load((out / "model.config.yaml").read_text())["train"]["learning_rate"] == 1e-3
        state = read_checkpoint(out / "model.pt.resume")["extra"]["trainer"]
        assert state["user_state"]["learning_rate_changes"] == [{"step": 2, "from": 5e-3, "to": 1e-3}]
        assert read_checkpoint(out / "model.pt")["config"]["train"]["learning_rate"] == 1e-3
        used.clear()
        assert pretrain.main(pt(dataset, out, "--total_steps", "6", "--resume")) == 0  # the new rate is the run's now
        assert used == pytest.approx([1e-3 * 2 / 6, 1e-3 * 1 / 6])
    finally:
        hook.remove()


@pytest.mark.parametrize("extra, expected", [
    (("--new_learning_rate", "1e-3"), "--new_learning_rate changes the rate of a resumed run, and there is no "
                                      "{out}/model.pt.resume to resume (pass --resume, or --learning_rate for a new run)"),
    (("--new_learning_rate", "1e-3", "--learning_rate", "1e-3", "--resume"),
     "--new_learning_rate and --learning_rate: give only --new_learning_rate to change the rate of the resumed run"),
])
def test_new_learning_rate_without_a_run_to_change(tmp_path, dataset, stopped_run, capsys, extra, expected):
    out = copy_of(stopped_run, tmp_path / "run") if "--resume" in extra else tmp_path / "fresh"
    before = snapshot(out) if out.exists() else {}
    assert pretrain.main(pt(dataset, out, "--total_steps", "4", *extra)) == 2
    assert one_error(capsys.readouterr().err) == "pretrain.py: error: " + expected.format(out=out)
    after = snapshot(out) if out.exists() else {}
    assert {k: after[k] for k in before} == before and set(after) - set(before) <= {"model.pt.lock"}


def test_fine_tuning_sections_are_not_part_of_the_run(tmp_path, dataset, stopped_run):
    """A resumed pre-training run is refused for what changes it, not for the YAML's fastbert section."""
    out = copy_of(stopped_run, tmp_path / "run")
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.read_text() + "fastbert:\n  epochs_num: 9\n")
    assert pretrain.main(pt(dataset, out, "--total_steps", "3", "--resume", config=config)) == 0
    signature = read_checkpoint(out / "model.pt.resume")["extra"]["trainer"]["signature"]
    assert "encoder.dropout" in signature and not any(k.startswith(("fastbert.", "ner.")) for k in signature)
