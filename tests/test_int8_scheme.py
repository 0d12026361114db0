"""int8 chosen per CPU and proven per CPU (uer.runtime.cpu), ONNX Runtime's provider per device
(uer.runtime.support.ort_providers), auto keeping fp32 where int8 is slower, and the run report's
int8 verdict.

The scheme choice is a pure function of a CPU's features: tested here for the CPUs it must serve
(AVX2-only, AVX-512 without VNNI, VNNI, AMX, ARM), not for this machine. What int8 must give is
judged by bounds derived from the scheme, which hold on every CPU whose kernels do not saturate:
a quantized MatMul is within the error its two quantization steps allow, on inputs built to
saturate ``VPMADDUBSW`` with 8-bit weights; the int8 model agrees with fp32 on most labels."""
import json

import numpy as np
import pytest
import torch

from tests.test_fastbert import LABELS, batch
from tests.test_runtime import model_for
from uer.runtime.cpu import (PORTABLE, CpuFeatures, Int8Scheme, cpu_features, int8_scheme, parse_cpuinfo,
                             this_cpu_scheme, torch_features)

X86 = "x86_64"
CPUS = {  # name: (features, reduce_range and per_channel expected, the feature the reason must name)
    "AMD EPYC, AVX2 only": (CpuFeatures(X86, frozenset({"sse4_1", "avx2", "fma"}), "test"), True, "avx2"),
    "Skylake-SP, AVX-512 without VNNI": (CpuFeatures(X86, frozenset({"avx2", "fma", "avx512f", "avx512bw"}), "test"),
                                          True, "avx512bw"),
    "Cascade Lake, AVX-512 VNNI": (CpuFeatures(X86, frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}), "test"),
                                   False, "avx512_vnni"),
    "Alder Lake, AVX-VNNI": (CpuFeatures(X86, frozenset({"avx2", "fma", "avx_vnni"}), "test"), False, "avx_vnni"),
    "Sapphire Rapids, AMX": (CpuFeatures(X86, frozenset({"avx2", "avx512bw", "avx512_vnni", "amx_int8", "amx_bf16"}),
                                         "test"), False, "amx_int8"),
    "Graviton, ARM64": (CpuFeatures("aarch64", frozenset({"asimd", "asimddp", "i8mm"}), "test"), False, "aarch64"),
    "an x86 whose flags were not read": (CpuFeatures(X86, frozenset(), "test"), True, "no AVX2"),
    "RISC-V": (CpuFeatures("riscv64", frozenset(), "test"), True, "riscv64"),
}


@pytest.mark.parametrize("cpu", CPUS)
def test_the_scheme_follows_the_cpu_features(cpu):
    features, reduced, named = CPUS[cpu]
    scheme = int8_scheme(features)
    assert scheme.reduce_range == reduced and scheme.per_channel  # one scale per output column on every CPU
    assert scheme.weight_type == "QInt8" and scheme.op_types == ("MatMul", "Attention")  # embedding lookups stay fp32
    assert named in scheme.reason and "\n" not in scheme.reason
    if features.arch == X86 and not features.flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        # VPMADDUBSW's int16 pair sum: never a scheme that saturates where the kernel saturates
        assert scheme.largest_pair <= 32767 and "VPMADDUBSW" in scheme.reason
    if reduced:
        assert scheme.exact_everywhere and scheme.weight_levels == (-64, 64)
    else:  # no saturation on this CPU: full 8-bit weights, the finer step
        assert scheme.weight_levels == (-127, 127) and not scheme.exact_everywhere


def test_the_portable_scheme_is_exact_everywhere_and_says_why():
    assert PORTABLE.exact_everywhere and PORTABLE.weight_levels == (-64, 64)
    assert PORTABLE.largest_pair == 2 * 255 * 64 == 32640
    assert Int8Scheme(reduce_range=False, per_channel=True, reason="x").largest_pair == 2 * 255 * 127  # > 32767
    assert "[-127, 127] (full range), per-channel, MatMul/Attention only" in Int8Scheme(False, True, "x").describe()
    options = PORTABLE.quantize_dynamic_options()
    assert (options["reduce_range"], options["per_channel"], options["op_types_to_quantize"]) == (True, True, ["MatMul", "Attention"])
    assert json.loads(json.dumps(PORTABLE.as_dict()))["exact_on_every_cpu"] is True


def test_cpu_features_are_read_from_cpuinfo_or_torch_and_never_crash():
    x86 = parse_cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_1 avx2 fma\n\n"
                        "processor\t: 1\nflags\t\t: fpu\n", X86)
    assert x86.flags == {"fpu", "sse4_1", "avx2", "fma"} and x86.model == "AMD EPYC 7B13"  # the first processor's
    assert x86.summary() == "AMD EPYC 7B13, x86_64: sse4_1 avx2 fma (/proc/cpuinfo)"
    arm = parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd40\n",
                        "aarch64")
    assert {"asimd", "asimddp", "i8mm"} <= arm.flags and not int8_scheme(arm).reduce_range
    avx512 = torch_features(X86, "AVX512")  # torch's capability cannot tell VNNI: the safe scheme
    assert "avx512f" in avx512.flags and int8_scheme(avx512).exact_everywhere
    assert int8_scheme(torch_features(X86, "DEFAULT")).exact_everywhere
    here = cpu_features()
    assert here is cpu_features()  # read once
    assert here.arch and "\n" not in here.summary()
    assert this_cpu_scheme() == int8_scheme(here)


def single_matmul(k: int, n: int):
    from onnx import TensorProto, helper, numpy_helper

    gen = np.random.default_rng(0)
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    w = (signs * gen.uniform(0.9, 1.0, (k, n))).astype(np.float32)  # every pair of a column: one sign, near the max
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), w


@pytest.mark.parametrize("which", ["this CPU's", "portable"])
def test_a_quantized_matmul_is_within_the_bound_of_its_two_steps(which):
    """x >= 0 near its max quantizes to uint8 near 255, w near +-1 to int8 near +-127 (full range): two
    such products add to ~58,000, past the int16 that VPMADDUBSW holds. With the scheme chosen for
    this CPU (and with the portable one on any CPU) no product saturates, so the int8 result equals
    exact integer arithmetic on the quantized values, and its error is bounded by the quantization
    steps alone: |y8 - y| <= sum_k (|w_k| sx/2 + |x_k| sw/2 + sx sw/4), plus float rounding."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from uer.runtime.onnxrt import quantize_int8

    scheme = this_cpu_scheme() if which == "this CPU's" else PORTABLE
    k, n = 64, 6
    model, w = single_matmul(k, n)
    (data,) = quantize_int8([model], scheme)
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}
    q, sw = weights["w_quantized"].astype(np.int64), weights["w_scale"].astype(np.float64)
    lo, hi = scheme.weight_levels
    assert lo <= q.min() and q.max() <= hi and max(-q.min(), q.max()) >= hi - 1  # the scheme's levels, used in full
    assert sw.size == (n if scheme.per_channel else 1)
    x = np.random.default_rng(1).uniform(0.9, 1.0, (4, k)).astype(np.float32)
    (y8,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    exact = x.astype(np.float64) @ w.astype(np.float64)
    sx = float(x.max()) / 255  # DynamicQuantizeLinear's step for x >= 0: the range [0, max] in 255 steps
    sw = np.broadcast_to(sw, (n,))
    bound = np.abs(w).sum(0) * sx / 2 + np.abs(x).sum(1, keepdims=True) * sw / 2 + k * sx * sw / 4
    rounding = 1e-5 * (np.abs(x) @ np.abs(w))
    assert (np.abs(y8 - exact) <= bound + rounding).all(), float((np.abs(y8 - exact) / bound).max())
    # the inputs do test saturation: with 8-bit weights every pair of every column would pass the
    # int16, and what the clamping drops would lie far outside the bound
    xq = np.rint(x / sx).astype(np.int64)
    s8 = float(np.abs(w).max()) / 127
    q8 = np.rint(w / s8).astype(np.int64)
    pairs = np.abs(xq[:, 0::2, None] * q8[None, 0::2] + xq[:, 1::2, None] * q8[None, 1::2])  # (m, k/2, n)
    assert pairs.min() > 32767
    assert ((pairs - 32767).sum(1) * sx * s8).min() > 10 * bound.max()


def run_steps(blobs, src, seg):
    """Every step graph in turn on the whole batch: (B, layers, labels) probabilities."""
    import onnxruntime as ort

    probs, hidden = [], None
    for i, blob in enumerate(blobs):
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        hidden, logits = session.run(None, {"src": src, "seg": seg} if i == 0 else {"hidden": hidden, "seg": seg})
        probs.append(torch.softmax(torch.from_numpy(logits), -1))
    return torch.stack(probs, 1)


@pytest.mark.parametrize("which", ["this CPU's", "portable"])
def test_int8_keeps_most_labels_and_each_weight_within_half_a_step(which):
    """The model level: each dequantized weight is within half a step of its fp32 weight and among
    the scheme's levels (read from the files), embedding lookups stay fp32, and the int8 steps run,
    differ from fp32 (quantized for real) and agree on most labels (a broken graph agrees on about
    1 in 3 of 3 labels)."""
    import onnx
    from onnx import numpy_helper

    from uer.runtime.onnx_graph import build_graphs
    from uer.runtime.onnxrt import quantize_int8

    scheme = this_cpu_scheme() if which == "this CPU's" else PORTABLE
    graphs = build_graphs(model_for({}, {}, "first")).steps
    blobs = quantize_int8(graphs, scheme)
    checked = 0
    for graph, data in zip(graphs, blobs):
        fp32 = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
        int8 = {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}
        assert not any(v.dtype == np.int8 and v.ndim == 2 and v.shape[0] == 99 for v in int8.values())  # no int8 vocabulary
        for name in (n for n in int8 if n.endswith("_quantized")):
            w = name[: -len("_quantized")]
            scale = int8[w + "_scale"].astype(np.float64)  # (N,) per channel, () per tensor
            zero = int8[w + "_zero_point"].astype(np.float64)
            assert scale.size == (fp32[w].shape[-1] if scheme.per_channel else 1), w
            lo, hi = scheme.weight_levels
            assert lo <= int8[name].min() and int8[name].max() <= hi, w
            assert (np.abs((int8[name] - zero) * scale - fp32[w]) <= 0.5 * scale * (1 + 1e-5)).all(), w
            checked += 1
    assert checked >= 2 * len(graphs)
    src, seg = (t.numpy() for t in batch(n=16))
    q, ref = run_steps(blobs, src, seg), run_steps([g.SerializeToString() for g in graphs], src, seg)
    assert q.shape == (16, len(graphs), LABELS) and bool(torch.isfinite(q).all())
    assert float((q - ref).abs().max()) > 0  # quantized for real
    assert float((q.argmax(-1) == ref.argmax(-1)).float().mean()) > 0.5


def test_the_int8_runtime_says_its_scheme_and_cpu():
    from uer.fastbert.inference import EarlyExit

    runner = EarlyExit(model_for({}, {}, "first"), runtime="onnxruntime", quantize="int8")
    scheme = this_cpu_scheme()
    assert runner.runtime.scheme == scheme
    assert scheme.describe() in runner.reason and scheme.reason in runner.reason
    assert cpu_features().summary() in runner.reason


# ---------------------------------------------------------------- ONNX Runtime's provider per device
CUDA_LIST = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("available, device, quantize, providers, said", [
    (["CPUExecutionProvider"], "cpu", None, ["CPUExecutionProvider"], "CPUExecutionProvider"),
    (CUDA_LIST, "cpu", "int8", ["CPUExecutionProvider"], "CPUExecutionProvider"),
    (CUDA_LIST, "cuda", None, [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"],
     "CUDAExecutionProvider on cuda:0, fp32 graphs"),
    (CUDA_LIST, "cuda:1", None, [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], "cuda:1"),
    (["AzureExecutionProvider", "CPUExecutionProvider"], "cuda", None, None,
     "has no CUDAExecutionProvider (available: AzureExecutionProvider, CPUExecutionProvider; pip install onnxruntime-gpu)"),
    (CUDA_LIST, "cuda", "int8", None, "int8 (ONNX Runtime's dynamic quantization) runs on the CPU only"),
    (CUDA_LIST, "mps", None, None, "the model is on mps"),
    ([], "cpu", None, None, "no CPUExecutionProvider (available: none)"),
])
def test_provider_choice_by_device_and_what_onnxruntime_offers(available, device, quantize, providers, said):
    from uer.runtime.support import ort_providers

    got, reason = ort_providers(available, device, quantize)
    assert got == providers and said in reason and "\n" not in reason


def test_the_runtime_names_its_provider_and_refuses_a_missing_one(monkeypatch):
    import onnxruntime as ort

    from uer.runtime import make_runtime

    model = model_for({}, {}, "first")
    assert "CPUExecutionProvider" in make_runtime(model, "onnxruntime").reason
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider"])
    with pytest.raises(ValueError, match="runtime 'onnxruntime': onnxruntime offers no CPUExecutionProvider"):
        make_runtime(model, "onnxruntime")


# ---------------------------------------------------------------- auto with int8: fp32 where int8 is slower
def test_auto_keeps_fp32_where_int8_is_slower_and_says_so(monkeypatch):
    from uer.runtime import auto, make_runtime

    def fake(candidates, *args, **kwargs):  # int8 the slowest for one text, the fastest for a batch
        assert set(candidates) == {"onnxruntime int8", "fused", "onnxruntime"}
        return {"small": {"onnxruntime int8": 0.003, "fused": 0.001, "onnxruntime": 0.002},
                "large": {"onnxruntime int8": 0.010, "fused": 0.030, "onnxruntime": 0.020}}

    monkeypatch.setattr(auto, "measure", fake)
    rt = make_runtime(model_for({}, {}, "first"), "auto", quantize="int8")
    assert rt.quantize == "int8" and rt.small.name == "fused" and rt.large.quantize == "int8"
    assert rt.name == "fused (batch <= 4), onnxruntime int8 (larger)"
    assert ("onnxruntime int8 slower than fp32 (1x24: onnxruntime int8 3.00 ms against fused 1.00 ms): fp32 runs there"
            in rt.reason)
    assert this_cpu_scheme().reason in rt.reason  # the int8 runtime's own reason: its scheme and the CPU

    monkeypatch.setattr(auto, "measure", lambda c, *a, **k: {p: {n: (0.5 if n == "onnxruntime int8" else 1.0) for n in c}
                                                              for p in ("small", "large")})
    rt = make_runtime(model_for({}, {}, "first"), "auto", quantize="int8")
    assert rt.name == "onnxruntime int8" and "onnxruntime int8 kept: the fastest at every probe" in rt.reason


# ---------------------------------------------------------------- the run report's verdict
WALLS = {"batch1": {"None": 1.0, "0.0": 1.0, "0.8": 0.5}, "batch32": {"None": 0.8, "0.0": 0.8, "0.8": 0.4}}


def walls(scale1: float, scale32: float) -> dict:
    return {"batch1": {k: v * scale1 for k, v in WALLS["batch1"].items()},
            "batch32": {k: v * scale32 for k, v in WALLS["batch32"].items()}}


def test_int8_is_kept_only_within_a_point_and_no_slower():
    from uer.fastbert.report import int8_verdict

    chosen = {"speed": 0.8, "accuracy": 0.74}
    kept = int8_verdict(chosen, walls(0.7, 0.9), WALLS, 0.744)
    assert kept["keep"] == "int8" and kept["speed"] == 0.8
    assert kept["wall_ratio"] == pytest.approx({"batch1": 0.7, "batch32": 0.9})
    assert "batch 1 x0.70, batch 32 x0.90" in kept["why"]
    slower = int8_verdict(chosen, walls(0.7, 1.2), WALLS, 0.744)  # faster alone, slower in batches: fp32
    assert slower["keep"] == "fp32" and "slower than fp32 at the same speed" in slower["why"]
    assert "batch 32 x1.20" in slower["why"]
    worse = int8_verdict(None, walls(0.5, 0.5), WALLS, 0.744)
    assert worse["keep"] == "fp32" and "no int8 speed keeps the accuracy within 1 point of the fp32 teacher's 0.7440" \
        == worse["why"]
    untimed = int8_verdict(chosen, {"batch1": {}, "batch32": {}}, {"batch1": {}, "batch32": {}}, 0.744)
    assert untimed["keep"] == "fp32" and "not timed" in untimed["why"]
    assert int8_verdict({"speed": 0.5, "micro_f1": 0.6}, walls(0.5, 0.5), {}, 0.6, "micro_f1")["keep"] == "fp32"


def test_an_export_records_its_scheme_and_can_be_made_for_every_cpu(tmp_path):
    """Files made on one machine run on another: the manifest names the scheme and the CPU it was
    chosen on, and ``int8_scheme=PORTABLE`` makes files whose weights (read back) never saturate."""
    import onnx
    from onnx import numpy_helper

    from tests.test_predictor_api import save_model
    from uer.runtime.export import export_onnx

    model_path = save_model(tmp_path / "run")
    manifest = export_onnx(model_path, tmp_path / "portable", quantize="int8", int8_scheme=PORTABLE)
    written = json.loads((tmp_path / "portable" / "manifest.json").read_text())
    assert written["int8"] == json.loads(json.dumps(manifest["int8"]))
    assert written["int8"]["scheme"]["exact_on_every_cpu"] and written["int8"]["note"] == "exact on every CPU"
    assert written["int8"]["scheme"]["reason"] == PORTABLE.reason and written["int8"]["made_on"] == cpu_features().summary()
    for name in [*written["steps"], written["full"]]:
        weights = [numpy_helper.to_array(i) for i in onnx.load(tmp_path / "portable" / name).graph.initializer
                   if i.name.endswith("_quantized")]
        assert weights and all(-64 <= int(w.min()) and int(w.max()) <= 64 for w in weights)
    here = export_onnx(model_path, tmp_path / "here", quantize="int8")["int8"]
    assert here["scheme"] == this_cpu_scheme().as_dict()
    assert (here["note"] == "exact on every CPU") == this_cpu_scheme().exact_everywhere
    assert export_onnx(model_path, tmp_path / "fp32")["int8"] is None


def test_the_export_command_makes_files_for_every_cpu(tmp_path, capsys):
    """``python -m uer export --int8_for every_cpu`` is the CLI's way to PORTABLE; without int8 it is
    refused in one line before anything is written."""
    from tests.test_predictor_api import save_model
    from uer.__main__ import main

    model_path = save_model(tmp_path / "run")
    assert main(["export", str(model_path), str(tmp_path / "fp32"), "--int8_for", "every_cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--int8_for every_cpu applies to --quantize int8 only" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "fp32").exists()  # refused before the folder is made
    assert main(["export", str(model_path), str(tmp_path / "any"), "--quantize", "int8", "--int8_for", "every_cpu"]) == 0
    written = json.loads((tmp_path / "any" / "manifest.json").read_text())
    assert written["int8"]["scheme"] == PORTABLE.as_dict()
