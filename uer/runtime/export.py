"""``python -m uer export MODEL --format onnx OUT/``: a trained FastBERT as ONNX files, for users who
deploy on another engine.

    OUT/step_0.onnx ... step_{L-1}.onnx   layer i + its branch (step 0 embeds: src, seg -> hidden, logits)
    OUT/full.onnx                         the full model: src, seg -> the teacher's logits
    OUT/vocab.txt                         the tokenizer's vocabulary
    OUT/manifest.json                     what each file takes and gives, the labels, the exit rule, sha256s

Batch and length are dynamic (see :mod:`uer.runtime.onnx_graph`). Early exit on another engine:
run step 0, compute the entropy of ``softmax(logits)`` normalised by ``log(labels)``, keep the
rows above ``speed`` and feed their ``hidden`` (and ``seg``) to step 1, and so on; the last step's
logits are the teacher's. Every file is written atomically and the manifest last: a folder with
a manifest holds a complete export. ``--quantize int8`` writes ONNX Runtime's dynamic int8 graphs
(``DynamicQuantizeLinear`` / ``MatMulInteger``, standard ONNX operators).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from uer.utils.atomic import atomic_open
from uer.utils.cli import UsageError

FORMAT = "uer-fastbert-onnx"
VERSION = 1


def _write(path: Path, data: bytes) -> str:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def export_onnx(model_path: str | os.PathLike, out_dir: str | os.PathLike, quantize: str | None = None) -> dict:
    """Writes the export (module docstring) and returns its manifest."""
    from uer.fastbert.predictor import FastBertClassifier
    from uer.runtime.onnx_graph import OPSET, build_graphs, unsupported
    from uer.runtime.onnxrt import available, quantize_int8

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise UsageError(f"OUT {out} is not empty and holds no earlier export (no manifest.json): refusing to write into it")
    from uer.checkpoint import CheckpointError

    try:
        clf = FastBertClassifier.load(model_path, runtime="eager")
    except CheckpointError:
        raise
    except ValueError as e:  # not a run_fastbert.py model, vocabulary mismatch ...
        raise UsageError(f"{model_path}: {e}") from None
    model = clf.runner.model
    why = unsupported(model)
    if why is not None:
        raise UsageError(f"{model_path}: cannot export to ONNX: {why}")
    missing = available() if quantize is not None else None
    if missing is not None:
        raise UsageError(f"--quantize {quantize}: {missing}")
    graphs = build_graphs(model)
    models = graphs.steps + [graphs.full]
    blobs = quantize_int8(models) if quantize == "int8" else [m.SerializeToString() for m in models]
    names = [f"step_{i}.onnx" for i in range(len(graphs.steps))] + ["full.onnx"]
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "manifest.json"
    if stale.exists():
        stale.unlink()  # the folder is incomplete from here until the new manifest is written
    sha = {name: _write(out / name, blob) for name, blob in zip(names, blobs)}
    sha["vocab.txt"] = _write(out / "vocab.txt", "".join(f"{t}\n" for t in clf.tokenizer.vocab.tokens).encode("utf-8"))
    tok = dataclasses.asdict(model.config.tokenizer)
    tok.pop("vocab_path", None)  # the copy beside the graphs is the one to use
    manifest = {
        "format": FORMAT, "version": VERSION, "opset": OPSET, "quantize": quantize,
        "source": str(Path(model_path).resolve()),
        "labels": clf.labels, "layers_num": len(graphs.steps), "hidden_size": graphs.hidden_size,
        "seq_length": clf.seq_length, "pair": clf.pair,
        "tokenizer": tok, "vocab": "vocab.txt",
        "steps": names[:-1], "full": names[-1],
        "inputs": {"src": "int64 (batch, length) token ids, [CLS] first",
                   "seg": "int64 (batch, length) segment ids: 1 first text, 2 second, 0 padding",
                   "hidden": "float32 (batch, length, hidden_size): the previous step's hidden_out (steps 1..)"},
        "outputs": {"hidden_out": "float32 (batch, length, hidden_size), the input of the next step",
                    "logits": "float32 (batch, labels) of this step's branch (full.onnx: the teacher's, after every layer)"},
        "exit_rule": "entropy (FastBERT): leave after step i when -sum(p log p) / log(labels) < speed, "
                     "p = softmax(logits); speed 0 = the full model",
        "sha256": sha,
    }
    with atomic_open(out / "manifest.json") as f:
        json.dump(manifest, f, indent=2, default=str)
        f.write("\n")
    return manifest
