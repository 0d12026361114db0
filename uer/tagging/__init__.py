"""Sequence labelling (NER) with token-level early exit.

    from uer.tagging import NerTagger
    tagger = NerTagger.load("out/ner/model.pt")
    tagger.predict(["江泽民在北京会见了代表团。"], speed=0.3)
    # [[Entity(type='PER', start=0, end=3, text='江泽民'), Entity(type='LOC', start=4, end=6, text='北京')]]

Modules: ``targets`` (``tagging`` and ``token_exit`` on the targets registry), ``data`` (NER TSV or
CoNLL words -> ids), ``metrics`` (BIO spans, entity P/R/F1), ``crf`` (the full model's optional
linear-chain CRF), ``inference`` (token-level early exit), ``flops`` (analytic counts),
``training`` (fine-tune, self-distil), ``evaluate`` (the speed sweep), ``predictor`` (the API),
``export`` (ONNX graphs of the token-exit steps, and a runner of them), ``pipeline`` (what
``run_ner.py`` runs).

The names below load lazily: ``uer.targets`` imports ``uer.tagging.targets`` to register the
targets, and must not pull in the builder (which imports ``uer.targets``) while it does.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "NerTagger": "uer.tagging.predictor", "Entity": "uer.tagging.predictor",
    "TokenExit": "uer.tagging.inference", "TokenExitResult": "uer.tagging.inference",
    "bio_spans": "uer.tagging.metrics", "entity_scores": "uer.tagging.metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'uer.tagging' has no attribute {name!r}")
