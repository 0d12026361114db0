"""A run_fastbert.py classifier or a run_ner.py tagger as a transformers model, head included.

(A plain ``tagging`` target -- dropout -> linear per token -- is transformers' own
``*ForTokenClassification``, and a ``cls`` target with ``first`` pooling its BERT / ALBERT / RoBERTa
``*ForSequenceClassification``: those go out as such, with no code.)

Neither head is one that transformers has: FastBERT's teacher branch is project -> self-attention
-> pool -> dense -> tanh -> labels (:class:`uer.targets.fastbert.Branch`), the tagger's teacher is
dense -> tanh -> labels per token (:class:`uer.tagging.targets.TokenBranch`), where
``BertForSequenceClassification`` is pooler -> linear and ``BertForTokenClassification`` one
linear. Mapping onto those would change the predictions, so the export ships the heads' code
(``modeling_uer_heads.py``, written beside the weights) and names it in ``config.json``'s
``auto_map``: ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``
(``...ForTokenClassification`` for a tagger) then gives the teacher's logits exactly. Labels
travel as ``id2label`` / ``label2id``. The student branches (early exits) are not exported: a
transformers model runs every layer.
"""
from __future__ import annotations

from typing import Any

import torch

from uer.config import Config
from uer.convert.archs import ARCHS, Arch, ConversionError, arch_named, guess_arch

MODULE = "modeling_uer_heads"

# backbone class, config class, whether it takes add_pooling_layer / token types (GPT-2's token
# types would be looked up in its word embedding: uer never feeds it any)
BACKBONES = {
    "bert": ("BertModel", "BertConfig", True, True),
    "roberta": ("RobertaModel", "RobertaConfig", True, True),
    "xlm-roberta": ("XLMRobertaModel", "XLMRobertaConfig", True, True),
    "albert": ("AlbertModel", "AlbertConfig", True, True),
    "electra": ("ElectraModel", "ElectraConfig", False, True),
    "gpt2": ("GPT2Model", "GPT2Config", False, False),
}

CODE = '''"""uer's task heads on a transformers backbone; written by ``python -m uer convert uer2hf``.

Load with ``trust_remote_code=True``, e.g.
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``.

- ``UerFastBertForSequenceClassification``: FastBERT's teacher branch on the last layer:
  project -> self-attention (padding masked) -> pool -> dense -> tanh -> labels.
- ``UerTaggerForTokenClassification``: the tagger's teacher branch on every token: dense -> tanh -> labels.
"""
import math

import torch
from torch import nn
from transformers import {config_cls}, {model_cls}, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput


class UerPreTrainedModel(PreTrainedModel):
    config_class = {config_cls}
    base_model_prefix = "{prefix}"

    def _init_weights(self, module):
        pass  # every weight comes from the exported checkpoint


def _backbone(config):
    return {model_cls}(config{pooling_arg})


def _run(backbone, input_ids, attention_mask, token_type_ids):
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    kwargs = {types_arg}
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
    return hidden, attention_mask.bool()


class FastBertBranch(nn.Module):
    def __init__(self, hidden_size, branch_size, heads_num, labels_num, pooling):
        super().__init__()
        self.heads_num, self.pooling = heads_num, pooling
        self.projection = nn.Linear(hidden_size, branch_size)
        self.qkv = nn.Linear(branch_size, 3 * branch_size)
        self.attention_output = nn.Linear(branch_size, branch_size)
        self.dense = nn.Linear(branch_size, branch_size)
        self.output = nn.Linear(branch_size, labels_num)

    def forward(self, hidden, real):  # (B, T, H), (B, T) bool -> (B, labels)
        x = self.projection(hidden)
        b, t, s = x.shape
        d = s // self.heads_num
        q, k, v = self.qkv(x).view(b, t, 3, self.heads_num, d).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, T, d)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~real[:, None, None, :], float("-inf"))
        values = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, s)
        out = self.attention_output(values)
        if self.pooling == "first":
            pooled = out[:, 0]
        elif self.pooling == "mean":
            w = real.to(out.dtype).unsqueeze(-1)
            pooled = (out * w).sum(1) / w.sum(1).clamp_min(1.0)
        else:
            pooled = out.masked_fill(~real.unsqueeze(-1), torch.finfo(out.dtype).min).amax(1)
        return self.output(torch.tanh(self.dense(pooled)))


class UerFastBertForSequenceClassification(UerPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.{prefix} = _backbone(config)
        head = config.uer_head
        self.classifier = FastBertBranch(config.{hidden_key}, head["branch_size"], head["branch_heads_num"],
                                         config.num_labels, head["pooling"])
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        hidden, real = _run(self.{prefix}, input_ids, attention_mask, token_type_ids)
        logits = self.classifier(hidden, real)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class TokenBranch(nn.Module):
    def __init__(self, hidden_size, branch_size, labels_num):
        super().__init__()
        self.dense = nn.Linear(hidden_size, branch_size)
        self.output = nn.Linear(branch_size, labels_num)

    def forward(self, hidden):  # (..., H) -> (..., labels)
        return self.output(torch.tanh(self.dense(hidden)))


class UerTaggerForTokenClassification(UerPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.{prefix} = _backbone(config)
        self.classifier = TokenBranch(config.{hidden_key}, config.uer_head["branch_size"], config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        hidden, real = _run(self.{prefix}, input_ids, attention_mask, token_type_ids)
        logits = self.classifier(hidden)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits[real], labels[real])
        return TokenClassifierOutput(loss=loss, logits=logits)
'''


def heads_code(arch: Arch, model_type: str) -> str:
    model_cls, config_cls, pooling, types = BACKBONES[model_type if model_type in BACKBONES else arch.name]
    return CODE.format(
        config_cls=config_cls, model_cls=model_cls, prefix=arch.prefix.rstrip("."),
        pooling_arg=", add_pooling_layer=False" if pooling else "",
        types_arg="{} if token_type_ids is None else {\"token_type_ids\": token_type_ids}" if types else "{}",
        hidden_key="n_embd" if arch.name == "gpt2" else "hidden_size",
    )


TOKEN_CLASSIFIERS = {"bert": "BertForTokenClassification", "roberta": "RobertaForTokenClassification",
                     "xlm-roberta": "XLMRobertaForTokenClassification", "albert": "AlbertForTokenClassification",
                     "electra": "ElectraForTokenClassification", "gpt2": "GPT2ForTokenClassification"}


# cls (pool first -> dense -> tanh -> labels): where transformers' *ForSequenceClassification computes
# exactly that, the HF names of (dense, output); ELECTRA's head uses gelu, GPT-2's reads the last token
SEQUENCE_CLASSIFIERS = {
    "bert": ("BertForSequenceClassification", "bert.pooler.dense", "classifier"),
    "albert": ("AlbertForSequenceClassification", "albert.pooler", "classifier"),
    "roberta": ("RobertaForSequenceClassification", "classifier.dense", "classifier.out_proj"),
    "xlm-roberta": ("XLMRobertaForSequenceClassification", "classifier.dense", "classifier.out_proj"),
}


def export_task_model(
    state: dict[str, Any], config: Config, meta: dict[str, Any], arch: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], Any, dict[str, bytes]]:
    """A run_fastbert.py / run_ner.py checkpoint -> ``(hf_state, hf_config, report, files)``."""
    from uer.convert.hf import uer_to_hf

    extra, weights = state["extra"], state["model"]
    names = [s.name for s in config.target.components]
    kind = next(k for k in ("fastbert", "token_exit", "tagging", "cls") if k in names)
    if kind in ("tagging", "cls"):  # heads transformers has: no code shipped
        labels = extra.get("id2label") or extra.get("labels")
        cls = auto = ""
    elif kind == "fastbert":
        labels = extra.get("labels")
        cls, auto = "UerFastBertForSequenceClassification", "AutoModelForSequenceClassification"
    else:
        labels = extra.get("id2label")
        cls, auto = "UerTaggerForTokenClassification", "AutoModelForTokenClassification"
    if not isinstance(labels, list) or not labels:
        written = "run_fastbert.py ('labels')" if kind == "fastbert" else "run_ner.py ('id2label')"
        if kind in ("tagging", "cls"):
            written = f"a {kind} run ('id2label' or 'labels')"
        raise ConversionError(f"the checkpoint has a {kind} target but no label list: not written by {written}")
    chosen = arch_named(arch) if arch is not None else ARCHS[meta["arch"]] if meta.get("arch") else guess_arch(config)
    backbone = {k: v for k, v in weights.items() if not k.startswith("target.")}
    hf_state, hf_config, report = uer_to_hf(backbone, config, {k: v for k, v in meta.items() if k in ("arch", "keep")}, chosen)
    # the base model's weights under its attribute name, whatever prefix the plain export chose
    hf_state = {(k if k.startswith(chosen.prefix) else chosen.prefix + k): v for k, v in hf_state.items()}

    model_type = hf_config.get("model_type", chosen.name)
    label_maps = {"id2label": {str(i): label for i, label in enumerate(labels)},
                  "label2id": {label: i for i, label in enumerate(labels)}}
    if kind == "cls":
        spec = next(s for s in config.target.components if s.name == "cls")
        if model_type not in SEQUENCE_CLASSIFIERS or spec.cfg.pooling != "first":
            raise ConversionError(f"a cls head (pool {spec.cfg.pooling!r} -> dense -> tanh) on {chosen.title} has no transformers "
                                  f"class that computes it; BERT, ALBERT, RoBERTa and XLM-R with pooling 'first' have one")
        name, dense, output = SEQUENCE_CLASSIFIERS[model_type]
        for uer, hf in (("dense", dense), ("output", output)):
            for p in ("weight", "bias"):
                hf_state[f"{hf}.{p}"] = weights[f"target.components.cls.{uer}.{p}"].detach().clone().contiguous()
        hf_config.update({"architectures": [name], **label_maps})
        hf_config.pop("add_pooling_layer", None)
        report.converted = len(hf_state)
        report.notes.append("load with AutoModelForSequenceClassification.from_pretrained(folder)")
        return hf_state, hf_config, report, {}
    if kind == "tagging":
        for p in ("weight", "bias"):
            hf_state[f"classifier.{p}"] = weights[f"target.components.tagging.output.{p}"].detach().clone().contiguous()
        hf_config.update({"architectures": [TOKEN_CLASSIFIERS.get(model_type, TOKEN_CLASSIFIERS[chosen.name])], **label_maps})
        hf_config.pop("add_pooling_layer", None)
        report.converted = len(hf_state)
        report.notes.append("load with AutoModelForTokenClassification.from_pretrained(folder)")
        return hf_state, hf_config, report, {}
    spec = next(s for s in config.target.components if s.name == kind)
    layers = config.encoder.cfg.layers_num
    teacher = f"target.components.{kind}.branches.{layers - 1}."
    if kind == "fastbert":
        pairs = {"projection": "projection", "self_attn.qkv": "qkv", "self_attn.output": "attention_output",
                 "dense": "dense", "output": "output"}
        head = {"kind": "fastbert", "branch_size": spec.cfg.branch_size, "branch_heads_num": spec.cfg.branch_heads_num,
                "pooling": spec.cfg.pooling}
    else:
        pairs = {"dense": "dense", "output": "output"}
        head = {"kind": "token_exit", "branch_size": spec.cfg.branch_size}
    for uer, hf in pairs.items():
        for p in ("weight", "bias"):
            key = f"{teacher}{uer}.{p}"
            if key not in weights:
                raise ConversionError(f"the checkpoint lacks {key}: not a {kind} model of {layers} layers")
            hf_state[f"classifier.{hf}.{p}"] = weights[key].detach().clone().contiguous()
    if weights[f"{teacher}output.weight"].shape[0] != len(labels):
        raise ConversionError(f"the teacher branch has {weights[f'{teacher}output.weight'].shape[0]} outputs, the label list {len(labels)}")
    hf_config.update({
        "architectures": [cls],
        "auto_map": {auto: f"{MODULE}.{cls}"},
        **label_maps,
        "uer_head": head,
    })
    hf_config.pop("add_pooling_layer", None)
    report.converted = len(hf_state)
    if layers > 1:
        report.notes.append(f"the teacher branch (layer {layers}) is the classifier; the {layers - 1} student branches "
                            "(early exits) are not exported: a transformers model runs every layer")
    report.notes.append(f"load with {auto}.from_pretrained(folder, trust_remote_code=True): the head's code is {MODULE}.py")
    return hf_state, hf_config, report, {f"{MODULE}.py": heads_code(chosen, model_type).encode()}
