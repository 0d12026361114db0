"""The exit-step runtimes (uer.runtime): every one equals the eager modules on every exit layer
(fp32, 1e-5) over the encoder and branch variants they accept, refuses the others with a reason,
and ``auto`` names what it chose. int8 is reported apart: close to fp32, never the default."""
import pytest
import torch

from tests.helpers import TINY, tiny_config
from tests.test_fastbert import LABELS, batch
from uer import build_model
from uer.fastbert.inference import EarlyExit
from uer.runtime import make_runtime, runtime_names
from uer.runtime import unsupported as unsupported_to_run
from uer.runtime.onnx_graph import unsupported

VARIANTS = {
    "bert": ({}, {}, "first"),
    "pre_ln_rms_gelu_fast": ({"layernorm_positioning": "pre", "layernorm": "rms", "act": "gelu_fast"}, {}, "mean"),
    "albert_shared_relu": ({"parameter_sharing": True, "act": "relu"}, {"emb_size": 16}, "max"),
    "silu_no_bias": ({"act": "silu", "bias": False}, {}, "first"),
}


def model_for(encoder: dict, embedding: dict, pooling: str, layers: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_config(targets=[{"name": "fastbert", "branch_size": 16, "branch_heads_num": 2, "pooling": pooling}],
                      encoder={"layers_num": layers, **encoder}, embedding=embedding)
    model = build_model(cfg, vocab_size=TINY["vocab"], labels_num=LABELS)
    with torch.no_grad():
        for p in model.parameters():  # away from the initialisation: norms, biases and all
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_every_runtime_is_listed():
    assert {"auto", "eager", "fused", "onnxruntime"} <= set(runtime_names())


@pytest.mark.parametrize("runtime", ["fused", "onnxruntime"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_runtime_equals_eager_on_every_exit_layer(variant, runtime):
    model = model_for(*VARIANTS[variant])
    assert unsupported(model) is None
    src, seg = batch(n=6)
    eager = EarlyExit(model, runtime="eager")
    other = EarlyExit(model, runtime=runtime)
    assert other.name == runtime, other.reason
    torch.testing.assert_close(other.layer_probs(src, seg), eager.layer_probs(src, seg), rtol=0, atol=1e-5)
    torch.testing.assert_close(other.full_model_probs(src, seg), eager.full_model_probs(src, seg), rtol=0, atol=1e-5)
    for speed in (0.3, 0.6):  # shrinking batches through the runtime: same exits as eager
        a, b = other.predict(src, seg, speed), eager.predict(src, seg, speed)
        assert torch.equal(a.exit_layer, b.exit_layer)
        torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)


def test_the_runtime_runs_onnx_runtimes_attention_and_the_export_keeps_standard_operators():
    """In process, each layer's self-attention is ONNX Runtime's fused ``Attention`` (``QAttention``
    in int8); the files other engines load have standard operators only.
    Both compute what eager does (the test above; here the graphs themselves, padding included)."""
    import numpy as np
    import onnxruntime as ort

    from uer.runtime.onnx_graph import build_graphs
    from uer.runtime.onnxrt import session_options

    model = model_for(*VARIANTS["pre_ln_rms_gelu_fast"])
    fused, plain = build_graphs(model, fused_attention=True), build_graphs(model)
    ops = lambda graph: [(n.domain, n.op_type) for n in graph.graph.node]  # noqa: E731
    assert ops(fused.full).count(("com.microsoft", "Attention")) == 3
    assert all(domain == "" for graph in plain.steps + [plain.full] for domain, _ in ops(graph))
    src, seg = batch(n=6)
    feed = {"src": src.numpy(), "seg": seg.numpy()}
    run = lambda graph: ort.InferenceSession(graph.SerializeToString(), session_options(1),  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, feed)
    (h1, l1), (h2, l2) = run(fused.full), run(plain.full)
    real = seg.numpy() > 0
    np.testing.assert_allclose(h1[real], h2[real], rtol=0, atol=1e-5)
    np.testing.assert_allclose(l1, l2, rtol=0, atol=1e-5)


def test_unexportable_models_are_refused_with_the_reason():
    model = model_for({"mask": "causal"}, {}, "first")
    assert "mask 'causal'" in unsupported(model)
    with pytest.raises(ValueError, match="runtime 'onnxruntime': mask 'causal'"):
        make_runtime(model, "onnxruntime")
    auto = make_runtime(model, "auto")  # falls back to what can run it, and says why
    assert auto.name == "fused" and "mask 'causal'" in auto.reason


def test_alibi_runs_fused_and_exits_like_eager_and_onnx_refuses_it():
    model = model_for({"position_bias": "alibi"}, {}, "first")
    assert "position_bias 'alibi'" in unsupported(model)
    auto = make_runtime(model, "auto")
    assert auto.name == "fused" and "position_bias 'alibi'" in auto.reason
    src, seg = batch(n=6)
    eager, fused = EarlyExit(model, runtime="eager"), EarlyExit(model, runtime="fused")
    assert fused.name == "fused", fused.reason
    torch.testing.assert_close(fused.layer_probs(src, seg), eager.layer_probs(src, seg), rtol=0, atol=1e-5)
    for speed in (0.3, 0.6):  # shrinking batches: each sub-batch keeps its own rows of the ALiBi scores
        a, b = fused.predict(src, seg, speed), eager.predict(src, seg, speed)
        assert torch.equal(a.exit_layer, b.exit_layer)
        torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)


def test_auto_measures_and_names_its_choice():
    model = model_for({}, {}, "first")
    auto = make_runtime(model, "auto")
    assert set(auto.timings) == {"small", "large"}
    assert set(auto.timings["small"]) == {"fused", "onnxruntime"}
    assert "measured at load" in auto.reason
    src, seg = batch(n=6)
    torch.testing.assert_close(EarlyExit(model, runtime="auto").layer_probs(src, seg),
                               EarlyExit(model, runtime="eager").layer_probs(src, seg), rtol=0, atol=1e-5)


def test_int8_weights_are_within_half_a_step():
    """The scheme's own bound, the same on every CPU: each int8 weight, dequantized, is within half
    a quantisation step of the fp32 weight it stands for."""
    import onnx
    from onnx import numpy_helper

    from uer.runtime.onnx_graph import build_graphs
    from uer.runtime.onnxrt import quantize_int8

    plain, fused = build_graphs(model_for({}, {}, "first")).steps, build_graphs(model_for({}, {}, "first"), True).steps
    graphs = plain + fused  # MatMuls, and the fused graphs' QAttention weights
    checked = 0
    for graph, data in zip(graphs, quantize_int8(graphs)):
        fp32 = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
        int8 = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}
        for q in (n for n in int8 if n.endswith("_quantized")):
            w = q[: -len("_quantized")]
            scale, zero = int8[w + "_scale"].astype("float64"), int8[w + "_zero_point"].astype("float64")  # per channel: (N,)
            assert (abs((int8[q].astype("float64") - zero) * scale - fp32[w]) <= 0.5 * scale * (1 + 1e-5)).all(), w
            checked += 1
    assert checked >= 2 * len(graphs)
    qattention = [n for data in quantize_int8(fused) for n in onnx.load_from_string(data).graph.node if n.op_type == "QAttention"]
    assert len(qattention) == len(fused)  # one per layer, its weight among those checked above
    from uer.runtime.cpu import PORTABLE  # 7-bit weights, exact on every CPU: QAttention's too

    portable = [numpy_helper.to_array(i) for data in quantize_int8(fused, PORTABLE)
                for i in onnx.load_from_string(data).graph.initializer if i.name.endswith("_quantized")]
    assert portable and all(-64 <= int(w.min()) and int(w.max()) <= 64 for w in portable)


def test_int8_runs_agrees_with_fp32_and_only_where_asked():
    """How close int8 probabilities come depends on the CPU's int8 kernels (AVX2 errs more than
    VNNI): judged by labels, not by a tolerance tuned on one CPU."""
    model = model_for({}, {}, "first")
    src, seg = batch(n=8)
    fp32 = EarlyExit(model, runtime="eager").layer_probs(src, seg)
    int8 = EarlyExit(model, runtime="onnxruntime", quantize="int8")  # auto may keep fp32 where int8 is slower
    assert int8.name == "onnxruntime" and "int8" in int8.reason and int8.quantize == "int8"
    q = int8.layer_probs(src, seg)
    assert float((q - fp32).abs().max()) > 0  # quantized for real
    assert float((q.argmax(-1) == fp32.argmax(-1)).float().mean()) > 0.5  # the same model (chance: 1/3)
    assert EarlyExit(model).quantize is None  # fp32 unless asked
    with pytest.raises(ValueError, match="runs fp32 only"):
        make_runtime(model, "fused", quantize="int8")
    assert "fp32 only" in unsupported_to_run(model.config, "auto", "int8", kind="token")  # token exit: no int8
    with pytest.raises(ValueError, match="quantize must be"):
        make_runtime(model, "auto", quantize="int4")


def test_onnxruntime_leaves_the_users_own_sessions_alone(tmp_path):
    """No process-wide ONNX Runtime state (a global thread pool would make every later default
    session fail): after our runtime, a session with default options still loads and runs."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    make_runtime(model_for({}, {}, "first"), "onnxruntime")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    (y,) = ort.InferenceSession(str(path)).run(None, {"x": np.array([-1.0, 2.0], np.float32)})
    assert y.tolist() == [0.0, 2.0]


def test_one_name_list_per_kind_of_exit():
    from uer.runtime import RUNTIMES

    assert set(runtime_names("sentence")) == set(RUNTIMES.names())  # every registered sentence runtime is listed
    assert set(runtime_names("token")) == {"auto", "eager", "fused"} < set(runtime_names("sentence"))
    with pytest.raises(ValueError, match="unknown kind"):
        runtime_names("paragraph")


@pytest.mark.parametrize("path, runtime, quantize, kind, reason", [
    ("models/bert/tiny.yaml", "onnxruntime", "int8", "sentence", None),
    ("models/bert/tiny.yaml", "fused", None, "token", None),
    ("models/bert/tiny_alibi.yaml", "onnxruntime", None, "sentence", "position_bias 'alibi' is not exported"),
    ("models/bert/tiny_alibi.yaml", "auto", "int8", "sentence", "position_bias 'alibi' is not exported"),
    ("models/bert/tiny_alibi.yaml", "fused", None, "token", None),
    ("models/gpt2/small.yaml", "onnxruntime", None, "sentence", "mask 'causal' is not exported"),
    ("models/gpt2/small.yaml", "fused", None, "token", "tokens exit only under fully_visible attention"),
    ("models/gpt2/small.yaml", "fused", None, "sentence", None),
    ("models/rnn/lstm.yaml", "fused", None, "sentence", "encoder 'lstm' has no fused path"),
    ("models/rnn/lstm.yaml", "auto", None, "token", None),
    ("models/bert/tiny.yaml", "fused", "int8", "sentence", "runs fp32 only"),
])
def test_unsupported_answers_from_the_config_before_training(path, runtime, quantize, kind, reason):
    from uer.config import load_config

    why = unsupported_to_run(load_config(path), runtime, quantize, kind=kind)
    assert why is None if reason is None else reason in why, why


def test_unknown_names_are_errors_not_reasons():
    from uer.config import load_config

    config = load_config("models/bert/tiny.yaml")
    with pytest.raises(ValueError, match="unknown runtime 'onnx'; valid: auto, eager, fused, onnxruntime"):
        unsupported_to_run(config, "onnx")
    with pytest.raises(ValueError, match="unknown runtime 'onnxruntime'; valid: auto, eager, fused"):
        unsupported_to_run(config, "onnxruntime", kind="token")
    with pytest.raises(ValueError, match="quantize must be"):
        unsupported_to_run(config, "auto", "int4")


def built(encoder: dict, target: dict):
    from uer.config import config_from_dict

    torch.manual_seed(0)
    config = config_from_dict({"embedding": {"components": ["word", "pos", "seg"]},
                               "encoder": {"hidden_size": 32, "layers_num": 2, **encoder},
                               "target": {"components": [target]}})
    return build_model(config, vocab_size=TINY["vocab"], labels_num=LABELS).eval()


def test_fused_is_refused_where_it_cannot_run_and_auto_falls_back():
    from uer.tagging.inference import TokenExit

    lstm = built({"name": "lstm"}, {"name": "fastbert", "branch_size": 16, "branch_heads_num": 2})
    with pytest.raises(ValueError, match="runtime 'fused': encoder 'lstm' has no fused path"):
        make_runtime(lstm, "fused")
    auto = EarlyExit(lstm)
    assert auto.name == "eager" and "encoder 'lstm' has no fused path" in auto.reason
    src, seg = batch(n=4)
    torch.testing.assert_close(auto.layer_probs(src, seg), EarlyExit(lstm, runtime="eager").layer_probs(src, seg))

    causal = built({"name": "transformer", "heads_num": 4, "feedforward_size": 37, "mask": "causal"},
                   {"name": "token_exit", "branch_size": 16})
    with pytest.raises(ValueError, match="runtime 'fused': mask 'causal': tokens exit only under fully_visible"):
        TokenExit(causal, runtime="fused")
    runner = TokenExit(causal)
    assert runner.name == "eager" and "whole layers" in runner.reason
