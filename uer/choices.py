"""Every closed set of choices, defined once. Configs type their fields with these ``Literal``s and
the command lines take their argparse ``choices`` from the matching tuples, so a new activation or
precision is one edit here. Torch-free on purpose (configs and CLIs import it)."""
from __future__ import annotations

from typing import Literal, get_args

Activation = Literal["gelu", "gelu_fast", "relu", "silu"]
Pooling = Literal["first", "mean", "max", "last"]
Precision = Literal["fp32", "bf16", "fp16"]
Scheduler = Literal["linear", "cosine", "constant"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
POOLINGS: tuple[str, ...] = get_args(Pooling)
PRECISIONS: tuple[str, ...] = get_args(Precision)
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)

# early exit only where it pays (uer.exit.pays): run_fastbert.py --exit_plan makes a plan or not;
# FastBertClassifier.load(exit_plan=), uer predict / serve --exit_plan use the stored one, re-measure it or none
EXIT_PLANS = ("pays", "always")
EXIT_PLAN_USES = ("stored", "here", "off")

# pretrain.py --position_scaffold (uer.scaffold): on = from scratch wherever the config allows it
SCAFFOLD_CHOICES = ("on", "off")
