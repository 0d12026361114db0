"""The HuggingFace architectures a uer model can hold, each as a table: which HF tensor becomes which
uer tensor (and how), and how the two ``config`` formats translate.

    arch = arch_for(hf_config)                  # from config.json's model_type
    data = arch.uer_config(hf_config)           # the uer config (a dict, written as YAML)
    rules = arch.rules(config)                  # tensor rules, each invertible bit for bit

Every rule is exact both ways (a copy, a transpose, a concatenation, rows added or dropped), so
HF -> uer -> HF gives back every tensor bit for bit. What each architecture needs from uer:

- BERT: word + pos + seg, post-LN transformer; UER's segment row 0 is padding (one row added).
- RoBERTa / XLM-R: BERT's layers; positions start at ``pad_token_id + 1`` (the rows before are
  dropped on the way in and given back on the way out); a single token type is duplicated so that
  UER's second segment sees what RoBERTa gives every token.
- ALBERT: factorised embedding (``emb_size`` -> ``hidden_size`` through ``embedding.projection``),
  one layer shared by all (``parameter_sharing``); one layer group of one layer.
- ELECTRA (discriminator): BERT's layers after ``embeddings_project`` (``emb_size != hidden_size``).
- GPT-2: pre-LN causal decoder with a final norm, no segment embedding and no embedding norm;
  its Conv1D weights are stored transposed; the LM head is the word embedding with no bias.
"""
from __future__ import annotations

from typing import Any

import torch

from uer.config import Config

WORDS = "embedding.components.word.embedding.weight"
POS = "embedding.components.pos.embedding.weight"
SEG = "embedding.components.seg.embedding.weight"


class ConversionError(ValueError):
    """Weights or configs that do not fit the other side; the message names the tensors or keys."""


# ----------------------------------------------------------------------------- tensor rules
class Rule:
    """One uer tensor <-> one or more HF tensors. ``keep`` is what the way back needs that the uer
    tensor does not hold (stored with the checkpoint)."""

    def __init__(self, uer: str, *hf: str) -> None:
        self.uer, self.hf = uer, hf

    def to_uer(self, tensors: list[torch.Tensor], keep: dict[str, Any]) -> torch.Tensor:
        return tensors[0]

    def to_hf(self, tensor: torch.Tensor, keep: dict[str, Any]) -> list[torch.Tensor]:
        return [tensor]


class Copy(Rule):
    """The same tensor under another name."""


class Transposed(Rule):
    """GPT-2's Conv1D keeps (in, out) where ``nn.Linear`` keeps (out, in)."""

    def to_uer(self, tensors, keep):
        return tensors[0].t().contiguous()

    def to_hf(self, tensor, keep):
        return [tensor.t().contiguous()]


class Joined(Rule):
    """Separate query / key / value projections <-> uer's one fused ``qkv`` (q, k, v along dim 0)."""

    def to_uer(self, tensors, keep):
        return torch.cat(tensors, 0)

    def to_hf(self, tensor, keep):
        return list(tensor.split(tensor.shape[0] // len(self.hf), 0))


class TokenTypes(Rule):
    """HF token types 0..n-1 <-> UER segments 1..n with row 0 for padding. A model with a single
    type (RoBERTa) gives it to both UER segments, as RoBERTa gives it to every token."""

    def to_uer(self, tensors, keep):
        types = tensors[0]
        keep["token_types"] = types.shape[0]
        rows = [types.new_zeros(1, types.shape[1]), types] + ([types] if types.shape[0] == 1 else [])
        return torch.cat(rows, 0)

    def to_hf(self, tensor, keep):
        n = keep.get("token_types", tensor.shape[0] - 1)
        if n == 1 and tensor.shape[0] == 3 and not torch.equal(tensor[1], tensor[2]):
            raise ConversionError(f"{self.uer}: segments 1 and 2 differ, but the model had a single token type "
                                  "(RoBERTa); it has no place for a second one")
        return [tensor[1:1 + n]]


class Offset(Rule):
    """RoBERTa numbers positions from ``pad_token_id + 1``: the rows before never reach a real token.
    They are dropped on the way in and given back unchanged (zeros for a model that never had them)."""

    def __init__(self, uer: str, hf: str, offset: int) -> None:
        super().__init__(uer, hf)
        self.offset = offset

    def to_uer(self, tensors, keep):
        keep["position_rows"] = tensors[0][: self.offset].clone()
        return tensors[0][self.offset:]

    def to_hf(self, tensor, keep):
        head = keep.get("position_rows")
        if head is None or tuple(head.shape) != (self.offset, tensor.shape[1]):
            head = tensor.new_zeros(self.offset, tensor.shape[1])
        return [torch.cat([head.to(tensor.dtype), tensor], 0)]


def _linear(uer: str, hf: str, cls: type[Rule] = Copy) -> list[Rule]:
    return [cls(f"{uer}.weight", f"{hf}.weight"), Copy(f"{uer}.bias", f"{hf}.bias")]


def _norm(uer: str, hf: str) -> list[Rule]:
    return [Copy(f"{uer}.weight", f"{hf}.weight"), Copy(f"{uer}.bias", f"{hf}.bias")]


def _bert_layer(uer: str, hf: str, attn: str = "attention.self", out: str = "attention.output.dense",
                norm_1: str = "attention.output.LayerNorm", ffn_1: str = "intermediate.dense",
                ffn_2: str = "output.dense", norm_2: str = "output.LayerNorm") -> list[Rule]:
    rules: list[Rule] = [Joined(f"{uer}.self_attn.qkv.{p}", *(f"{hf}.{attn}.{n}.{p}" for n in ("query", "key", "value")))
                         for p in ("weight", "bias")]
    for u, h in (("self_attn.output", out), ("feed_forward.linear_1", ffn_1), ("feed_forward.linear_2", ffn_2)):
        rules += _linear(f"{uer}.{u}", f"{hf}.{h}")
    return rules + _norm(f"{uer}.layer_norm_1", f"{hf}.{norm_1}") + _norm(f"{uer}.layer_norm_2", f"{hf}.{norm_2}")


# ----------------------------------------------------------------------------- config helpers
HF_ACTS = {"gelu": "gelu", "gelu_new": "gelu_fast", "gelu_pytorch_tanh": "gelu_fast", "gelu_fast": "gelu_fast",
           "relu": "relu", "silu": "silu", "swish": "silu"}
UER_ACTS = {"gelu": "gelu", "gelu_fast": "gelu_new", "relu": "relu", "silu": "silu"}


def _component(specs: tuple[Any, ...], name: str) -> Any | None:
    return next((s for s in specs if s.name == name), None)


def _act(hf: dict[str, Any], key: str, default: str) -> str:
    act = hf.get(key, default)
    if act not in HF_ACTS:
        raise ConversionError(f"{key} {act!r} has no uer counterpart; uer has: {', '.join(sorted(HF_ACTS))}")
    return HF_ACTS[act]


def _need(hf: dict[str, Any], *keys: str) -> list[Any]:
    missing = [k for k in keys if k not in hf]
    if missing:
        raise ConversionError(f"config.json lacks {', '.join(missing)}")
    return [hf[k] for k in keys]


class Arch:
    """One HuggingFace architecture. Subclasses fill in the tables."""

    name: str
    title: str  # for messages
    model_types: tuple[str, ...]
    prefix: str  # the base model's attribute in HF's *For* classes ("bert." ...)
    base: tuple[str, ...]  # HF names (without prefix) that belong to the backbone: they must fit
    heads: tuple[str, ...]  # top-level HF names of heads outside the base model
    words_hf: str = "embeddings.word_embeddings.weight"
    # (uer decoder weight, HF decoder weight) of a language-model head tied to the word embedding
    decoders: tuple[tuple[str, str], ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()  # (HF tensor, the HF tensor it duplicates)
    zero_bias: str | None = None  # a uer bias the HF head does not have (must stay zero to export)
    carried_ok: tuple[str, ...] = ()  # suffixes of backbone buffers carried unchanged (old GPT-2 masks)
    word_emb_tying = "tie_word_embeddings"

    # --- uer config -> problems (an empty list: this architecture can hold it)
    encoder_wants: dict[str, Any] = {"layernorm_positioning": "post", "layernorm": "normal", "mask": "fully_visible",
                                     "parameter_sharing": False, "bias": True, "position_bias": "none"}
    components = ("word", "pos", "seg")
    embedding_norm = "normal"

    def problems(self, config: Config) -> list[str]:
        out = []
        if config.encoder.name != "transformer":
            return [f"encoder is {config.encoder.name!r}, {self.title} needs 'transformer'"]
        enc = config.encoder.cfg
        for key, want in self.encoder_wants.items():
            if getattr(enc, key) != want:
                out.append(f"encoder.{key} is {getattr(enc, key)!r}, {self.title} needs {want!r}")
        names = [s.name for s in config.embedding.components]
        if names != list(self.components):
            out.append(f"embedding.components are {names}, {self.title} needs [{', '.join(self.components)}]")
        if config.embedding.layernorm != self.embedding_norm:
            out.append(f"embedding.layernorm is {config.embedding.layernorm!r}, {self.title} needs {self.embedding_norm!r}")
        if config.subencoder is not None:
            out.append(f"a subencoder has no {self.title} counterpart")
        return out + self.emb_size_problems(config)

    def emb_size_problems(self, config: Config) -> list[str]:
        if config.emb_size != config.encoder.cfg.hidden_size:
            return [f"embedding.emb_size {config.emb_size} != encoder.hidden_size {config.encoder.cfg.hidden_size}"]
        return []

    def check(self, config: Config) -> None:
        problems = self.problems(config)
        if problems:
            raise ConversionError(f"{config.source} is not a {self.title} config:\n  " + "\n  ".join(problems))

    # --- tables
    def rules(self, config: Config) -> list[Rule]:
        raise NotImplementedError

    def uer_config(self, hf: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def hf_config(self, config: Config, hf_state: dict[str, torch.Tensor], keep: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def architecture(self, heads: set[str], keep: dict[str, Any]) -> str:
        """The HF class name for the heads present (top-level names)."""
        raise NotImplementedError

    def sizes(self, config: Config) -> dict[str, Any]:
        """config.json values this uer config implies (compared with a given config.json)."""
        return {}

    def derived(self, key: str, tensor: torch.Tensor) -> str | None:
        """How to regenerate an HF buffer (``arange`` ...), or None if ``key`` is not one."""
        if key == "embeddings.position_ids":
            if not torch.equal(tensor.flatten(), torch.arange(tensor.numel(), device=tensor.device)):
                raise ConversionError(f"embeddings.position_ids is not 0..{tensor.numel() - 1}; uer positions are always in order")
            return "arange"
        if key == "embeddings.token_type_ids":
            if bool(tensor.any()):
                raise ConversionError("embeddings.token_type_ids is not all zeros")
            return "zeros"
        return None


# ----------------------------------------------------------------------------- BERT and its kin
class Bert(Arch):
    name = "bert"
    title = "BERT"
    model_types = ("bert",)
    prefix = "bert."
    base = ("embeddings.", "encoder.")
    heads = ("cls",)
    decoders = (("target.components.mlm.head.decoder.weight", "cls.predictions.decoder.weight"),)
    aliases = (("cls.predictions.decoder.bias", "cls.predictions.bias"),)
    position_offset = 0

    def embedding_rules(self, config: Config) -> list[Rule]:
        pos: Rule = (Offset(POS, "embeddings.position_embeddings.weight", self.position_offset) if self.position_offset
                     else Copy(POS, "embeddings.position_embeddings.weight"))
        return [Copy(WORDS, self.words_hf), pos, TokenTypes(SEG, "embeddings.token_type_embeddings.weight"),
                *_norm("embedding.layer_norm", "embeddings.LayerNorm")]

    def head_rules(self) -> list[Rule]:
        rules = _linear("target.components.mlm.head.dense", "cls.predictions.transform.dense")
        rules += _norm("target.components.mlm.head.layer_norm", "cls.predictions.transform.LayerNorm")
        rules.append(Copy("target.components.mlm.head.decoder.bias", "cls.predictions.bias"))
        for pair in ("nsp", "sop"):
            rules += _linear(f"target.components.{pair}.dense", "pooler.dense")
            rules += _linear(f"target.components.{pair}.output", "cls.seq_relationship")
        return rules

    def rules(self, config: Config) -> list[Rule]:
        rules = self.embedding_rules(config)
        for i in range(config.encoder.cfg.layers_num):
            rules += _bert_layer(f"encoder.transformer.{i}", f"encoder.layer.{i}")
        return rules + self.head_rules()

    def _encoder(self, hf: dict[str, Any]) -> dict[str, Any]:
        hidden, layers, heads, ffn = _need(hf, "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConversionError(f"position_embedding_type {hf['position_embedding_type']!r} is not supported (only 'absolute')")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise ConversionError("a decoder with cross-attention has no uer counterpart")
        return {"name": "transformer", "hidden_size": hidden, "layers_num": layers, "heads_num": heads,
                "feedforward_size": ffn, "dropout": hf.get("hidden_dropout_prob", 0.1),
                "attention_dropout": hf.get("attention_probs_dropout_prob", 0.1),
                "act": _act(hf, "hidden_act", "gelu"), "layernorm_eps": hf.get("layer_norm_eps", 1e-12)}

    def _embedding(self, hf: dict[str, Any], emb_size: int | None = None) -> dict[str, Any]:
        types = hf.get("type_vocab_size", 2)
        out = {"components": ["word", {"name": "pos", "max_seq_length": hf.get("max_position_embeddings", 512) - self.position_offset},
                              {"name": "seg", "segment_num": max(types, 2) + 1}],
               "dropout": hf.get("hidden_dropout_prob", 0.1), "layernorm_eps": hf.get("layer_norm_eps", 1e-12)}
        if emb_size is not None:
            out["emb_size"] = emb_size
        return out

    def _targets(self, hf: dict[str, Any]) -> list[Any]:
        archs = " ".join(hf.get("architectures") or [])
        mlm = {"name": "mlm", "act": _act(hf, "hidden_act", "gelu"), "layernorm_eps": hf.get("layer_norm_eps", 1e-12)}
        if "PreTraining" in archs and self.name in ("bert",):
            return [mlm, "nsp"]
        return [mlm]

    def uer_config(self, hf: dict[str, Any]) -> dict[str, Any]:
        return {"embedding": self._embedding(hf), "encoder": self._encoder(hf), "target": {"components": self._targets(hf)}}

    def sizes(self, config: Config) -> dict[str, Any]:
        enc = config.encoder.cfg
        pos = _component(config.embedding.components, "pos")
        seg = _component(config.embedding.components, "seg")
        out = {"hidden_size": enc.hidden_size, "num_hidden_layers": enc.layers_num, "num_attention_heads": enc.heads_num,
               "intermediate_size": enc.feedforward_size, "layer_norm_eps": enc.layernorm_eps,
               "hidden_act": UER_ACTS[enc.act]}
        if pos is not None:
            out["max_position_embeddings"] = pos.cfg.max_seq_length + self.position_offset
        if seg is not None and not self.position_offset:
            out["type_vocab_size"] = seg.cfg.segment_num - 1
        return out

    def architecture(self, heads: set[str], keep: dict[str, Any]) -> str:
        if {"cls.predictions", "cls.seq_relationship"} <= heads:
            return "BertForPreTraining"
        return "BertForMaskedLM" if "cls.predictions" in heads else "BertModel"

    def hf_config(self, config, hf_state, keep):
        enc = config.encoder.cfg
        types = hf_state.get("embeddings.token_type_embeddings.weight")
        return {
            "model_type": self.model_types[0],
            "vocab_size": hf_state[self.words_hf].shape[0],
            "hidden_size": enc.hidden_size,
            "num_hidden_layers": enc.layers_num,
            "num_attention_heads": enc.heads_num,
            "intermediate_size": enc.feedforward_size,
            "hidden_act": UER_ACTS[enc.act],
            "hidden_dropout_prob": enc.dropout,
            "attention_probs_dropout_prob": enc.attention_dropout,
            "max_position_embeddings": hf_state["embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": types.shape[0] if types is not None else 2,
            "layer_norm_eps": enc.layernorm_eps,
            "position_embedding_type": "absolute",
        }


class Roberta(Bert):
    name = "roberta"
    title = "RoBERTa"
    model_types = ("roberta", "xlm-roberta")
    prefix = "roberta."
    heads = ("lm_head",)
    decoders = (("target.components.mlm.head.decoder.weight", "lm_head.decoder.weight"),)
    aliases = (("lm_head.decoder.bias", "lm_head.bias"),)
    position_offset = 2  # pad_token_id 1 + 1; checked against config.json

    def uer_config(self, hf):
        pad = hf.get("pad_token_id", 1)
        if pad + 1 != self.position_offset:
            raise ConversionError(f"pad_token_id {pad}: uer reads RoBERTa positions from row {self.position_offset} "
                                  f"(pad_token_id 1), this model starts at row {pad + 1}")
        return super().uer_config(hf)

    def head_rules(self):
        rules = _linear("target.components.mlm.head.dense", "lm_head.dense")
        rules += _norm("target.components.mlm.head.layer_norm", "lm_head.layer_norm")
        return rules + [Copy("target.components.mlm.head.decoder.bias", "lm_head.bias")]

    def architecture(self, heads, keep):
        prefix = "XLMRoberta" if keep.get("model_type") == "xlm-roberta" else "Roberta"
        return f"{prefix}ForMaskedLM" if "lm_head" in heads else f"{prefix}Model"

    def hf_config(self, config, hf_state, keep):
        out = super().hf_config(config, hf_state, keep)
        out.update({"model_type": keep.get("model_type", "roberta"), "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2})
        return out


class Electra(Bert):
    name = "electra"
    title = "ELECTRA"
    model_types = ("electra",)
    prefix = "electra."
    base = ("embeddings.", "embeddings_project.", "encoder.")
    heads = ("discriminator_predictions", "generator_predictions", "generator_lm_head")
    decoders = ()
    aliases = ()

    def emb_size_problems(self, config):
        return []

    def embedding_rules(self, config):
        rules = super().embedding_rules(config)
        if config.emb_size != config.encoder.cfg.hidden_size:
            rules += _linear("embedding.projection", "embeddings_project")
        return rules

    def head_rules(self):
        return []  # the discriminator's head has no uer target: carried unchanged

    def uer_config(self, hf):
        hidden = _need(hf, "hidden_size")[0]
        emb = hf.get("embedding_size", hidden)
        return {"embedding": self._embedding(hf, emb if emb != hidden else None), "encoder": self._encoder(hf),
                "target": {"components": self._targets(hf)}}

    def sizes(self, config):
        return {**super().sizes(config), "embedding_size": config.emb_size}

    def architecture(self, heads, keep):
        return "ElectraForPreTraining" if "discriminator_predictions" in heads else "ElectraModel"

    def hf_config(self, config, hf_state, keep):
        return {**super().hf_config(config, hf_state, keep), "embedding_size": config.emb_size}


class Albert(Bert):
    name = "albert"
    title = "ALBERT"
    model_types = ("albert",)
    prefix = "albert."
    heads = ("predictions", "sop_classifier")
    decoders = (("target.components.mlm.head.decoder.weight", "predictions.decoder.weight"),)
    aliases = (("predictions.decoder.bias", "predictions.bias"),)
    encoder_wants = {**Arch.encoder_wants, "parameter_sharing": True}
    LAYER = "encoder.albert_layer_groups.0.albert_layers.0"

    def emb_size_problems(self, config):
        if config.emb_size == config.encoder.cfg.hidden_size:
            return [f"embedding.emb_size equals encoder.hidden_size ({config.emb_size}): uer then has no "
                    "embedding projection, ALBERT always has one (encoder.embedding_hidden_mapping_in)"]
        return []

    def rules(self, config):
        rules = self.embedding_rules(config) + _linear("embedding.projection", "encoder.embedding_hidden_mapping_in")
        rules += _bert_layer("encoder.transformer.0", self.LAYER, attn="attention", out="attention.dense",
                             norm_1="attention.LayerNorm", ffn_1="ffn", ffn_2="ffn_output", norm_2="full_layer_layer_norm")
        rules += _linear("target.components.mlm.head.dense", "predictions.dense")
        rules += _norm("target.components.mlm.head.layer_norm", "predictions.LayerNorm")
        rules.append(Copy("target.components.mlm.head.decoder.bias", "predictions.bias"))
        for pair in ("sop", "nsp"):
            rules += _linear(f"target.components.{pair}.dense", "pooler")
            rules += _linear(f"target.components.{pair}.output", "sop_classifier.classifier")
        return rules

    def uer_config(self, hf):
        for key in ("num_hidden_groups", "inner_group_num"):
            if hf.get(key, 1) != 1:
                raise ConversionError(f"{key} {hf[key]}: uer shares one layer across the stack (ALBERT's default, 1)")
        hidden, emb = _need(hf, "hidden_size", "embedding_size")
        if hidden == emb:
            raise ConversionError(f"embedding_size == hidden_size ({hidden}): uer has no embedding projection then, "
                                  "ALBERT always has one")
        # ALBERT's own defaults where config.json leaves a key out
        hf = {"hidden_act": "gelu_new", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **hf}
        enc = {**self._encoder(hf), "parameter_sharing": True}
        targets: list[Any] = [{"name": "mlm", "act": _act(hf, "hidden_act", "gelu_new"), "layernorm_eps": hf.get("layer_norm_eps", 1e-12)}]
        if "AlbertForPreTraining" in (hf.get("architectures") or []):
            targets.append("sop")
        return {"embedding": self._embedding(hf, emb), "encoder": enc, "target": {"components": targets}}

    def sizes(self, config):
        return {**super().sizes(config), "embedding_size": config.emb_size}

    def architecture(self, heads, keep):
        if {"predictions", "sop_classifier"} <= heads:
            return "AlbertForPreTraining"
        return "AlbertForMaskedLM" if "predictions" in heads else "AlbertModel"

    def hf_config(self, config, hf_state, keep):
        out = super().hf_config(config, hf_state, keep)
        out.update({"embedding_size": config.emb_size, "num_hidden_groups": 1, "inner_group_num": 1})
        return out


# ----------------------------------------------------------------------------- GPT-2
class Gpt2(Arch):
    name = "gpt2"
    title = "GPT-2"
    model_types = ("gpt2",)
    prefix = "transformer."
    base = ("wte.", "wpe.", "h.", "ln_f.")
    heads = ("lm_head",)
    words_hf = "wte.weight"
    decoders = (("target.components.lm.head.decoder.weight", "lm_head.weight"),)
    zero_bias = "target.components.lm.head.decoder.bias"
    carried_ok = (".attn.bias", ".attn.masked_bias")
    encoder_wants = {"layernorm_positioning": "pre", "layernorm": "normal", "mask": "causal",
                     "parameter_sharing": False, "bias": True, "position_bias": "none"}
    components = ("word", "pos")
    embedding_norm = "none"

    def problems(self, config):
        out = super().problems(config)
        lm = _component(config.target.components, "lm")
        if lm is not None and lm.cfg.head != "plain":
            out.append(f"target lm.head is {lm.cfg.head!r}, GPT-2 needs 'plain'")
        return out

    def rules(self, config):
        rules: list[Rule] = [Copy(WORDS, "wte.weight"), Copy(POS, "wpe.weight")]
        for i in range(config.encoder.cfg.layers_num):
            u, h = f"encoder.transformer.{i}", f"h.{i}"
            rules += _norm(f"{u}.layer_norm_1", f"{h}.ln_1") + _norm(f"{u}.layer_norm_2", f"{h}.ln_2")
            for uer, hf in (("self_attn.qkv", "attn.c_attn"), ("self_attn.output", "attn.c_proj"),
                            ("feed_forward.linear_1", "mlp.c_fc"), ("feed_forward.linear_2", "mlp.c_proj")):
                rules += _linear(f"{u}.{uer}", f"{h}.{hf}", Transposed)
        return rules + _norm("encoder.final_norm", "ln_f")

    def uer_config(self, hf):
        hidden, layers, heads = _need(hf, "n_embd", "n_layer", "n_head")
        for key, bad in (("scale_attn_weights", False), ("scale_attn_by_inverse_layer_idx", True), ("add_cross_attention", True)):
            if hf.get(key, not bad) == bad:
                raise ConversionError(f"{key} {bad}: uer's attention has no such variant")
        eps = hf.get("layer_norm_epsilon", 1e-5)
        return {
            "embedding": {"components": ["word", {"name": "pos", "max_seq_length": hf.get("n_positions", 1024)}],
                          "dropout": hf.get("embd_pdrop", 0.1), "layernorm": "none"},
            "encoder": {"name": "transformer", "hidden_size": hidden, "layers_num": layers, "heads_num": heads,
                        "feedforward_size": hf.get("n_inner") or 4 * hidden, "dropout": hf.get("resid_pdrop", 0.1),
                        "attention_dropout": hf.get("attn_pdrop", 0.1), "act": _act(hf, "activation_function", "gelu_new"),
                        "layernorm_positioning": "pre", "layernorm_eps": eps, "mask": "causal"},
            "target": {"components": ["lm"]},
        }

    def sizes(self, config):
        enc = config.encoder.cfg
        return {"n_embd": enc.hidden_size, "n_layer": enc.layers_num, "n_head": enc.heads_num,
                "layer_norm_epsilon": enc.layernorm_eps, "activation_function": UER_ACTS[enc.act],
                "n_positions": _component(config.embedding.components, "pos").cfg.max_seq_length}

    def architecture(self, heads, keep):
        return "GPT2LMHeadModel" if "lm_head" in heads else "GPT2Model"

    def hf_config(self, config, hf_state, keep):
        enc = config.encoder.cfg
        return {
            "model_type": "gpt2",
            "vocab_size": hf_state["wte.weight"].shape[0],
            "n_positions": hf_state["wpe.weight"].shape[0],
            "n_embd": enc.hidden_size,
            "n_layer": enc.layers_num,
            "n_head": enc.heads_num,
            "n_inner": enc.feedforward_size,
            "activation_function": UER_ACTS[enc.act],
            "resid_pdrop": enc.dropout,
            "embd_pdrop": config.embedding.dropout,
            "attn_pdrop": enc.attention_dropout,
            "layer_norm_epsilon": enc.layernorm_eps,
        }


ARCHS: dict[str, Arch] = {a.name: a for a in (Bert(), Roberta(), Albert(), Electra(), Gpt2())}


def arch_named(name: str) -> Arch:
    if name not in ARCHS:
        raise ConversionError(f"unknown architecture {name!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[name]


def arch_for(hf_config: dict[str, Any], where: str = "config.json") -> Arch:
    """The architecture of an HF ``config.json`` (its ``model_type``)."""
    model_type = hf_config.get("model_type")
    for arch in ARCHS.values():
        if model_type in arch.model_types:
            return arch
    known = sorted(t for a in ARCHS.values() for t in a.model_types)
    raise ConversionError(f"{where}: model_type {model_type!r} is not supported; supported: {', '.join(known)}")


def guess_arch(config: Config) -> Arch:
    """For a uer model that never came from HF: the one architecture its config fits, BERT first."""
    fits = [a for a in ARCHS.values() if a.name != "roberta" and not a.problems(config)]
    if not fits:
        reasons = "; ".join(f"{a.name}: {a.problems(config)[0]}" for a in ARCHS.values())
        raise ConversionError(f"{config.source} fits no HuggingFace architecture ({reasons})")
    return fits[0]
