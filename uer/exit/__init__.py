"""The early-exit core that sentence exit (``uer.fastbert``) and token exit (``uer.tagging``) share.

Each task package keeps only what is its own (how a branch reads a layer, how a row is scored) and
never imports the other's internals; everything both need lives here once:

    targets.py    ExitBranches: a classifier per layer, teacher and students, the distillation loss
    training.py   the two stages (and their resume, dev evaluation, best weights) on uer.trainer
    pipeline.py   the run: checks before any write, outputs and ownership, sweep, report, plot
    cli.py        the flags both commands take (UER's names)
    policies/     the exit rules (a registry): entropy, confidence, patience, topk_entropy
    sweep.py      the speed sweep's shared timing and the chosen speed
    pays.py       early exit only where it pays: the exit profile, the measured step costs, the plan
    flops.py      one FLOPs counter: the layers' and branches' own compute() on shape executors
    loading.py    one loader for trained models; checks.py: the predictors' argument checks
    report.py     the table, the JSON report and the score vs speed-up plot
"""
