"""``python -m uer export MODEL --format onnx OUT/``: the files run on ONNX Runtime and give what our
eager model gives (fp32, 1e-4, every exit step and the full model); the manifest describes them;
bad inputs are one line."""
import hashlib
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.test_predictor_api import save_model
from uer.__main__ import main
from uer.fastbert.predictor import FastBertClassifier


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model_path = save_model(folder / "run")
    assert main(["export", str(model_path), "--format", "onnx", str(folder / "onnx")]) == 0
    return model_path, folder / "onnx"


def run_steps(out, src, seg):
    manifest = json.loads((out / "manifest.json").read_text())
    sessions = [ort.InferenceSession(str(out / name)) for name in manifest["steps"]]
    probs, hidden = [], None
    for i, s in enumerate(sessions):
        feeds = {"src": src, "seg": seg} if i == 0 else {"hidden": hidden, "seg": seg}
        hidden, logits = s.run(None, feeds)
        probs.append(torch.softmax(torch.from_numpy(logits), -1))
    (full,) = ort.InferenceSession(str(out / manifest["full"])).run(["logits"], {"src": src, "seg": seg})
    return torch.stack(probs, 1), torch.softmax(torch.from_numpy(full), -1)


def test_export_round_trip_matches_eager(exported):
    model_path, out = exported
    clf = FastBertClassifier.load(model_path, runtime="eager")
    enc = clf.encode(["a short one", "the movie was really great today and then some", "ok"])
    from uer.fastbert.data import collate

    batch = collate(enc, list(range(3)), clf.tokenizer.vocab.pad_id, torch.device("cpu"))
    src, seg = batch["src"], batch["seg"]
    assert bool((seg == 0).any())  # padding inside the batch: the mask is exercised
    steps, full = run_steps(out, src.numpy(), seg.numpy())
    torch.testing.assert_close(steps, clf.runner.layer_probs(src, seg), rtol=0, atol=1e-4)
    torch.testing.assert_close(full, clf.runner.full_model_probs(src, seg), rtol=0, atol=1e-4)


def test_manifest_describes_the_files(exported):
    model_path, out = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "uer-fastbert-onnx" and manifest["labels"] == ["neg", "neu", "pos"]
    assert manifest["steps"] == [f"step_{i}.onnx" for i in range(manifest["layers_num"])]
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert (out / "vocab.txt").read_text().splitlines() == (model_path.parent / "model.vocab.txt").read_text().splitlines()
    assert manifest["quantize"] is None and manifest["int8"] is None and "entropy" in manifest["exit_rule"]


def test_int8_export_runs(exported, tmp_path):
    """Judged by what holds on every CPU: the manifest records the scheme chosen for this CPU
    (uer.runtime.cpu) and the CPU; the int8 weights take the scheme's levels and are the fp32 ones
    within half a quantisation step (its own bound, read from the files); the int8 files run, give
    distributions that differ from fp32 (quantized for real) and mostly the same labels. How close
    the probabilities come depends on the CPU's int8 kernels, so no tolerance tuned on one CPU is
    asserted (tests/test_int8_scheme.py bounds a quantized MatMul by its two steps)."""
    import onnx
    from onnx import numpy_helper

    from uer.runtime.cpu import cpu_features, this_cpu_scheme

    model_path, out = exported
    assert main(["export", str(model_path), str(tmp_path / "q"), "--quantize", "int8"]) == 0
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    scheme = this_cpu_scheme()
    assert manifest["quantize"] == "int8" and manifest["int8"]["scheme"] == json.loads(json.dumps(scheme.as_dict()))
    assert manifest["int8"]["made_on"] == cpu_features().summary()
    assert ("exact on every CPU" == manifest["int8"]["note"]) == scheme.exact_everywhere
    lo, hi = scheme.weight_levels
    checked = 0
    for name in [*manifest["steps"], manifest["full"]]:
        fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(out / name).graph.initializer}
        int8 = {i.name: numpy_helper.to_array(i) for i in onnx.load(tmp_path / "q" / name).graph.initializer}
        for q in (n for n in int8 if n.endswith("_quantized")):
            w = q[: -len("_quantized")]
            scale, zero = int8[w + "_scale"].astype(np.float64), int8[w + "_zero_point"].astype(np.float64)
            assert lo <= int8[q].min() and int8[q].max() <= hi, (name, w)
            error = np.abs((int8[q].astype(np.float64) - zero) * scale - fp32[w])
            assert (error <= 0.5 * scale * (1 + 1e-5)).all(), (name, w)
            checked += 1
    assert checked >= 2 * manifest["layers_num"]  # every step's weights were quantized and checked
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(5, 40, (16, 9), generator=gen).numpy()
    seg = np.ones_like(src)
    steps, full = run_steps(tmp_path / "q", src, seg)
    ref, ref_full = run_steps(out, src, seg)
    for probs in (steps, full):
        assert bool(torch.isfinite(probs).all())
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), rtol=0, atol=1e-5)
    assert float((steps - ref).abs().max()) > 0  # quantized for real
    agree = torch.cat([(steps.argmax(-1) == ref.argmax(-1)).flatten(), full.argmax(-1) == ref_full.argmax(-1)])
    assert float(agree.float().mean()) > 0.5  # the same model: a broken one agrees on ~1/3 of 3 labels


def test_bad_exports_are_one_line(exported, tmp_path, capsys):
    model_path, out = exported
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(model_path), str(busy)]) == 2
    assert "not empty" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["export", str(out), str(tmp_path / "o")]) == 2  # a directory where the model belongs
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["export", str(model_path), str(out)]) == 0  # over an earlier export: replaced


# ----------------------------------------------------------------------------- bad-inputs.md rows 102-107
def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, argv, *, says):
    """``main(argv)`` exits 2 with one line on stderr (no traceback) that contains ``says``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert says in err, err
    return err


def test_someone_elses_manifest_is_refused_untouched(exported, tmp_path, capsys):
    """Row 102: a web app's folder with its own manifest.json and vocab.txt."""
    model_path, _ = exported
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "My App", "start_url": "/index.html"}\n')
    (webapp / "index.html").write_text("<html></html>")
    (webapp / "vocab.txt").write_text("my words\n")
    before = snapshot(webapp)
    refused(capsys, ["export", str(model_path), str(webapp)],
            says="holds a manifest.json that is not a uer export (format None; ours say 'uer-fastbert-onnx' or 'uer-tagger-onnx')")
    assert snapshot(webapp) == before and sorted(p.name for p in webapp.iterdir()) == ["index.html", "manifest.json", "vocab.txt"]
    (webapp / "broken").mkdir()
    (webapp / "manifest.json").write_text("not json")
    before = snapshot(webapp)
    refused(capsys, ["export", str(model_path), str(webapp)], says="(not a JSON object;")
    assert snapshot(webapp) == before
    assert not (tmp_path / "webapp.lock").exists()  # refused before the lock file is made beside it


def test_an_earlier_exports_extra_steps_are_removed(tmp_path, capsys):
    """Row 103: a 3-layer model, then a 2-layer one into the same folder; the user's own file stays."""
    out = tmp_path / "onnx"
    assert main(["export", str(save_model(tmp_path / "deep", layers=3)), str(out)]) == 0
    assert (out / "step_2.onnx").is_file()
    (out / "README.md").write_text("my notes")
    assert main(["export", str(save_model(tmp_path / "shallow", layers=2)), str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["steps"] == ["step_0.onnx", "step_1.onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "full.onnx", "manifest.json", "step_0.onnx",
                                                    "step_1.onnx", "vocab.txt"]
    assert (out / "README.md").read_text() == "my notes"


def test_a_second_export_into_the_same_folder_is_refused_while_the_first_runs(exported, tmp_path, capsys):
    """Row 104: the lock the running export holds (taken here as it would be by another process)."""
    from uer.utils.cli import OutputLock

    model_path, _ = exported
    out = tmp_path / "onnx"
    assert main(["export", str(model_path), str(out)]) == 0
    before = snapshot(out)
    with OutputLock(out, "OUT"):
        refused(capsys, ["export", str(model_path), str(out)], says="another run is writing OUT")
    assert snapshot(out) == before
    assert main(["export", str(model_path), str(out)]) == 0  # released: the next export runs


def test_a_model_without_its_vocabulary_is_one_line(exported, tmp_path, capsys):
    """Row 106."""
    model_path, _ = exported
    (tmp_path / "novocab").mkdir()
    shutil.copy(model_path, tmp_path / "novocab" / "model.pt")
    refused(capsys, ["export", str(tmp_path / "novocab" / "model.pt"), str(tmp_path / "o")],
            says="model.vocab.txt does not exist (run_fastbert.py writes it beside the model")
    assert not (tmp_path / "o").exists()


def test_a_stage_resume_file_is_named_as_one(exported, tmp_path, capsys):
    """Row 107."""
    from tests.test_loading import resume_file

    model_path, _ = exported
    folder = tmp_path / "run"
    shutil.copytree(model_path.parent, folder)
    stage1 = resume_file(folder / "model.pt")
    refused(capsys, ["export", str(stage1), str(tmp_path / "new")],
            says="model.stage1.pt holds the resume state of a training stage (stage 1 fine-tune), not a trained model")
    assert not (tmp_path / "new").exists()


def test_the_manifest_states_the_trained_policy_and_speed(tmp_path):
    """The exit rule in the manifest is the one the model was trained and its speed chosen with."""
    model_path = save_model(tmp_path / "run", exit_policy="patience", chosen_speed=0.4)
    assert main(["export", str(model_path), str(tmp_path / "onnx")]) == 0
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["exit_policy"] == {"name": "patience"} and manifest["speed"] == 0.4
    assert manifest["exit_rule"].startswith("patience (PABEE)") and "entropy" not in manifest["exit_rule"]
    topk = save_model(tmp_path / "topk", exit_policy={"name": "topk_entropy", "k": 2})
    assert main(["export", str(topk), str(tmp_path / "topk_onnx")]) == 0
    manifest = json.loads((tmp_path / "topk_onnx" / "manifest.json").read_text())
    assert manifest["exit_policy"] == {"name": "topk_entropy", "k": 2} and manifest["speed"] is None
    assert manifest["exit_rule"].startswith("topk_entropy (k = 2)")


def test_the_manifest_states_the_exit_plan_and_a_damaged_plan_is_refused_at_load(tmp_path, capsys):
    """The speed from which on early exit pays travels with the export (below it: full.onnx alone);
    a model without a plan says null; a damaged stored plan is one line naming the file."""
    from uer.exit.pays import ExitProfile, StepCosts, make_plan

    speeds = (0.0, 0.5, 1.0)
    profile = ExitProfile({"name": "entropy"}, 2, speeds, ((0.0, 1.0), (0.5, 0.5), (1.0, 0.0)), 10)
    kept = make_plan(profile, StepCosts((1, 8), (2e-3, 16e-3), (1.5e-3, 12e-3), 0.0), "a test's CPU")
    assert kept.from_speed == 1.0  # 1.5 layers a step: pays only where every row leaves after layer 1
    model_path = save_model(tmp_path / "run", exit_plan=kept.as_dict())
    assert main(["export", str(model_path), str(tmp_path / "onnx")]) == 0
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["exit_plan"]["from_speed"] == 1.0 and manifest["exit_plan"]["measured_on"] == "a test's CPU"
    assert "run full.onnx alone" in manifest["exit_plan"]["rule"]
    assert main(["export", str(save_model(tmp_path / "none")), str(tmp_path / "none_onnx")]) == 0
    assert json.loads((tmp_path / "none_onnx" / "manifest.json").read_text())["exit_plan"] is None
    damaged = save_model(tmp_path / "damaged", exit_plan={**kept.as_dict(), "costs": "fast"})
    refused(capsys, ["export", str(damaged), str(tmp_path / "d_onnx")],
            says="model.pt: its stored exit_plan is not usable (exit plan: costs must be a dict")


def test_every_registered_policy_has_a_manifest_rule():
    """A new policy must say how an engine outside uer applies it, or export refuses it."""
    from uer.exit.policies import POLICIES
    from uer.runtime.export import EXIT_RULES, ExportError, exit_rule

    assert set(EXIT_RULES) == set(POLICIES.names())
    for name in POLICIES.names():
        spec, rule = exit_rule(name, 3)
        assert spec["name"] == name and "speed" in rule
    missing = EXIT_RULES.pop("confidence")
    try:
        with pytest.raises(ExportError, match="^exit policy 'confidence' has no rule the manifest can state"):
            exit_rule("confidence", 3)
    finally:
        EXIT_RULES["confidence"] = missing


def test_an_export_stopped_before_its_manifest_can_be_redone(tmp_path, capsys):
    """Killed after some graphs (and half of one) but before the manifest: the folder holds only
    what an export writes, so the same command finishes it; a folder of other files stays refused."""
    out = tmp_path / "onnx"
    assert main(["export", str(save_model(tmp_path / "deep", layers=3)), str(out)]) == 0
    (out / "manifest.json").unlink()
    (out / ".step_1.onnx.abc123.tmp").write_bytes(b"half")
    assert main(["export", str(save_model(tmp_path / "shallow", layers=2)), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["full.onnx", "manifest.json", "step_0.onnx", "step_1.onnx",
                                                    "vocab.txt"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vocab.txt").write_text("my words\n")
    refused(capsys, ["export", str(save_model(tmp_path / "shallow")), str(mine)], says="holds no earlier export")
    assert (mine / "vocab.txt").read_text() == "my words\n"


def test_ctrl_c_during_an_export_says_how_to_finish_it(exported, tmp_path, monkeypatch, capsys):
    """Exit 130 with what to do; the same command then completes the folder."""
    import uer.runtime.export

    model_path, _ = exported
    out = tmp_path / "onnx"
    real = uer.runtime.export._write
    written = []

    def write_then_stop(path, data):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return real(path, data)

    monkeypatch.setattr(uer.runtime.export, "_write", write_then_stop)
    assert main(["export", str(model_path), str(out)]) == 130
    assert "holds no complete export" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["step_0.onnx"]
    monkeypatch.undo()
    assert main(["export", str(model_path), str(out)]) == 0
    assert (out / "manifest.json").is_file()
