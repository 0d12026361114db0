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
    assert other.backend == runtime, other.reason
    torch.testing.assert_close(other.layer_probs(src, seg), eager.layer_probs(src, seg), rtol=0, atol=1e-5)
    torch.testing.assert_close(other.full_model_probs(src, seg), eager.full_model_probs(src, seg), rtol=0, atol=1e-5)
    for speed in (0.3, 0.6):  # shrinking batches through the runtime: same exits as eager
        a, b = other.predict(src, seg, speed), eager.predict(src, seg, speed)
        assert torch.equal(a.exit_layer, b.exit_layer)
        torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)


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
    assert fused.backend == "fused", fused.reason
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


def test_int8_is_close_to_fp32_and_only_where_asked():
    model = model_for({}, {}, "first")
    src, seg = batch(n=8)
    fp32 = EarlyExit(model, runtime="eager").layer_probs(src, seg)
    int8 = EarlyExit(model, runtime="auto", quantize="int8")
    assert int8.backend == "onnxruntime" and "int8" in int8.reason and int8.quantize == "int8"
    q = int8.layer_probs(src, seg)
    assert 0 < float((q - fp32).abs().max()) < 0.1  # quantized for real, and still the same model
    assert EarlyExit(model).quantize is None  # fp32 unless asked
    with pytest.raises(ValueError, match="runs fp32 only"):
        make_runtime(model, "fused", quantize="int8")
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
