"""uer.recipe: the schedule chosen from model size and step budget, and explicit values winning."""
import math
from pathlib import Path

import pytest

from uer.config import apply_overrides, config_from_dict, load_config, read_yaml
from uer.recipe import (MAX_WARMUP_STEPS, Schedule, apply_recipe, default_schedule, default_warmup, peak_learning_rate,
                        position_advice, target_advice)

ROOT = Path(__file__).resolve().parents[1]
from uer.recipe import RecipeError as UsageError  # the recipe raises its own domain error (review 5.6)

FAMILY = [(128, 2), (256, 4), (512, 4), (512, 8), (768, 12), (1024, 24)]  # tiny ... large


def test_bert_tiny_gets_the_measured_peak_and_a_short_warmup():
    s = default_schedule(hidden_size=128, layers_num=2, total_steps=3000)
    assert (s.learning_rate, s.warmup, s.scheduler, s.warmup_steps(3000)) == (3e-3, 0.05, "linear", 150)
    assert s.explanation == ("schedule: learning rate 3.0e-03 for hidden 128 x 2 layers, warmup 150 of 3000 steps, "
                             "then linear decay to 0 [uer.recipe; --learning_rate / --warmup / --scheduler override]")


def test_the_zoo_table():
    post = [peak_learning_rate(h, n, "post") for h, n in FAMILY]
    pre = [peak_learning_rate(h, n, "pre") for h, n in FAMILY]
    assert post == [3e-3, 1.1e-3, 2.7e-4, 1.9e-4, 1e-4, 5.4e-5]
    assert pre == [3e-3, 1.1e-3, 5.3e-4, 3.8e-4, 2e-4, 1.1e-4]


@pytest.mark.parametrize("positioning", ["post", "pre"])
def test_learning_rate_never_grows_with_width_or_depth(positioning):
    for layers in (1, 2, 3, 4, 6, 8, 12, 24, 48):
        lrs = [peak_learning_rate(h, layers, positioning) for h in (16, 64, 128, 200, 256, 384, 512, 768, 1024, 4096)]
        assert lrs == sorted(lrs, reverse=True)
        assert lrs[0] > lrs[-1]
    for hidden in (64, 128, 256, 512, 768, 1024):
        lrs = [peak_learning_rate(hidden, n, positioning) for n in (1, 2, 4, 6, 12, 24, 96)]
        assert lrs == sorted(lrs, reverse=True)
        assert lrs[0] > lrs[-1]


def test_learning_rate_is_clipped_at_both_ends():
    assert peak_learning_rate(8, 1) == 5e-3
    assert peak_learning_rate(65536, 1000) == 1e-5


def test_post_ln_is_halved_only_when_wide():
    assert peak_learning_rate(256, 4, "post") == peak_learning_rate(256, 4, "pre")
    assert peak_learning_rate(768, 12, "post") == pytest.approx(peak_learning_rate(768, 12, "pre") / 2)


def test_warmup_is_five_percent_capped_at_ten_thousand_steps():
    assert default_warmup(1) == 0.05
    assert default_warmup(300) == 0.05
    assert default_warmup(200_000) == 0.05
    assert default_warmup(1_000_000) == pytest.approx(0.01)
    assert int(default_warmup(1_000_000) * 1_000_000) == MAX_WARMUP_STEPS
    fractions = [default_warmup(n) for n in (10, 1000, 100_000, 300_000, 10**7)]
    assert fractions == sorted(fractions, reverse=True)


def test_explicit_values_win_and_say_so():
    s = default_schedule(128, 2, 1000, learning_rate=1e-4, warmup=0.2, scheduler="cosine")
    assert (s.learning_rate, s.warmup, s.scheduler) == (1e-4, 0.2, "cosine")
    assert s.explanation.startswith("schedule: learning rate 1.0e-04 (given), warmup 200 of 1000 steps (given), then cosine (given)")
    only_lr = default_schedule(128, 2, 1000, learning_rate=7e-4)
    assert (only_lr.learning_rate, only_lr.warmup, only_lr.scheduler) == (7e-4, 0.05, "linear")
    assert default_schedule(128, 2, 1000, warmup=0.0).warmup == 0.0  # zero is a choice, not "missing"
    assert default_schedule(128, 2, 1000, warmup=1.0).warmup == 1.0  # as --warmup accepts: warm up the whole run


def test_recorded_values_are_kept_and_named_as_recorded():
    s = default_schedule(128, 2, 1000, learning_rate=2e-4, warmup=0.1, recorded={"warmup"})
    assert (s.learning_rate, s.warmup, s.scheduler) == (2e-4, 0.1, "linear")
    assert s.explanation.startswith("schedule: learning rate 2.0e-04 (given), warmup 100 of 1000 steps (recorded), "
                                    "then linear decay to 0")


@pytest.mark.parametrize("kwargs, message", [
    ({"hidden_size": 0}, "hidden_size: expected a positive integer, got 0"),
    ({"hidden_size": 128.0}, "hidden_size: expected a positive integer, got 128.0"),
    ({"layers_num": -2}, "layers_num: expected a positive integer, got -2"),
    ({"layers_num": True}, "layers_num: expected a positive integer, got True"),
    ({"total_steps": 0}, "total_steps: expected a positive integer, got 0"),
    ({"learning_rate": 0.0}, "learning_rate: expected a positive finite number, got 0.0"),
    ({"learning_rate": -1e-3}, "learning_rate: expected a positive finite number, got -0.001"),
    ({"learning_rate": math.nan}, "learning_rate: expected a positive finite number, got nan"),
    ({"warmup": 1.5}, "warmup: expected a fraction of total_steps in [0, 1], got 1.5"),
    ({"warmup": -0.1}, "warmup: expected a fraction of total_steps in [0, 1], got -0.1"),
    ({"scheduler": "step"}, "scheduler: unknown 'step'; valid: linear, cosine, constant"),
    ({"layernorm_positioning": "middle"}, "layernorm_positioning: expected post or pre, got 'middle'"),
])
def test_impossible_inputs_are_refused_with_one_line(kwargs, message):
    args = {"hidden_size": 128, "layers_num": 2, "total_steps": 100, **kwargs}
    with pytest.raises(UsageError) as err:
        default_schedule(**args)
    assert str(err.value) == message


def test_target_advice_for_small_budgets():
    assert target_advice(["mlm", "nsp"], 3000) == (
        "note: 3000 steps is a small budget and nsp takes half the training signal; the recommended path is mlm alone: "
        "preprocess.py --data_processor mlm and pretrain.py --set 'target.components=[mlm]'")
    assert "sop takes half" in target_advice(["mlm", "sop"], 10)
    assert target_advice(["mlm"], 3000) is None
    assert target_advice(["mlm", "nsp"], 100_000) is None
    assert target_advice(["lm"], 10) is None


def test_position_advice_for_learned_positions_from_scratch():
    bert = load_config(ROOT / "models" / "bert" / "mini.yaml", ["target.components=[mlm]"])
    advice = position_advice(bert, 6000, from_scratch=True)
    assert advice.startswith("note: from scratch with learned positions only") and "encoder.position_bias=alibi" in advice
    assert position_advice(bert, 6000, from_scratch=False) is None  # continued pre-training keeps its positions
    assert position_advice(bert, 6000, from_scratch=True, scaffold=True) is None  # uer.scaffold is the fix
    assert position_advice(bert, 100_000, from_scratch=True) is None  # a long budget climbs off the plateau anyway
    alibi = load_config(ROOT / "models" / "bert" / "mini_alibi.yaml")
    assert position_advice(alibi, 6000, from_scratch=True) is None
    gpt = load_config(ROOT / "models" / "gpt2" / "small.yaml")
    assert position_advice(gpt, 6000, from_scratch=True) is None  # no mlm target, causal mask


def _config(path, overrides=()):
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, list(overrides))
    return config_from_dict(data, path), set(data.get("train") or {})


def test_apply_recipe_fills_only_what_nobody_set():
    config, explicit = _config("models/bert/mini.yaml", ["train.total_steps=2000"])
    filled, line = apply_recipe(config, explicit)
    assert (filled.train.learning_rate, filled.train.warmup, filled.train.scheduler) == (1.1e-3, 0.05, "linear")
    assert filled.train.total_steps == 2000 and filled.encoder == config.encoder
    assert line.startswith("schedule: learning rate 1.1e-03 for hidden 256 x 4 layers, warmup 100 of 2000 steps")

    config, explicit = _config("models/bert/mini.yaml", ["train.total_steps=2000", "train.learning_rate=0.0001"])
    kept, line = apply_recipe(config, explicit)
    assert (kept.train.learning_rate, kept.train.warmup) == (1e-4, 0.05)
    assert "1.0e-04 (given)" in line


def test_apply_recipe_takes_a_resumed_runs_record_for_what_nobody_set():
    config, explicit = _config("models/bert/mini.yaml", ["train.total_steps=2000", "train.scheduler=cosine"])
    record = {"learning_rate": 1e-4, "warmup": 0.1, "scheduler": "constant"}
    kept, line = apply_recipe(config, explicit, record)
    assert (kept.train.learning_rate, kept.train.warmup, kept.train.scheduler) == (1e-4, 0.1, "cosine")
    assert line.startswith("schedule: learning rate 1.0e-04 (recorded), warmup 200 of 2000 steps (recorded), "
                           "then cosine (given)")
    assert apply_recipe(config, explicit, {})[0] == apply_recipe(config, explicit)[0]


def test_apply_recipe_on_a_post_ln_base_and_a_pre_ln_gpt():
    base, explicit = _config("models/bert/base.yaml", ["train.total_steps=1000000"])
    filled, _ = apply_recipe(base, explicit)
    assert (filled.train.learning_rate, filled.train.warmup) == (1e-4, pytest.approx(0.01))
    gpt, explicit = _config("models/gpt2/small.yaml", ["train.total_steps=1000"])
    assert apply_recipe(gpt, explicit)[0].train.learning_rate == 2e-4  # pre-LN, 768 x 12: not halved


def test_schedule_is_a_frozen_value():
    s = default_schedule(128, 2, 10)
    assert isinstance(s, Schedule)
    with pytest.raises(AttributeError):
        s.learning_rate = 1.0


def test_token_log_prior_orders_tokens_by_frequency_and_sums_to_one():
    import numpy as np
    import torch

    from uer.recipe import token_log_prior

    prior = token_log_prior(np.array([0, 0, 1, 1, 1, 2, 5], dtype=np.uint16), vocab_size=4, special_ids=(0,))
    assert prior.shape == (4,)
    assert prior[1] > prior[2] > prior[3]
    assert prior[0] == prior[3]  # a special token counts as never seen
    torch.testing.assert_close(prior.exp().sum(), torch.tensor(1.0))
    torch.testing.assert_close(prior[1] - prior[2], torch.tensor(math.log(3.5 / 1.5)))


def _tiny(path="tests/data/pretrain_mlm.yaml", vocab_size=50):
    import torch

    from uer.config import load_config
    from uer.model_builder import build_model

    torch.manual_seed(0)
    return build_model(load_config(path), vocab_size=vocab_size)


def test_init_mlm_bias_starts_the_model_at_the_unigram_solution():
    import numpy as np
    import torch

    from uer.recipe import init_mlm_bias, token_log_prior

    g = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 46)  # Zipf over ids 5..49, as characters are
    ids = g.choice(np.arange(5, 50), size=20_000, p=weights / weights.sum())
    src = torch.from_numpy(ids[:8 * 16].reshape(8, 16)).long()
    tgt = src.clone()
    tgt[:, ::2] = -100
    batch = {"src": src, "seg": torch.ones_like(src), "tgt_mlm": tgt}
    model = _tiny().eval()
    with torch.no_grad():
        before = float(model(batch)["loss"])
        prior = token_log_prior(ids, 50, special_ids=(0, 1, 2, 3, 4))
        assert init_mlm_bias(model, prior) is True
        after = float(model(batch)["loss"])
    bias = model.target.components["mlm"].head.decoder.bias
    torch.testing.assert_close(bias, prior - prior.mean())
    assert before > math.log(50) - 0.2  # a fresh model is near uniform
    assert after < before - 0.5  # ... the prior starts it well below that


def test_init_mlm_bias_without_an_mlm_head_or_with_the_wrong_vocabulary():
    import torch

    from uer.recipe import init_mlm_bias

    assert init_mlm_bias(_tiny("tests/data/pretrain_gpt.yaml"), torch.zeros(50)) is False
    with pytest.raises(UsageError) as err:
        init_mlm_bias(_tiny(), torch.zeros(49))
    assert str(err.value) == "MLM decoder bias has shape (50,), the token prior (49,)"


def test_continued_pre_training_caps_the_peak_rate():
    s = default_schedule(384, 6, 2000, continued=True)  # MiniLM: the size rule alone would say 5.8e-4
    assert s.learning_rate == 1e-4 and s.warmup == 0.05
    assert s.explanation.startswith("schedule: learning rate 1.0e-04 for continued pre-training of a trained model "
                                    "(from random weights: 5.8e-04)")
    assert default_schedule(384, 6, 2000).learning_rate == 5.8e-4
    assert default_schedule(1024, 24, 2000, continued=True).learning_rate == 5.4e-5  # already below the cap
    assert default_schedule(384, 6, 2000, learning_rate=3e-4, continued=True).learning_rate == 3e-4  # a choice wins
    config, explicit = _config("models/bert/minilm_l6_h384.yaml", ["train.total_steps=2000"])
    assert apply_recipe(config, explicit, continued=True)[0].train.learning_rate == 1e-4


def test_finetune_rates_follow_the_size_with_bert_base_at_bert_s_rate():
    from uer.recipe import finetune_learning_rate

    assert [finetune_learning_rate(h, n) for h, n in FAMILY] == [7.3e-4, 2.6e-4, 1.3e-4, 9.2e-5, 5e-5, 2.7e-5]
    assert finetune_learning_rate(384, 6) == 1.4e-4  # MiniLM-L6-H384
    assert finetune_learning_rate(32, 2) == 1e-3  # clipped (the test configs)
    with pytest.raises(UsageError, match="hidden_size: expected a positive integer, got 0"):
        finetune_learning_rate(0, 2)


@pytest.mark.parametrize("section", ["fastbert", "ner"])
def test_apply_finetune_recipe_fills_only_the_rates_nobody_set(section):
    from uer.recipe import apply_finetune_recipe

    tiny = load_config(ROOT / "models" / "bert" / "tiny.yaml")
    assert getattr(tiny, section).learning_rate is None  # nothing set: the recipe's
    config, line = apply_finetune_recipe(tiny, section)
    assert (getattr(config, section).learning_rate, getattr(config, section).distill_learning_rate) == (7.3e-4, 1.5e-3)
    assert line == ("fine-tuning: learning rate 7.3e-04, self-distillation 1.5e-03 for hidden 128 x 2 layers "
                    "[uer.recipe; --learning_rate / --distill_learning_rate override]")
    given = load_config(ROOT / "models" / "bert" / "tiny.yaml", {f"{section}.learning_rate": 1e-4})
    config, line = apply_finetune_recipe(given, section)
    assert (getattr(config, section).learning_rate, getattr(config, section).distill_learning_rate) == (1e-4, 1.5e-3)
    assert "learning rate 1.0e-04 (given), self-distillation 1.5e-03" in line
    both = load_config(ROOT / "models" / "bert" / "tiny.yaml",
                       {f"{section}.learning_rate": 1e-4, f"{section}.distill_learning_rate": 2e-4})
    assert apply_finetune_recipe(both, section) == (both, None)
