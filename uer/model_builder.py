"""The only place that reads the registries and derives sizes shared between components."""
from __future__ import annotations

from typing import Any, Sequence

from uer.config import (
    Config, ConfigError, EmbeddingConfig, FastBertConfig, Spec, TargetConfig, TokenizerConfig, TrainConfig,
    _prefix, _where, _with_lines, from_dict,
)
from uer.embeddings import EMBEDDINGS, Embedding
from uer.encoders import ENCODERS
from uer.model import Model
from uer.subencoders import SUBENCODERS
from uer.targets import TARGETS, CompositeTarget


def _spec(registry, raw: Any, where: str) -> Spec:
    entry, cfg = registry.make_config(raw, where)
    return Spec(entry.name, cfg)


def _specs(registry, raw: Any, where: str) -> tuple[Spec, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of {registry.kind} names")
    specs = tuple(_spec(registry, item, f"{where}[{i}]") for i, item in enumerate(raw))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a {registry.kind} is listed twice: {names}")
    return specs


def resolve_specs(data: dict, source: str) -> Config:
    """Nested dict (from YAML) -> :class:`Config`, every component checked against its registry."""
    at = _prefix(data, source)
    section = {name: data.get(name) or {} for name in ("embedding", "target", "tokenizer", "train", "fastbert")}
    emb = _with_lines(dict(section["embedding"]), section["embedding"])
    components = _specs(EMBEDDINGS, emb.pop("components", list(EmbeddingConfig.components)),
                        _where(section["embedding"], "components", f"{at}embedding"))
    embedding = from_dict(EmbeddingConfig, emb, f"{at}embedding")
    target = _with_lines(dict(section["target"]), section["target"])
    targets = _specs(TARGETS, target.pop("components", None), _where(section["target"], "components", f"{at}target"))
    from_dict(TargetConfig, target, f"{at}target")  # rejects unknown keys
    subencoder = data.get("subencoder")
    return Config(
        embedding=EmbeddingConfig(**{**embedding.__dict__, "components": components}),
        encoder=_spec(ENCODERS, data["encoder"], f"{at}encoder"),
        target=TargetConfig(components=targets),
        subencoder=None if subencoder is None else _spec(SUBENCODERS, subencoder, f"{at}subencoder"),
        tokenizer=from_dict(TokenizerConfig, section["tokenizer"], f"{at}tokenizer"),
        train=from_dict(TrainConfig, section["train"], f"{at}train"),
        fastbert=from_dict(FastBertConfig, section["fastbert"], f"{at}fastbert"),
        source=source,
    )


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
    character vocabulary from them; ``labels_num`` only by classification targets.
    """
    if vocab_tokens is not None:
        if vocab_size is not None and vocab_size != len(vocab_tokens):
            raise ValueError(f"vocab_size {vocab_size} != {len(vocab_tokens)} vocabulary tokens")
        vocab_size = len(vocab_tokens)
    if not vocab_size:
        raise ValueError("build_model needs vocab_size (or vocab_tokens)")
    encoder = ENCODERS.entry(config.encoder.name).cls(config.encoder.cfg)
    hidden_size = config.encoder.cfg.hidden_size
    emb_size = config.embedding.emb_size
    embedding = Embedding(config.embedding, list(config.embedding.components), vocab_size, hidden_size)
    subencoder = None
    if config.subencoder is not None:
        if vocab_tokens is None:
            raise ValueError(f"subencoder {config.subencoder.name!r} needs vocab_tokens to build its character vocabulary")
        subencoder = SUBENCODERS.entry(config.subencoder.name).cls(
            config.subencoder.cfg, vocab_tokens=list(vocab_tokens), emb_size=emb_size
        )
    target = CompositeTarget(
        list(config.target.components),
        vocab_size=vocab_size,
        hidden_size=encoder.output_size,
        emb_size=emb_size,
        labels_num=labels_num,
        layers_num=encoder.layers_num,
    )
    for component in target.components.values():
        decoder = component.tied_decoder()  # e.g. MLM / LM output layer shares the word embedding
        if decoder is not None:
            decoder.weight = embedding.word.weight
    return Model(config, embedding, encoder, target, subencoder)
