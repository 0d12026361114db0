"""A tagger trained by ``run_ner.py`` as ONNX graphs of its token-exit steps (``python -m uer export``).

    step_0:  src (B, T) int64, seg (B, T) int64             -> hidden_out (B, T, H), logits (B, T, labels)
    step_i:  hidden (B, T, H) float32, seg, stay (B, T) bool -> hidden_out, logits
    full:    src, seg                                       -> hidden_out (the last layer's), logits of the teacher

Step ``i`` is layer ``i`` on every token followed by branch ``i`` (``TokenBranch``) on every
token; the exit test is the caller's, as the manifest states it (:func:`token_exit_rule`). Token
exit's frozen vectors are in the graphs: ``stay`` marks the tokens still in, and ``hidden_out``
keeps the input vector of every other token. Layer ``i`` computes keys and values from all of its
input (frozen vectors included) and new vectors for everyone, of which only those of ``stay`` are
kept: the same numbers as :class:`uer.tagging.inference.TokenExit`, which computes the queries of
the remaining tokens only (the saving the graphs give up, as the full layer is one call).

The graphs are written by :mod:`uer.runtime.onnx_graph`'s writer from the layers' and the
branches' own ``compute`` methods (never traced), so they are the maths the model trains with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uer.runtime.onnx_graph import GraphWriter, StepGraphs, _embed, _layer, _model, full_graph
from uer.tagging.inference import token_exit_target
from uer.tagging.targets import TokenBranch

TAGGER_FORMAT = "uer-tagger-onnx"


def unsupported(model: nn.Module) -> str | None:
    """Why the tagger's graphs cannot express ``model`` exactly (None: they can): the config rules
    of the classifier's export (``uer.runtime.support``), and branches of the kind written here."""
    from uer.runtime.support import onnx_unsupported, unexported_modules

    why = onnx_unsupported(model.config)  # the config alone: the classifier's module checks look for its branches
    return why if why is not None else unexported_modules(model, token_exit_target, TokenBranch)


class _TokenBranchWriter:
    """Executes ``TokenBranch.compute`` on a :class:`GraphWriter` (dropout is off at inference)."""

    def __init__(self, g: GraphWriter) -> None:
        self.g = g

    def linear_in(self, module: nn.Linear, x: str, dropout: nn.Module | None = None) -> str:
        return self.g.matmul(module, x)

    def tanh(self, x: str) -> str:
        return self.g.op("Tanh", [x])


def build_tagger_graphs(model: nn.Module) -> StepGraphs:
    """Every token-exit step's graph and the full model's, in memory (module docstring)."""
    from onnx import TensorProto, helper

    why = unsupported(model)
    if why is not None:
        raise ValueError(f"cannot export to ONNX: {why}")
    target = token_exit_target(model)
    hidden_size, labels, layers = model.encoder.output_size, target.labels_num, model.encoder.layers_num
    ids = lambda n: helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "length"])  # noqa: E731
    hid = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "length", hidden_size])  # noqa: E731
    out = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "length", labels])  # noqa: E731
    stay = helper.make_tensor_value_info("stay", TensorProto.BOOL, ["batch", "length"])

    def branch(g: GraphWriter, i: int, x: str) -> str:
        return target.branches[i].compute(x, _TokenBranchWriter(g))

    steps = []
    with torch.no_grad():
        for i in range(layers):
            g = GraphWriter()
            g.masks("seg")
            x = _embed(g, model, "src", "seg") if i == 0 else "hidden"
            new = _layer(g, model, i, x)
            if i > 0:  # the tokens that left keep their frozen vectors
                new = g.op("Where", [g.op("Unsqueeze", ["stay", g.ints(2)]), new, x], "frozen")
            g.nodes.append(helper.make_node("Identity", [new], ["hidden_out"]))
            g.nodes.append(helper.make_node("Identity", [branch(g, i, new)], ["logits"]))
            first = [ids("src"), ids("seg")] if i == 0 else [hid("hidden"), ids("seg"), stay]
            steps.append(_model(g, first, [hid("hidden_out"), out("logits")], f"tagger_step_{i}"))
        full = full_graph(model, branch, [ids("src"), ids("seg")], [hid("hidden_out"), out("logits")], "tagger_full")
    return StepGraphs(steps, full, hidden_size, labels)


def token_exit_rule(per_row_rule: str, window: int) -> str:
    """The classifier's rule of a policy (``uer.runtime.export.EXIT_RULES``), read per token, with
    the window and the frozen vectors of token exit."""
    near = ("window 0: each token on its own" if window == 0 else
            f"window {window}: a token leaves only when every real token within +-{window} positions of its row "
            "(itself included) may leave too; a token that has already left counts as one that may")
    return (f"per token: every real token (seg > 0, [CLS] included) still in the network is a row of the rule "
            f"{per_row_rule}; {near}. A token that leaves after step i keeps that step's p (its tags: argmax) "
            "and its hidden vector is frozen from then on: feed step i+1 hidden = step i's hidden_out and "
            "stay = the tokens still in (hidden_out keeps the input vector where stay is false; frozen tokens "
            "still give keys and values). The last step lets every token leave; speed >= 1 lets every token "
            "leave after step 0; speed 0 = the full model (full.onnx)")


def tokenization(extra: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """How text becomes ``src`` for this tagger (from what ``run_ner.py`` stored; ``tokenizer``: the
    model config's tokenizer section)."""
    if extra.get("data_format") == "conll":
        options = {k: v for k, v in vars(tokenizer).items() if k not in ("vocab_path", "spm_model_path")}
        return {
            "unit": "word",
            "ids": f"each white-space separated word split into sub-tokens by the {tokenizer.name!r} tokenizer "
                   f"({options}) on vocab.txt (bert: basic tokenization then WordPiece; char: one token per character); "
                   "a word with no piece is [UNK]",
            "tags": "a word's tag is its FIRST sub-token's; the other sub-tokens' tags are not used",
            "row": "[CLS] then whole words' sub-tokens, up to seq_length - 1, seg 1 (0: padding), no [SEP]; the next "
                   "word that does not fit starts the next row; [CLS]'s tag is not used",
        }
    return {
        "unit": "character",
        "ids": "each character's id in vocab.txt: the character itself, else lower-cased, else NFKC-normalised, "
               "else [UNK]; white space is no token",
        "row": "[CLS] then up to seq_length - 1 tokens, seg 1 (0: padding), no [SEP]; a longer sentence is cut "
               "into consecutive rows; [CLS]'s tag is not used",
    }


class ExportedTagger:
    """The exported files run on ONNX Runtime by the manifest's token-exit rule: what an engine
    outside uer does with them, written once here (a test reads the rule independently and checks
    both against :class:`uer.tagging.inference.TokenExit`).

        tagger = ExportedTagger("out/onnx")                       # fp32 or int8, as exported
        probs, exits = tagger.predict(src, seg, speed=0.3)        # numpy (B, T) int64 -> (B, T, C), (B, T)

    ``speed`` / ``window`` / ``policy``: None = the manifest's (its speed, else 0: the full model)."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import json

        import onnxruntime as ort

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        if self.manifest.get("format") != TAGGER_FORMAT:
            raise ValueError(f"{self.folder}: not a tagger export (format {self.manifest.get('format')!r})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        load = lambda name: ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])  # noqa: E731
        self.steps = [load(name) for name in self.manifest["steps"]]
        self.full = load(self.manifest["full"])
        self.labels = list(self.manifest["labels"])

    def predict(self, src, seg, speed: float | None = None, window: int | None = None, policy: Any = None):
        from uer.exit.policies import resolve

        src = np.ascontiguousarray(src, dtype=np.int64)
        seg = np.ascontiguousarray(seg, dtype=np.int64)
        speed = float(self.manifest.get("speed") or 0.0) if speed is None else float(speed)
        window = int(self.manifest.get("window", 0)) if window is None else int(window)
        rule = resolve(self.manifest["exit_policy"] if policy is None else policy)
        real = seg > 0
        layers = len(self.steps)
        if rule.never_early(speed):  # the full model, as TokenExit runs it
            (logits,) = self.full.run(["logits"], {"src": src, "seg": seg})
            return _softmax(logits) * real[..., None], np.where(real, layers, 0)
        probs_out = np.zeros((*src.shape, len(self.labels)), np.float32)
        exit_out = np.zeros(src.shape, np.int64)
        stay = real.copy()
        state = rule.start(int(real.sum()), len(self.labels), layers, speed)  # one row per token still in, row-major
        hidden = None
        for i, session in enumerate(self.steps):
            feeds = {"src": src, "seg": seg} if i == 0 else {"hidden": hidden, "seg": seg, "stay": stay}
            hidden, logits = session.run(["hidden_out", "logits"], feeds)
            probs = _softmax(logits)
            where = np.flatnonzero(stay)  # the tokens still in, in the order of the policy's rows
            leave = rule.exits(torch.from_numpy(probs.reshape(-1, probs.shape[-1])[where]), i, state,
                               last=i == layers - 1).numpy()
            if window > 0 and not leave.all():  # with its neighbours only (a token that left counts as ready)
                doubt = np.zeros(stay.size, bool)
                doubt[where] = ~leave
                doubt = torch.from_numpy(doubt.reshape(stay.shape).astype(np.float32))[:, None]
                width = min(window, stay.shape[1])
                pooled = torch.nn.functional.max_pool1d(doubt, 2 * width + 1, stride=1, padding=width)
                leave = pooled.reshape(-1).numpy()[where] == 0
            gone = where[leave]
            probs_out.reshape(-1, probs.shape[-1])[gone] = probs.reshape(-1, probs.shape[-1])[gone]
            exit_out.reshape(-1)[gone] = i + 1
            stay.reshape(-1)[gone] = False
            if not stay.any():
                break
            state = state.select(torch.from_numpy(np.flatnonzero(~leave)))
        return probs_out, exit_out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)
