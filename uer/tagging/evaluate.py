"""The speed sweep: entity P/R/F1, mean exit layer, FLOPs per sentence and measured wall-clock
speed-ups (batch 1 and batched) for every speed.

Token-level exit cannot be replayed from one full pass as FastBERT's sentence-level exit can: a
token that exits changes what the later layers compute for the others (its vector is frozen). So
every speed really runs early exit over the whole set. Wall clock: the first ``timing_samples``
rows, timed by :func:`uer.exit.sweep.measure_walls`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from uer.data.loader import length_sorted_batches
from uer.exit.policies import DEFAULT, Policy, resolve
from uer.exit.sweep import measure_walls, wall_seconds, wall_speedup
from uer.tagging.crf import LinearChainCRF, compact
from uer.tagging.data import Chunks, assemble, collate, pick
from uer.tagging.flops import TaggerFlops
from uer.tagging.inference import TokenExit
from uer.tagging.metrics import entity_scores
from uer.tagging.predictor import tag_chunks


@torch.no_grad()
def crf_decode(runner: TokenExit, crf: LinearChainCRF, chunks: Chunks, pad_id: int, batch_size: int) -> list[list[int]]:
    """The full model's tags as its CRF decodes them (Viterbi over each row's units), per row.
    The emissions are the teacher's log-probabilities: the same decoding as its logits (a
    per-token constant changes no path's rank), from whichever runtime runs the full model."""
    rows: list[list[int]] = [[] for _ in range(len(chunks))]
    for index in length_sorted_batches(chunks.lengths(), batch_size):
        batch = collate(chunks, index, pad_id, runner.device)
        logp = runner.full_model(batch["src"], batch["seg"]).clamp_min(torch.finfo(torch.float32).tiny).log().cpu()
        keep = torch.zeros(logp.shape[:2], dtype=torch.bool)
        for j, r in enumerate(index):
            keep[j, chunks.units(r)] = True
        emissions, mask = compact(logp, keep)
        for r, path in zip(index, crf.decode(emissions, mask)):
            rows[r] = path
    return rows


def sweep(runner: TokenExit, chunks: Chunks, gold: list[list[str]], id2label: Sequence[str], pad_id: int,
          speeds: Sequence[float], window: int = 0, eval_batch_size: int = 64, timing_samples: int = 256,
          batch_size: int = 32, repeats: int = 2, measure: bool = True, policy: Policy = DEFAULT) -> dict[str, Any]:
    """Rows of the speed table (as in ``--report_path``) plus the per-speed predicted tags per sentence.

    ``policy``: the exit rule per token (a name of ``uer.exit.policies.policy_names()``, a
    ``{"name": ...}`` spec or a policy object); ``speed`` is its knob, ``window`` its neighbourhood."""
    rule = resolve(policy)
    flop_model = TaggerFlops.of(runner.model)  # None: no count for this encoder ("-" in the table)

    def sentence_flops(exits: list[list[int]], speed: float) -> float | None:
        if flop_model is None:
            return None
        per_sentence = [0.0] * chunks.sentences_num
        for r, layers in enumerate(exits):  # a speed that never exits early runs the full model (TokenExit.predict)
            per_sentence[chunks.sentence[r]] += (float(flop_model.full(len(layers))) if rule.never_early(speed)
                                                 else flop_model.early_exit(torch.tensor(layers)))
        return sum(per_sentence) / len(per_sentence)

    teacher_ids, _ = tag_chunks(runner, chunks, pad_id, None, window, eval_batch_size, rule)
    teacher_tags = assemble(chunks, [[id2label[k] for k in row] for row in teacher_ids])
    teacher = entity_scores(gold, teacher_tags)
    full_flops = None
    if flop_model is not None:
        full_flops = sum(float(flop_model.full(n)) for n in chunks.lengths()) / chunks.sentences_num

    measure = measure and timing_samples > 0  # --timing_samples 0: no wall clock
    timed = min(timing_samples, len(chunks)) if measure else 0
    walls: dict[str, dict[float | None, float]] = {}
    if measure:
        sub = chunks.subset(range(timed))

        def run(batch: dict[str, torch.Tensor], speed: float | None) -> None:  # None: the full model
            if speed is None:
                runner.full_model(batch["src"], batch["seg"])
            else:
                runner.predict(batch["src"], batch["seg"], speed, window, rule)

        walls = {size: measure_walls(run, [collate(sub, b, pad_id, runner.device)
                                           for b in length_sorted_batches(sub.lengths(), n)], speeds, repeats, runner.device)
                 for size, n in (("1", 1), ("b", batch_size))}

    rows, predictions = [], []
    for speed in speeds:
        ids, exits = tag_chunks(runner, chunks, pad_id, float(speed), window, eval_batch_size, rule)
        tags = assemble(chunks, [[id2label[k] for k in row] for row in ids])
        scores = entity_scores(gold, tags)
        char_exits = [e for r, row in enumerate(exits) for e in pick(row, chunks.units(r))]  # units only, not [CLS]
        flops = sentence_flops(exits, float(speed))
        rows.append({
            "speed": float(speed), "precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
            "mean_exit_layer": sum(char_exits) / len(char_exits),
            # layers a row runs: its last token's exit layer. At batch 1 a row costs every one of them
            # (partial layers still pay a full layer's calls), which bounds the wall-clock gain.
            "mean_layers_run": sum(max(row) for row in exits) / len(exits),
            "flops_per_sentence": flops,
            "flops_speedup": full_flops / flops if flops else None,
            "wall_speedup_batch1": wall_speedup(walls.get("1"), speed),
            "wall_speedup_batched": wall_speedup(walls.get("b"), speed),
        })
        predictions.append(tags)
    return {"teacher": teacher, "teacher_tags": teacher_tags, "rows": rows, "predictions": predictions,
            "full_flops_per_sentence": full_flops, "timing_samples": timed, "runtime": runner.name,
            "wall_seconds": wall_seconds(walls, batch_size)}

