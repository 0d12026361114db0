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
    assert again.source == "again" and again == cfg  # source is runtime metadata: not compared ...
    assert "source" not in to_dict(cfg) and to_dict(again) == to_dict(cfg)  # ... and never saved


def test_emb_size_defaults_to_the_encoder_hidden_size(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace("  emb_size: 32\n", "")), ["encoder.hidden_size=128"])
    assert cfg.embedding.emb_size is None and cfg.emb_size == 128
    import uer
    model = uer.build_model(cfg, vocab_size=50)
    assert isinstance(model.embedding.projection, __import__("torch").nn.Identity)  # no silent ALBERT projection
    factorised = load_config(write(tmp_path, GOOD), ["encoder.hidden_size=128"])
    assert factorised.emb_size == 32 and uer.build_model(factorised, vocab_size=50).embedding.projection.in_features == 32


def test_tokenizer_section_gets_its_own_typed_config(tmp_path):
    from uer.tokenizers import BertTokenizerConfig
    from uer.tokenizers.char import CharTokenizerConfig
    cfg = load_config(write(tmp_path, GOOD + "tokenizer:\n  name: bert\n  do_lower_case: false\n"))
    assert cfg.tokenizer == BertTokenizerConfig(do_lower_case=False)
    assert isinstance(load_config(write(tmp_path, GOOD + "tokenizer: char\n")).tokenizer, CharTokenizerConfig)
    msg = error(tmp_path, GOOD + "tokenizer:\n  name: char\n  do_lower_case: false\n")
    assert "model.yaml:14: tokenizer(char).do_lower_case: unknown key 'do_lower_case'" in msg
    assert "unknown tokenizer 'wordpiece'; valid tokenizers: bert, bytelevel_bpe, char, sentencepiece, space" in error(tmp_path, GOOD + "tokenizer: wordpiece\n")


def test_ranges_are_checked_where_the_field_is(tmp_path):
    assert "model.yaml:7: encoder(transformer).layers_num: 0 is not >= 1" in error(tmp_path, GOOD.replace("layers_num: 2", "layers_num: 0"))
    assert "(override): encoder(transformer).dropout: 5.0 is not in [0, 1)" in error(tmp_path, GOOD, ["encoder.dropout=5"])
    assert "train.warmup: 1.5 is not in [0, 1]" in error(tmp_path, GOOD, ["train.warmup=1.5"])
    assert "model.yaml:5: encoder(transformer): hidden_size 32 is not divisible by heads_num 3" in error(tmp_path, GOOD, ["encoder.heads_num=3"])


def test_a_component_can_be_given_by_name_alone(tmp_path):
    cfg = load_config(write(tmp_path, "embedding: word\nencoder: lstm\ntarget: lm\n"), ["encoder.hidden_size=16"])
    assert [s.name for s in cfg.embedding.components] == ["word"] and cfg.encoder.name == "lstm"
    assert cfg.encoder.cfg.hidden_size == 16 and [s.name for s in cfg.target.components] == ["lm"]


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
