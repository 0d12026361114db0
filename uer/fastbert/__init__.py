"""FastBERT (Liu et al., ACL 2020) on the registry: early-exit branches after every encoder layer.

    from uer.fastbert import FastBertClassifier
    clf = FastBertClassifier.load("out/fastbert/model.pt")
    clf.predict(["what a lovely day"], speed=0.3)     # labels, probabilities, exit layers

Modules: ``data`` (TSV -> ids), ``training`` (the two stages on :class:`uer.trainer.Trainer`), ``inference`` (early exit on shrinking batches),
``flops`` (analytic counts), ``evaluate`` (the speed sweep), ``report`` (metrics, table, plot),
``predictor`` (the application API), ``pipeline`` (what ``run_fastbert.py`` runs).
"""
from uer.fastbert.inference import EarlyExit, ExitResult, normalized_entropy
from uer.fastbert.predictor import FastBertClassifier, Predictions

__all__ = ["EarlyExit", "ExitResult", "FastBertClassifier", "Predictions", "normalized_entropy"]
