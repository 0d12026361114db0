"""Configs fail loudly: every mistake names the file, the line, the key and what is valid."""
import textwrap

import pytest

from uer.config import ConfigError, load_config, to_dict, config_from_dict

GOOD = """\
embedding:
  components: [word, {name: pos, max_seq_length: 64}, seg]
  emb_size: 32
encoder:
  name: transformer
  hidden_size: 32
  layers_num: 2
  heads_num: 4
  feedforward_size: 37
target:
  components: [mlm]
"""


def write(tmp_path, text):
    path = tmp_path / "model.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error(tmp_path, text, overrides=()):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), overrides)
    return str(exc.value)


def test_good_config_types_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.encoder.name == "transformer" and cfg.encoder.cfg.layers_num == 2
    assert cfg.encoder.cfg.dropout == 0.1  # default from the dataclass
    assert [s.name for s in cfg.embedding.components] == ["word", "pos", "seg"]
    assert cfg.embedding.components[1].cfg.max_seq_length == 64
    assert cfg.train.batch_size == 32


def test_overrides_beat_yaml(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), ["encoder.layers_num=3", "train.learning_rate=0.5"])
    assert cfg.encoder.cfg.layers_num == 3 and cfg.train.learning_rate == 0.5


def test_round_trip_through_dict(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    again = config_from_dict(to_dict(cfg), "again")
    assert again.source == "again"
    assert {**to_dict(again), "source": None} == {**to_dict(cfg), "source": None}


def test_typo_in_key_names_file_line_and_valid_keys(tmp_path):
    msg = error(tmp_path, GOOD.replace("  layers_num: 2", "  layer_num: 2"))
    assert "model.yaml:7" in msg and "'layer_num'" in msg and "layers_num" in msg and "valid keys" in msg


def test_unknown_module_lists_valid_names(tmp_path):
    msg = error(tmp_path, GOOD.replace("name: transformer", "name: transfomer"))
    assert "model.yaml:5" in msg and "unknown encoder 'transfomer'" in msg and "transformer" in msg
    msg = error(tmp_path, GOOD.replace("[mlm]", "[mlm, nps]"))
    assert "model.yaml:11" in msg and "unknown target 'nps'" in msg and "nsp" in msg


def test_wrong_type_and_bad_choice(tmp_path):
    assert "expected an integer, got 'two'" in error(tmp_path, GOOD.replace("layers_num: 2", "layers_num: two"))
    assert "expected an integer, got 2.5" in error(tmp_path, GOOD.replace("layers_num: 2", "layers_num: 2.5"))
    msg = error(tmp_path, GOOD + "  \n", ["encoder.mask=causual"])
    assert "'causual' is not one of" in msg and "'causal'" in msg and "(override)" in msg


def test_unknown_section_duplicate_key_bad_yaml_missing_file(tmp_path):
    assert "unknown section 'trian'" in error(tmp_path, GOOD + "trian:\n  batch_size: 3\n")
    assert "appears twice" in error(tmp_path, GOOD + "encoder:\n  name: lstm\n")
    assert "model.yaml:3: not valid YAML" in error(tmp_path, "embedding:\n  emb_size: [1\nencoder: {}\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    assert "missing section 'encoder'" in error(tmp_path, "embedding: {}\ntarget: {components: [mlm]}\n")
