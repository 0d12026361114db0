"""The only place that instantiates components and derives the sizes they share.

Each component sees its own typed config plus the sizes it needs, by keyword:

- embedding components: ``vocab_size``, ``emb_size`` (``embedding.emb_size``, or the encoder's
  ``hidden_size`` when it is not set);
- the encoder: nothing (its config holds ``hidden_size`` and ``layers_num``, see ``EncoderConfig``);
- a subencoder: ``vocab_tokens`` (to spell every token), ``emb_size``;
- targets: ``vocab_size``, ``hidden_size`` (the encoder's output), ``emb_size``, ``labels_num``,
  ``layers_num``.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from uer.config import Config
from uer.embeddings import EMBEDDINGS
from uer.embeddings.embedding import Embedding
from uer.encoders import ENCODERS
from uer.model import Model
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS
from uer.targets.composite import CompositeTarget


def build_model(
    config: Config,
    vocab_size: int | None = None,
    labels_num: int | None = None,
    vocab_tokens: Sequence[str] | None = None,
) -> Model:
    """Assemble embedding + encoder + targets from a config.

    Example::

        cfg = load_config("models/bert/tiny.yaml")
        model = build_model(cfg, vocab_size=len(vocab))      # BERT: mlm + nsp
        out = model({"src": src, "seg": seg, "tgt_mlm": tgt_mlm, "tgt_nsp": tgt_nsp})
        out["loss"].backward()

    ``vocab_tokens`` (the vocabulary's tokens) is needed only by a subencoder, which builds its
    character vocabulary from them; ``labels_num`` only by classification targets. A size that
    does not fit (a vocabulary of 0 tokens, a target that cannot work on the encoder) is a ValueError.
    """
    if vocab_tokens is not None:
        if vocab_size is not None and vocab_size != len(vocab_tokens):
            raise ValueError(f"vocab_size {vocab_size} != {len(vocab_tokens)} vocabulary tokens")
        vocab_size = len(vocab_tokens)
    if vocab_size is None or vocab_size < 1:
        raise ValueError(f"build_model needs vocab_size >= 1 (or vocab_tokens), got {vocab_size}")
    if labels_num is not None and labels_num < 1:
        raise ValueError(f"labels_num must be >= 1, got {labels_num}")
    encoder = ENCODERS.instantiate(config.encoder)
    hidden_size = config.encoder.cfg.hidden_size  # typed: every encoder config extends EncoderConfig
    emb_size = config.emb_size
    emb = config.embedding
    embedding = Embedding(
        nn.ModuleDict({s.name: EMBEDDINGS.instantiate(s, vocab_size=vocab_size, emb_size=emb_size) for s in emb.components}),
        emb_size=emb_size, hidden_size=hidden_size, dropout=emb.dropout, layernorm=emb.layernorm,
        layernorm_eps=emb.layernorm_eps,
    )
    subencoder = None
    if config.subencoder is not None:
        if vocab_tokens is None:
            raise ValueError(f"subencoder {config.subencoder.name!r} needs vocab_tokens to build its character vocabulary")
        subencoder = SUBENCODERS.instantiate(config.subencoder, vocab_tokens=list(vocab_tokens), emb_size=emb_size)
    sizes = {"vocab_size": vocab_size, "hidden_size": encoder.output_size, "emb_size": emb_size,
             "labels_num": labels_num, "layers_num": encoder.layers_num}
    targets = nn.ModuleDict({s.name: TARGETS.instantiate(s, **sizes) for s in config.target.components})
    for target in targets.values():
        target.check_encoder(encoder)
        decoder = target.tied_decoder()  # e.g. MLM / LM output layer shares the word embedding
        if decoder is not None:
            decoder.weight = embedding.word.weight
    return Model(config, embedding, encoder, CompositeTarget(targets), subencoder)
