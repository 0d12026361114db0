"""Documents -> training instances, one processor per pre-training target set.

=========  ==========  =========================================================================
name       targets     instance
=========  ==========  =========================================================================
bert       mlm + nsp   [CLS] A [SEP] B [SEP]; B follows A (label 0) or comes from another document (1)
albert     mlm + sop   [CLS] A [SEP] B [SEP]; A, B consecutive, in order (label 0) or swapped (1)
mlm        mlm         [CLS] tokens [SEP] packed to full length across documents ([SEP] between them)
lm         lm          as mlm, unmasked (the target predicts each next token of ``src``)
bilm       bilm        as lm
cls        cls         [CLS] text_a [SEP] (text_b [SEP]); the label
=========  ==========  =========================================================================

A processor is one class in one file that states its facts (``layout``, ``targets``, ``masked``,
``label_key``) and registers itself::

    @PROCESSORS.register("cls", config=ProcessorConfig)
    class ClsProcessor(Processor):
        layout = "tsv"; targets = frozenset({"cls"}); label_key = "tgt_cls"
        ...

plus one import line below. Registering a name twice is an error; an unknown name is an error
that lists the valid ones.
"""
from __future__ import annotations

from uer.data.processors import albert, bert, cls, packed  # noqa: F401  (registration)
from uer.data.processors.base import Plan, Processor, ProcessorConfig, Sentence, SpecialIds, Stats
from uer.data.processors.registry import PROCESSORS


def processor_class(name: str, where: str = "--data_processor") -> type[Processor]:
    PROCESSORS.entry(name, where)  # an unknown name: an error naming the flag and the valid names
    return PROCESSORS.cls(name)


def processor_for_targets(targets: list[str]) -> str:
    """The processor whose instances a config's target set needs (mlm+nsp -> bert ...)."""
    key = frozenset(targets)
    for name in PROCESSORS.names():
        if processor_class(name).targets == key:
            return name
    known = "; ".join(f"{'+'.join(sorted(processor_class(n).targets))} -> {n}" for n in PROCESSORS.names())
    raise ValueError(f"no data processor for targets {'+'.join(sorted(key))}; pass --data_processor ({known})")


def make_processor(name: str, cfg: ProcessorConfig, ids: SpecialIds, rng, stats: Stats) -> Processor:
    """A processor by name: ``make_processor("bert", ProcessorConfig(seq_length=64), ids, rng, Stats())``."""
    from dataclasses import asdict

    return PROCESSORS.build({"name": name, **asdict(cfg)}, ids=ids, rng=rng, stats=stats)


__all__ = [
    "PROCESSORS", "Plan", "Processor", "ProcessorConfig", "Sentence", "SpecialIds", "Stats",
    "make_processor", "processor_class", "processor_for_targets",
]
