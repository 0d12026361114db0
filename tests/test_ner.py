"""Sequence labelling: data builder, BIO scorer, bad rows, token-exit invariants, FLOPs, run_ner.py."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_ner_dataset as builder  # noqa: E402
from uer.config import config_from_dict  # noqa: E402
from uer.model_builder import build_model  # noqa: E402
from uer.tagging import NerTagger, TokenExit, bio_spans, entity_scores  # noqa: E402
from uer.tagging.data import NerDataError, read_label2id, read_ner_tsv  # noqa: E402
from uer.tagging.flops import TaggerFlops  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "ner_pd98_sample.txt"
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


# ----------------------------------------------------------------------------- data builder
def test_parse_joins_two_part_names_and_bracketed_compounds():
    words = builder.join_names(builder.parse_line("王/nr  小明/nr  在/p  青山/ns  县/n", "x:1"))
    assert [(w.text, w.entity) for w in words] == [("王小明", "PER"), ("在", None), ("青山", "LOC"), ("县", None)]
    # a compound tagged nt is one ORG; a compound with another tag keeps its inner tags
    words = builder.join_names(builder.parse_line("[青山/ns  水利局/n]nt  和/c  [红星/nz  中学/n]n", "x:2"))
    assert [(w.text, w.entity) for w in words] == [("青山水利局", "ORG"), ("和", None), ("红星", None), ("中学", None)]
    # a 2-character surname joins; a 3-character name after it stays a separate entity
    words = builder.join_names(builder.parse_line("司马/nr  长风/nr  李四光/nr", "x:3"))
    assert [(w.text, w.entity) for w in words] == [("司马长风", "PER"), ("李四光", "PER")]


def test_parse_errors_name_the_line():
    with pytest.raises(builder.CorpusError, match=r"^c.txt:7: 'abc' is not word/TAG"):
        builder.parse_line("好/a  abc", "c.txt:7")
    with pytest.raises(builder.CorpusError, match="not closed"):
        builder.parse_line("[青山/ns  水利局/n", "c.txt:8")


def test_builder_writes_uer_ner_format(tmp_path):
    assert builder.main(["--corpus_path", str(SAMPLE), "--out_dir", str(tmp_path)]) == 0
    rows = []
    for name in ("train", "dev", "test"):
        lines = (tmp_path / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0] == "text_a\tlabel"
        rows += [line.split("\t") for line in lines[1:]]
    assert json.loads((tmp_path / "label2id.json").read_text()) == {t: i for i, t in enumerate(TAGS)}
    by_text = {text.replace(" ", ""): tags.split(" ") for text, tags in rows}
    # two articles (the headline after body text starts the second); sentences cut after 。；
    assert set(by_text) == {"春天的小镇", "王小明在青山县工作。", "他说：“很好。”", "青山水利局和红星中学合作；",
                            "张老师来了。", "一个新标题", "司马长风李四光访问绿水，见到蓝天公司。"}
    assert by_text["王小明在青山县工作。"] == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O", "O"]
    assert by_text["青山水利局和红星中学合作；"][:6] == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O"]
    assert by_text["张老师来了。"][:2] == ["B-PER", "O"]  # a lone surname nr is still a person
    assert by_text["司马长风李四光访问绿水，见到蓝天公司。"][:7] == ["B-PER", "I-PER", "I-PER", "I-PER", "B-PER", "I-PER", "I-PER"]
    for text, tags in rows:
        assert len(text.split(" ")) == len(tags.split(" "))
    # each article lies in one split: the two sentences of the first body paragraph travel together
    where = {text.replace(" ", ""): name for name in ("train", "dev", "test")
             for text, _ in (line.split("\t") for line in (tmp_path / f"{name}.tsv").read_text().splitlines()[1:])}
    assert where["王小明在青山县工作。"] == where["他说：“很好。”"] == where["春天的小镇"]
    # deterministic: a second build gives the same bytes
    again = tmp_path / "again"
    builder.main(["--corpus_path", str(SAMPLE), "--out_dir", str(again)])
    for name in ("train.tsv", "dev.tsv", "test.tsv", "pretrain_corpus.txt"):
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes()


# ----------------------------------------------------------------------------- scorer
@pytest.mark.parametrize("tags, spans", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["I-PER", "I-PER", "O"], [("PER", 0, 2)]),  # I- without B- starts an entity
    (["B-LOC", "B-LOC", "I-LOC"], [("LOC", 0, 1), ("LOC", 1, 3)]),  # adjacent entities
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # type change ends the entity
    (["O", "O"], []),
    (["B-ORG"], [("ORG", 0, 1)]),
])
def test_bio_spans(tags, spans):
    assert bio_spans(tags) == spans


def test_entity_scores_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O"],  # PER right, LOC too short
            ["B-LOC", "I-LOC", "O"]]  # right span, wrong type
    s = entity_scores(gold, pred)
    assert (s["correct"], s["gold"], s["predicted"]) == (1, 3, 3)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3) and s["f1"] == pytest.approx(1 / 3)
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0


# ----------------------------------------------------------------------------- bad rows
def write_label2id(path):
    path.write_text(json.dumps({t: i for i, t in enumerate(TAGS)}))
    return read_label2id(path)


def test_bad_rows_name_file_and_line(tmp_path):
    label2id = write_label2id(tmp_path / "l.json")
    bad = tmp_path / "bad.tsv"
    bad.write_text("text_a\tlabel\n我 在 北 京\tO O B-LOC I-LOC\n他 好\tO\n", encoding="utf-8")
    with pytest.raises(NerDataError, match=rf"^{bad}:3: 1 tags for 2 characters"):
        read_ner_tsv(bad, label2id)
    bad.write_text("text_a\tlabel\n我 在\tO B-XYZ\n", encoding="utf-8")
    with pytest.raises(NerDataError, match=rf"^{bad}:2: unknown tag 'B-XYZ'"):
        read_ner_tsv(bad, label2id)
    bad.write_text("text_a\tlabel\n我 在\tO O\n他 好\tO\n你\n", encoding="utf-8")
    data = read_ner_tsv(bad, label2id, skip_malformed=True)
    assert data.chars == [["我", "在"]] and [n for n, _ in data.skipped] == [3, 4]


# ----------------------------------------------------------------------------- invariants
def tiny_model(layers=3, seed=0, alibi=False):
    torch.manual_seed(seed)
    positions = ["word", "seg"] if alibi else ["word", {"name": "pos", "max_seq_length": 64}, "seg"]
    config = config_from_dict({
        "embedding": {"components": positions, "emb_size": 32, "dropout": 0.0},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": layers, "heads_num": 4, "feedforward_size": 37,
                    "position_bias": "alibi" if alibi else "none"},
        "target": {"components": [{"name": "token_exit", "branch_size": 16}]},
    })
    model = build_model(config, vocab_size=99, labels_num=7).eval()
    # make layer-1's branch sure about some tokens only: logit of tag 0 = 40 * tanh(h_0)
    b = model.target.components["token_exit"].branches[0]
    with torch.no_grad():
        b.dense.weight.zero_(); b.dense.weight[0, 0] = 1.0; b.dense.bias.zero_()
        b.output.weight.zero_(); b.output.weight[0, 0] = 40.0; b.output.bias.zero_()
    return model


def batch_of(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    src = torch.zeros(len(lengths), t, dtype=torch.long)
    seg = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(5, 99, (n,), generator=g)
        seg[i, :n] = 1
    return src, seg


def test_speed_zero_is_the_full_model_exactly():
    runner = TokenExit(tiny_model())
    src, seg = batch_of([9, 5, 7])
    out = runner.predict(src, seg, speed=0.0)
    full = runner.full_model(src, seg)
    assert torch.equal(out.probs, full)
    assert torch.equal(out.exit_layer, torch.where(seg > 0, 3, 0))


@pytest.mark.parametrize("alibi", [False, True], ids=["learned_positions", "alibi"])
@pytest.mark.parametrize("window", [0, 1])
def test_tags_do_not_depend_on_the_batch(window, alibi):
    runner = TokenExit(tiny_model(alibi=alibi))
    lengths = [9, 5, 7, 12]
    src, seg = batch_of(lengths)
    batched = runner.predict(src, seg, speed=0.5, window=window)
    layers = batched.exit_layer[seg > 0]
    assert 1 in layers.tolist() and 3 in layers.tolist()  # some tokens left early, some did not
    padded_src = torch.cat([src, torch.zeros(4, 6, dtype=torch.long)], 1)
    padded_seg = torch.cat([seg, torch.zeros(4, 6, dtype=torch.long)], 1)
    padded = runner.predict(padded_src, padded_seg, speed=0.5, window=window)
    for i, n in enumerate(lengths):
        alone = runner.predict(src[i:i + 1, :n], seg[i:i + 1, :n], speed=0.5, window=window)
        for other in (batched, padded):
            assert torch.equal(alone.exit_layer[0], other.exit_layer[i, :n])
            assert torch.equal(alone.probs[0].argmax(-1), other.probs[i, :n].argmax(-1))
            torch.testing.assert_close(alone.probs[0], other.probs[i, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alibi", [False, True], ids=["learned_positions", "alibi"])
@pytest.mark.parametrize("pre_norm", [False, True], ids=["post_ln", "pre_ln"])
def test_runtimes_agree(alibi, pre_norm):
    """F.linear, oneDNN-packed linears and auto's per-batch choice: the same exits, the same
    distributions (within float error), batch 1 and batched, plain and windowed."""
    model = tiny_model(alibi=alibi)
    if pre_norm:
        for block in model.encoder.transformer:
            block.pre_norm = True
    runners = {name: TokenExit(model, runtime=name) for name in ("eager", "fused", "auto")}
    assert runners["eager"].name == "eager" and "F.linear" in runners["eager"].reason
    if runners["fused"].choice.small.branches[0][0].mkldnn:  # x86 with oneDNN: auto measured both kinds
        assert set(runners["auto"].timings) == {"small", "large"} and "measured at load" in runners["auto"].reason
    src, seg = batch_of([9, 5, 7, 12])
    for window in (0, 1):
        for rows in (slice(0, 1), slice(0, 4)):
            ref = runners["eager"].predict(src[rows], seg[rows], speed=0.5, window=window)
            assert 1 in ref.exit_layer.tolist()[0] and 3 in ref.exit_layer.tolist()[0]  # mixed exits
            for name in ("fused", "auto"):
                out = runners[name].predict(src[rows], seg[rows], speed=0.5, window=window)
                assert torch.equal(out.exit_layer, ref.exit_layer), (name, window, rows)
                torch.testing.assert_close(out.probs, ref.probs, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown runtime 'onnx'"):
        TokenExit(model, runtime="onnx")


def test_window_exits_no_earlier():
    runner = TokenExit(tiny_model())
    src, seg = batch_of([12, 8])
    plain = runner.predict(src, seg, speed=0.5).exit_layer
    wide = runner.predict(src, seg, speed=0.5, window=2).exit_layer
    assert bool((wide >= plain).all()) and bool((wide > plain).any())


@pytest.mark.parametrize("alibi", [False, True], ids=["learned_positions", "alibi"])
def test_exited_tokens_keep_their_state_and_are_attended_to(alibi):
    """The rule in the docstring: a token that exits at layer 1 has layer 1's distribution; the
    tokens that stay see it through keys and values of its frozen vector (checked by hand).
    With ALiBi the remaining queries keep their own rows of the (B, heads, T, T) scores."""
    model = tiny_model(layers=2, alibi=alibi)
    runner = TokenExit(model)
    src, seg = batch_of([10])
    out = runner.predict(src, seg, speed=0.5)
    target = model.target.components["token_exit"]
    with torch.no_grad():
        h1 = model.encoder.layer(0, model.embed(src, seg), model.encoder.context(seg))
        p1 = torch.softmax(target.branches[0](h1), -1)
        gone = out.exit_layer[0] == 1
        torch.testing.assert_close(out.probs[0][gone], p1[0][gone])
        h2 = model.encoder.layer(1, h1, model.encoder.context(seg))  # every token's new vector, all attend to h1
        p2 = torch.softmax(target.branches[1](h2), -1)
        torch.testing.assert_close(out.probs[0][~gone], p2[0][~gone], rtol=1e-5, atol=1e-6)


def test_analytic_flops_match_flop_counter():
    model = tiny_model(layers=3).requires_grad_(False)  # FlopCounterMode's module hooks vs inference mode
    runner = TokenExit(model, runtime="eager")  # F.linear: counted (oneDNN's packed linears are not)
    flops = TaggerFlops.of(model)
    src, seg = batch_of([11])

    def counted(fn):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # MATH: attention as bmm, counted
            result = fn()
        return counter.get_total_flops(), result

    layers_seen = set()
    for speed in (0.0, 0.5, 1.0):
        total, out = counted(lambda: runner.predict(src, seg, speed=speed))
        expected = flops.full(11) if speed == 0 else flops.early_exit(out.exit_layer[0])  # speed 0: the full model itself
        assert total == expected, speed
        layers_seen.add(tuple(out.exit_layer[0].tolist()))
    assert len(layers_seen) == 3  # three different exit patterns, one of them mixed
    total, _ = counted(lambda: runner.full_model(src, seg))
    assert total == flops.full(11)


# ----------------------------------------------------------------------------- run_ner.py end to end
def tiny_dataset(root: Path):
    import random

    rng = random.Random(0)
    filler = list("我你他在上的了和是有")
    ents = [("北京", "LOC"), ("上海", "LOC"), ("江泽民", "PER"), ("李鹏", "PER"), ("新华社", "ORG")]

    def row():
        c, t = [], []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.4:
                w, k = rng.choice(ents)
                c += list(w)
                t += ["B-" + k] + ["I-" + k] * (len(w) - 1)
            else:
                c.append(rng.choice(filler))
                t.append("O")
        return " ".join(c) + "\t" + " ".join(t) + "\n"

    for name, n in (("train", 48), ("dev", 12), ("test", 12)):
        (root / f"{name}.tsv").write_text("text_a\tlabel\n" + "".join(row() for _ in range(n)), encoding="utf-8")
    write_label2id(root / "label2id.json")
    chars = sorted(set(filler + list("北京上海江泽民李鹏新华社")))
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8")
    (root / "cfg.yaml").write_text(
        "embedding:\n  components: [word, {name: pos, max_seq_length: 32}, seg]\n  emb_size: 16\n"
        "encoder: {name: transformer, hidden_size: 16, layers_num: 2, heads_num: 2, feedforward_size: 24}\n"
        "target:\n  components: [mlm]\ntokenizer: {name: char}\n", encoding="utf-8")


def ner_args(root: Path, *extra: str) -> list[str]:
    return ["--config_path", str(root / "cfg.yaml"), "--vocab_path", str(root / "vocab.txt"),
            "--train_path", str(root / "train.tsv"), "--dev_path", str(root / "dev.tsv"), "--test_path", str(root / "test.tsv"),
            "--label2id_path", str(root / "label2id.json"), "--output_model_path", str(root / "out" / "model.pt"),
            "--epochs_num", "1", "--distill_epochs_num", "1", "--batch_size", "16", "--seq_length", "8",
            "--learning_rate", "1e-3", "--timing_samples", "2", "--no_progress", "--no_plot", "--threads", "1", *extra]


def test_run_ner_end_to_end(tmp_path, capsys):
    import run_ner

    tiny_dataset(tmp_path)
    report_path = tmp_path / "report.json"
    assert run_ner.main(ner_args(tmp_path, "--speed", "0", "--timing_samples", "0", "--output_model_path",
                                 str(tmp_path / "o0" / "m.pt"))) == 0  # no wall clock: no division by zero
    assert json.loads((tmp_path / "o0" / "m.report.json").read_text())["rows"][0]["wall_speedup_batch1"] is None
    assert run_ner.main(ner_args(tmp_path, "--speed", "0,1", "--report_path", str(report_path))) == 0
    report = json.loads(report_path.read_text())
    assert set(report) >= {"teacher_f1", "rows"}
    assert [r["speed"] for r in report["rows"]] == [0.0, 1.0]
    for row in report["rows"]:
        assert set(row) >= {"speed", "precision", "recall", "f1", "mean_exit_layer", "flops_per_sentence", "flops_speedup",
                            "wall_speedup_batch1", "wall_speedup_batched"}
    assert report["rows"][0]["f1"] == report["teacher_f1"] and report["rows"][0]["mean_exit_layer"] == 2.0
    assert report["rows"][1]["mean_exit_layer"] == 1.0 and report["rows"][1]["flops_speedup"] > 1.0
    assert [r["mean_layers_run"] for r in report["rows"]] == [2.0, 1.0]
    # predictions: the input's format, same characters, one tag per character (rows of 8 tokens were joined back)
    test_lines = (tmp_path / "test.tsv").read_text(encoding="utf-8").splitlines()
    pred_lines = (tmp_path / "out" / "model.predictions" / "speed_0.00.tsv").read_text(encoding="utf-8").splitlines()
    assert pred_lines[0] == "text_a\tlabel" and len(pred_lines) == len(test_lines)
    for gold, pred in zip(test_lines[1:], pred_lines[1:]):
        assert pred.split("\t")[0] == gold.split("\t")[0]
        assert len(pred.split("\t")[1].split(" ")) == len(gold.split("\t")[0].split(" "))
        assert set(pred.split("\t")[1].split(" ")) <= set(TAGS)
    # the API: a str is one text; offsets index the text
    tagger = NerTagger.load(tmp_path / "out" / "model.pt")
    text = "我在北京 见到江泽民"
    (entities,) = tagger.predict(text, speed=0.0)
    for e in entities:
        assert text[e.start:e.end] == e.text and e.type in ("PER", "LOC", "ORG")
    assert tagger.predict([text, "你好"], speed=0.0)[0] == entities
    with pytest.raises(ValueError, match="speed"):
        tagger.predict(text, speed=1.5)
    with pytest.raises(TypeError):
        tagger.predict([text, 3])

    # the same command again resumes the finished run (both stages) instead of refusing its files
    assert run_ner.main(ner_args(tmp_path, "--speed", "0,1", "--report_path", str(report_path))) == 0
    again = json.loads(report_path.read_text())
    assert again["teacher_f1"] == report["teacher_f1"] and again["stage2"]["best"] == report["stage2"]["best"]

    # another run into this output (other vocabulary, other learning rate): refused in one line before
    # anything is written, every file of the finished run byte-identical
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file() and p.suffix != ".lock"}
    other_vocab = tmp_path / "vocab2.txt"
    other_vocab.write_text((tmp_path / "vocab.txt").read_text(encoding="utf-8") + "额\n", encoding="utf-8")
    capsys.readouterr()
    argv = ner_args(tmp_path, "--speed", "0,1")
    argv[argv.index("--vocab_path") + 1] = str(other_vocab)
    assert run_ner.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("run_ner.py: error: --output_model_path") and "another run's vocabulary" in err, err
    argv = ner_args(tmp_path, "--speed", "0,1")
    argv[argv.index("--learning_rate") + 1] = "2e-3"
    assert run_ner.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "model.config.yaml is another run's config (it differs in: ner.learning_rate)" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file() and p.suffix != ".lock"} == before

    # a bad row: one line on stderr naming file:line, exit 2, before any training
    bad = tmp_path / "train.tsv"
    bad.write_text(bad.read_text(encoding="utf-8") + "我 们\tO\n", encoding="utf-8")
    capsys.readouterr()
    assert run_ner.main(ner_args(tmp_path, "--output_model_path", str(tmp_path / "o2" / "m.pt"))) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"run_ner.py: error: {bad}:50: 1 tags for 2 characters (or pass --skip_malformed to skip such rows)"
    assert not (tmp_path / "o2" / "m.pt").exists()


def test_run_ner_bad_flags(tmp_path, capsys):
    import run_ner

    tiny_dataset(tmp_path)
    assert run_ner.main(ner_args(tmp_path, "--output_model_path", str(tmp_path) + "/")) == 2
    assert "ends with '/'" in capsys.readouterr().err
    assert run_ner.main(ner_args(tmp_path, "--label2id_path", str(tmp_path / "nope.json"))) == 2
    assert capsys.readouterr().err.strip() == f"run_ner.py: error: --label2id_path {tmp_path / 'nope.json'} does not exist"
    assert run_ner.main(ner_args(tmp_path, "--speed", "2")) == 2  # argparse's one line, not a SystemExit
    assert "--speed" in capsys.readouterr().err
