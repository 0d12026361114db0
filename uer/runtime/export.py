"""``python -m uer export MODEL --format onnx OUT/``: a trained FastBERT as ONNX files, for users who
deploy on another engine.

    OUT/step_0.onnx ... step_{L-1}.onnx   layer i + its branch (step 0 embeds: src, seg -> hidden, logits)
    OUT/full.onnx                         the full model: src, seg -> the teacher's logits
    OUT/vocab.txt                         the tokenizer's vocabulary
    OUT/manifest.json                     what each file takes and gives, the labels, the exit rule, sha256s

Batch and length are dynamic (see :mod:`uer.runtime.onnx_graph`). Early exit on another engine:
run step 0, apply the manifest's ``exit_rule`` (the exit policy the model was trained with, e.g.
FastBERT's normalised entropy of ``softmax(logits)`` below ``speed``) and feed the ``hidden`` (and
``seg``) of the rows that stay to step 1, and so on; the last step's logits are the teacher's.
``speed`` is the one the run chose (null: none chosen; any value in [0, 1] works). Every file is
written atomically and the manifest last: a folder with a manifest holds a complete export; files
of an earlier export that the new one does not list are removed. A folder that is not empty, not
an earlier export (its ``manifest.json`` in our format) and not an export stopped before its
manifest (only the names an export writes) is refused untouched. ``--quantize int8`` writes ONNX
Runtime's dynamic int8 graphs (``DynamicQuantizeLinear`` / ``MatMulInteger``, standard ONNX operators)
by the scheme chosen for the CPU the export runs on (:mod:`uer.runtime.cpu`). The manifest's
``int8`` records that scheme and that CPU: files are made on one machine and run on another, and
full 8-bit weights (chosen on a VNNI, AMX or ARM machine) saturate in ONNX Runtime's u8 x s8
kernels on a CPU without VNNI (AVX2, AVX-512 without VNNI). ``int8.scheme.exact_on_every_cpu``
says whether the files are safe everywhere; ``python -m uer export ... --int8_for every_cpu``
(:func:`export_onnx` with ``int8_scheme=uer.runtime.cpu.PORTABLE``) makes files that are: 7-bit
per-channel weights.

A tagger written by ``run_ner.py`` exports the same way (:mod:`uer.tagging.export`): its steps
give per-token ``logits`` (B, T, labels), steps 1.. also take ``stay`` (B, T) bool, the tokens still
in (the others keep their frozen vectors), and the manifest (format ``uer-tagger-onnx``) states the
token-exit rule: the stored policy, speed and window, and how text becomes rows.

Two exports into one folder at once would interleave their files: ``python -m uer export`` holds
an :class:`~uer.utils.cli.OutputLock` on the folder; callers of :func:`export_onnx` keep to one
export per folder at a time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from uer.utils.atomic import atomic_open

FORMAT = "uer-fastbert-onnx"
TAGGER_FORMAT = "uer-tagger-onnx"  # a run_ner.py tagger (uer.tagging.export)
FORMATS = (FORMAT, TAGGER_FORMAT)
VERSION = 1
OWN_FILE = re.compile(r"step_\d+\.onnx|full\.onnx|vocab\.txt")  # what an export of ours may hold besides its manifest
TEMPORARY = re.compile(r"\.(step_\d+\.onnx|full\.onnx|vocab\.txt|manifest\.json)\..*\.tmp")  # atomic_open's, left by a kill

_AFTER = ("; the last step always lets every row leave, speed >= 1 lets every row leave after step 0, "
          "speed 0 = the full model")
# exit policy name -> its rule in words, from its spec and the number of labels; one per registered policy
EXIT_RULES: dict[str, Callable[[dict[str, Any], int], str]] = {
    "entropy": lambda spec, labels: (
        "entropy (FastBERT): leave after step i when -sum(p log p) / log(labels) < speed, p = softmax(logits)"),
    "confidence": lambda spec, labels: (
        "confidence: leave after step i when max(p) > 1 - speed * (1 - 1/labels), p = softmax(logits)"),
    "patience": lambda spec, labels: (
        "patience (PABEE): count = how many steps in a row argmax(logits) has equalled the step before's "
        "(0 at step 0 and after a change); leave after step i when count >= t, t = floor((1 - speed) * (layers_num - 1) + 0.5)"),
    "topk_entropy": lambda spec, labels: (
        f"topk_entropy (k = {spec['k']}): q = the top {min(spec['k'], labels)} of p = softmax(logits), divided by their sum; "
        f"leave after step i when -sum(q log q) / log({min(spec['k'], labels)}) < speed"),
    "multi_label_entropy": lambda spec, labels: (
        "multi_label_entropy (multi-label models): p_j = sigmoid(logits_j) per label, label j predicted when p_j > 0.5; "
        "leave after step i when max_j (-p_j log p_j - (1 - p_j) log(1 - p_j)) / log 2 < speed"),
    "regression_patience": lambda spec, labels: (
        f"regression_patience (regression models): v = logits[0], standardised (the value is v * std + mean, the "
        f"checkpoint's target_scale); count = how many steps in a row |v - v of the step before| <= speed * "
        f"{spec['max_tolerance']} (0 at step 0 and after a larger change); leave after step i when count >= t, "
        f"t = floor((1 - speed) * (layers_num - 1) + 0.5)"),
}


class ExportError(ValueError):
    """An export that cannot be done as asked; the message names the model, folder or option."""


def _write(path: Path, data: bytes) -> str:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def earlier_export(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the export ``out_dir`` holds (None: no folder, or an empty one); a folder that
    holds anything else -- someone's files, another program's ``manifest.json`` -- is an ExportError.
    Reads only: call it before writing anything."""
    out = Path(out_dir)
    if not out.exists() or not any(out.iterdir()):
        return None
    manifest = out / "manifest.json"
    if not manifest.is_file():
        if _interrupted(out):
            return {"format": FORMAT, "steps": [p.name for p in out.iterdir() if p.name.startswith("step_")]}
        raise ExportError(f"OUT {out} is not empty and holds no earlier export (no manifest.json): refusing to write into it")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") not in FORMATS:
        found = f"format {data.get('format')!r}" if isinstance(data, dict) else "not a JSON object"
        raise ExportError(f"OUT {out} holds a manifest.json that is not a uer export ({found}; ours say {FORMAT!r} "
                          f"or {TAGGER_FORMAT!r}): refusing to write into it")
    return data


def _interrupted(out: Path) -> bool:
    """An export stopped before its manifest: only files an export writes (and atomic_open's
    temporary ``.<name>.*.tmp`` of one), at least one of them a graph."""
    names = [p.name for p in out.iterdir()]
    return (any(n.endswith(".onnx") for n in names)
            and all(OWN_FILE.fullmatch(n) or TEMPORARY.fullmatch(n) for n in names))


def _listed(manifest: dict[str, Any]) -> set[str]:
    """The files an earlier manifest of ours lists (only names an export writes: never a path)."""
    names = [*manifest.get("steps", []), manifest.get("full"), manifest.get("vocab")]
    return {n for n in names if isinstance(n, str) and OWN_FILE.fullmatch(n)}


def exit_rule(policy: Any, labels: int) -> tuple[dict[str, Any], str]:
    """``(spec, rule in words)`` of an exit policy for the manifest; a policy without a written rule
    cannot be run from the manifest alone, so it is refused."""
    from uer.exit.checks import policy_spec

    spec = policy_spec(policy)
    if spec["name"] not in EXIT_RULES:
        raise ExportError(f"exit policy {spec['name']!r} has no rule the manifest can state "
                          f"(written for: {', '.join(sorted(EXIT_RULES))}); it cannot be exported")
    return spec, EXIT_RULES[spec["name"]](spec, labels) + _AFTER


def written_by(model_path: str | os.PathLike) -> str:
    """``run_ner.py`` for a tagger (it stores ``id2label``), else ``run_fastbert.py``; a file that is
    no checkpoint is left to the loader, whose error names it."""
    from uer.checkpoint import CheckpointError, read_checkpoint

    try:
        extra = read_checkpoint(model_path).get("extra")
    except CheckpointError:
        return "run_fastbert.py"
    return "run_ner.py" if isinstance(extra, dict) and "id2label" in extra else "run_fastbert.py"


def int8_record(scheme: Any) -> dict[str, Any]:
    """The manifest's ``int8``: the scheme the files were quantized with and the CPU it was chosen for."""
    from uer.runtime.cpu import cpu_features

    return {"scheme": scheme.as_dict(), "made_on": cpu_features().summary(),
            "note": ("exact on every CPU" if scheme.exact_everywhere else
                     "full 8-bit weights: exact on CPUs with VNNI/AMX and on ARM64; on x86 without VNNI (AVX2, "
                     "AVX-512 without VNNI) ONNX Runtime's u8 x s8 kernels saturate: export there, or with "
                     "uer.runtime.cpu.PORTABLE, for such machines")}


def export_onnx(model_path: str | os.PathLike, out_dir: str | os.PathLike, quantize: str | None = None,
                int8_scheme: Any = None) -> dict:
    """Writes the export (module docstring) of a classifier or a tagger and returns its manifest.

    ``int8_scheme``: a :class:`uer.runtime.cpu.Int8Scheme` for ``quantize="int8"`` (None: the one
    chosen for this CPU; ``uer.runtime.cpu.PORTABLE``: files exact on every CPU)."""
    from uer.exit.loading import stored_policy
    from uer.runtime.cpu import this_cpu_scheme
    from uer.runtime.onnxrt import available, quantize_int8

    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be None or 'int8', got {quantize!r}")
    out = Path(out_dir)
    before = earlier_export(out)
    if written_by(model_path) == "run_ner.py":
        from uer.tagging.export import build_tagger_graphs
        from uer.tagging.export import unsupported as tagger_unsupported
        from uer.tagging.predictor import NerTagger

        tagger = NerTagger.load(model_path, runtime="eager")  # a CheckpointError names the file and why
        model, extra, labels, vocab = tagger.runner.model, tagger.extra, tagger.id2label, tagger.vocab
        why, build, clf = tagger_unsupported(model), build_tagger_graphs, None
    else:
        from uer.fastbert.predictor import FastBertClassifier
        from uer.runtime.onnx_graph import build_graphs, unsupported

        clf = FastBertClassifier.load(model_path, runtime="eager")  # a CheckpointError names the file and why
        model, extra, labels, vocab = clf.runner.model, clf.extra, clf.labels, clf.tokenizer.vocab
        why, build, tagger = unsupported(model), build_graphs, None
    if why is not None:
        raise ExportError(f"{model_path}: cannot export to ONNX: {why}")
    missing = available() if quantize is not None else None
    if missing is not None:
        raise ExportError(f"--quantize {quantize}: {missing}")
    policy, rule = exit_rule(stored_policy(extra), len(labels))
    graphs = build(model)
    models = graphs.steps + [graphs.full]
    scheme = (int8_scheme or this_cpu_scheme()) if quantize == "int8" else None
    blobs = quantize_int8(models, scheme) if scheme is not None else [m.SerializeToString() for m in models]
    int8 = int8_record(scheme) if scheme is not None else None
    names = [f"step_{i}.onnx" for i in range(len(graphs.steps))] + ["full.onnx"]
    out.mkdir(parents=True, exist_ok=True)
    if before is not None:
        (out / "manifest.json").unlink(missing_ok=True)  # the folder is incomplete until the new manifest is written
        for stale in sorted(_listed(before) - {*names, "vocab.txt"}):
            (out / stale).unlink(missing_ok=True)  # e.g. step_3.onnx of a deeper model exported here before
        for leftover in out.iterdir():
            if TEMPORARY.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)  # half a file of an export that was killed
    sha = {name: _write(out / name, blob) for name, blob in zip(names, blobs)}
    sha["vocab.txt"] = _write(out / "vocab.txt", "".join(f"{t}\n" for t in vocab.tokens).encode("utf-8"))
    if tagger is not None:
        manifest = _tagger_manifest(tagger, model_path, quantize, graphs, names, policy, rule, sha)
    else:
        manifest = _classifier_manifest(clf, model_path, quantize, graphs, names, policy, rule, sha)
    manifest["int8"] = int8
    with atomic_open(out / "manifest.json") as f:
        json.dump(manifest, f, indent=2, default=str)
        f.write("\n")
    return manifest


def _tagger_manifest(tagger, model_path, quantize, graphs, names, policy, rule, sha) -> dict[str, Any]:
    from uer.runtime.onnx_graph import OPSET
    from uer.tagging.export import token_exit_rule, tokenization

    window = tagger.extra.get("window", 0)
    return {
        "format": TAGGER_FORMAT, "version": VERSION, "opset": OPSET, "quantize": quantize,
        "source": str(Path(model_path).resolve()),
        "labels": tagger.id2label, "layers_num": len(graphs.steps), "hidden_size": graphs.hidden_size,
        "seq_length": tagger.seq_length, "tokenization": tokenization(tagger.extra, tagger.runner.model.config.tokenizer),
        "vocab": "vocab.txt",
        "steps": names[:-1], "full": names[-1],
        "inputs": {"src": "int64 (batch, length) token ids, [CLS] first",
                   "seg": "int64 (batch, length) segment ids: 1 real token, 0 padding",
                   "hidden": "float32 (batch, length, hidden_size): the previous step's hidden_out (steps 1..)",
                   "stay": "bool (batch, length): the tokens still in the network (steps 1..); the others keep "
                           "their hidden vector"},
        "outputs": {"hidden_out": "float32 (batch, length, hidden_size), the input of the next step",
                    "logits": "float32 (batch, length, labels) of this step's branch at every token "
                              "(full.onnx: the teacher's, after every layer)"},
        "exit_policy": policy, "exit_rule": token_exit_rule(rule.removesuffix(_AFTER), window),
        "speed": tagger.extra.get("chosen_speed"), "window": window,
        "sha256": sha,
    }


def _plan_record(plan: Any) -> dict[str, Any] | None:
    """The manifest's ``exit_plan``: from which speed on the steps pay (None: the run made no plan)."""
    if plan is None:
        return None
    return {"from_speed": plan.from_speed, "measured_on": plan.measured_on,
            "rule": "at a speed below from_speed (at every speed when it is null) run full.onnx alone: every row "
                    "leaves at the last layer with the teacher's logits; early exit was slower there where the plan "
                    "was made"}


def _classifier_manifest(clf, model_path, quantize, graphs, names, policy, rule, sha) -> dict[str, Any]:
    from uer.runtime.onnx_graph import OPSET

    model = clf.runner.model
    tok = dataclasses.asdict(model.config.tokenizer)
    tok.pop("vocab_path", None)  # the copy beside the graphs is the one to use
    return {
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
        "exit_policy": policy, "exit_rule": rule, "speed": clf.extra.get("chosen_speed"),
        "exit_plan": _plan_record(clf.runner.exit_plan),
        "sha256": sha,
    }
