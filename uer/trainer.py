"""The one training loop, for every target: pre-training and both FastBERT stages use it.

    trainer = Trainer(model, optimizer, scheduler, config, options)
    trainer.maybe_resume(loader)            # exact resume from options.checkpoint_path
    trainer.fit(loader, total_steps)

A step is one optimizer update over ``accumulation_steps`` micro-batches. Every
``save_checkpoint_steps`` an atomic checkpoint holds model, optimizer, scheduler, scaler, RNG,
data position and the caller's ``user_state``: killing the process loses at most those steps.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from uer.checkpoint import CheckpointError, load_state, read_checkpoint, save_checkpoint
from uer.config import Config
from uer.utils.atomic import atomic_open
from uer.utils.cli import on_interrupt

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainerOptions:
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 (CPU and CUDA) | fp16 (CUDA, with a grad scaler)
    accumulation_steps: int = 1
    clip_grad_norm: float = 1.0  # 0 disables clipping
    report_steps: int = 100
    save_checkpoint_steps: int = 0  # 0: only at the end
    checkpoint_path: str | None = None  # resume state (and the final model) go here
    metrics_path: str | None = None  # one JSON object per report step
    desc: str = "train"
    progress: bool = True
    log: Callable[[str], None] | None = None  # where the step lines go without a progress bar (None: nowhere)
    resume_hint: str = "rerun with --resume"  # how the command continues an interrupted run (said on Ctrl-C)


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("fp16 needs CUDA (it relies on a grad scaler); use --precision bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def make_optimizer(
    params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999), device: str = "cpu",
) -> torch.optim.AdamW:
    """AdamW; no decay on biases and norms; fused kernels on CUDA, foreach elsewhere."""
    decay, no_decay = [], []
    for name, p in params:
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kind = torch.device(device).type
    # The fused kernel does the whole update in one pass over each tensor; PyTorch has it for
    # CUDA and (since 2.4) CPU. foreach (batched but not fused) is the fallback.
    fused = kind in ("cuda", "cpu")
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused, foreach=None if fused else True)
    except (RuntimeError, TypeError):  # a build without the fused kernel for this device
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int):
    """Linear warmup, then linear decay to 0, cosine decay to 0, or constant."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - progress
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "constant":
            return 1.0
        raise ValueError(f"unknown scheduler {kind!r}; valid: linear, cosine, constant")

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def default_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return model(batch)


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _reduce_report(sums: dict[str, float], counts: dict[str, int], tokens: int) -> tuple[dict[str, float], float]:
    """Means of the metrics over every rank's micro-batches, and the tokens of all ranks."""
    keys = sorted(sums)
    if dist.is_initialized() and dist.get_world_size() > 1:
        packed = torch.tensor([sums[k] for k in keys] + [counts[k] for k in keys] + [tokens], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            packed = packed.cuda()
        dist.all_reduce(packed)
        packed = packed.cpu().tolist()
        n = len(keys)
        sums = dict(zip(keys, packed[:n]))
        counts = dict(zip(keys, packed[n:2 * n]))
        tokens = packed[-1]
    return {k: sums[k] / counts[k] for k in keys}, float(tokens)


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        config: Config,
        options: TrainerOptions,
        loss_fn: LossFn = default_loss,
    ) -> None:
        self.model = model  # the bare model; ``self.wrapped`` is what runs (DDP under torchrun)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.config, self.options, self.loss_fn = config, options, loss_fn
        self.step = 0
        self.user_state: dict[str, Any] = {}  # the caller's own resumable state (e.g. best dev score)
        # What makes two runs the same run (config, data fingerprint, schedule): a resume state whose
        # signature differs belongs to another run and is refused instead of silently continued.
        self.signature: dict[str, Any] | None = None
        # Optional: how a command explains a signature that differs ((saved, current) -> the one-line
        # message, or None to accept: e.g. a state written before the command had a signature).
        # Unset, the generic message below names the differing keys.
        self.signature_mismatch: Callable[[dict[str, Any] | None, dict[str, Any]], str | None] | None = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=options.precision == "fp16")
        self.wrapped: nn.Module = model
        if dist.is_initialized() and dist.get_world_size() > 1:
            device_ids = [torch.device(options.device).index] if options.device.startswith("cuda") else None
            self.wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.history: list[dict[str, float]] = []
        self.saved_step: int | None = None  # the step of the last checkpoint written or resumed from
        self.resumed_threads: int | None = None  # the CPU threads of the run we resumed

    # ------------------------------------------------------------------ checkpoints
    def state(self, loader) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_ranks": self._gather_rng(),
            "data": loader.state_dict(),
            "batch_size": loader.batch_size,  # the data position counts batches of this size
            "threads": torch.get_num_threads(),  # CPU reductions depend on it: bit-exact resume needs the same
            "user_state": self.user_state,
            "signature": self.signature,
        }

    def _gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG (dropout differs per rank): restored per rank on resume."""
        own = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return [own]
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, own)
        return states

    def save(self, loader, **extra: Any) -> None:
        """Called on every rank (they all contribute their RNG); rank 0 writes."""
        if not self.options.checkpoint_path:
            return
        state = self.state(loader)
        if is_main_process():
            save_checkpoint(self.options.checkpoint_path, self.model, self.config, trainer=state, **extra)
        if dist.is_initialized():
            dist.barrier()  # no rank runs ahead of a checkpoint that is still being written
        self.saved_step = self.step
        self._interrupt_hint()

    def maybe_resume(self, loader) -> bool:
        """Restore everything from ``checkpoint_path`` if it holds a training state."""
        path = self.options.checkpoint_path
        if not path or not Path(path).is_file():
            return False
        ckpt = read_checkpoint(path)
        state = ckpt["extra"].get("trainer")
        if state is None or "rng_ranks" not in state:
            raise CheckpointError(f"{path} holds no training state to resume from (was it written by another command?)")
        saved = state.get("signature")
        if self.signature is not None and saved != self.signature and self.signature_mismatch is not None:
            message = self.signature_mismatch(saved, self.signature)
            if message:
                raise CheckpointError(message)
        elif self.signature is not None and saved != self.signature:
            differs = sorted(k for k in {*(saved or {}), *self.signature} if (saved or {}).get(k) != self.signature.get(k))
            raise CheckpointError(
                f"{path} holds the resume state of a different run (it differs in: {', '.join(differs)}); "
                "choose another output path, or delete that file to start this run from scratch"
            )
        # The data position is a count of batches: with another batch size it would point at other
        # samples (a larger batch skips some, a smaller one repeats some), so that is refused.
        saved_batch = state.get("batch_size")
        if saved_batch is not None and saved_batch != loader.batch_size:
            raise CheckpointError(
                f"{path} was trained with --batch_size {saved_batch}, this run has --batch_size {loader.batch_size}: "
                f"its data position counts batches of {saved_batch}, so resume with --batch_size {saved_batch}"
            )
        try:
            loader.load_state_dict(state["data"])
        except ValueError as exc:  # another dataset or seed: the loader names both
            raise CheckpointError(f"{path}: {exc}") from None
        load_state(self.model, ckpt["model"], path, self.config.source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rank = dist.get_rank() if dist.is_initialized() else 0
        ranks = state["rng_ranks"]
        own = ranks[rank] if rank < len(ranks) else ranks[0]  # more ranks than saved: reuse rank 0's
        torch.set_rng_state(own["cpu"])
        if own["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(own["cuda"])
        self.step = state["step"]
        self.saved_step = self.step
        self.resumed_threads = state.get("threads")
        self.user_state = dict(state["user_state"])
        self._truncate_metrics()
        return True

    def _interrupt_hint(self) -> None:
        """What Ctrl-C tells the user (``uer.utils.cli.run_main`` prints it and exits 130)."""
        if self.saved_step is None:
            on_interrupt(f"interrupted at step {self.step}, before the first checkpoint: nothing of this run was saved yet; "
                         "run the same command again to start over")
        else:
            where = f" ({self.options.checkpoint_path})" if self.options.checkpoint_path else ""
            on_interrupt(f"interrupted at step {self.step}; the last checkpoint is at step {self.saved_step}{where}; "
                         f"{self.options.resume_hint}")

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resumed from."""
        path = self.options.metrics_path
        if not path or not Path(path).is_file() or not is_main_process():
            return
        keep = [line for line in Path(path).read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
        with atomic_open(path) as f:
            f.write("".join(line + "\n" for line in keep))

    # ------------------------------------------------------------------ the loop
    def fit(
        self,
        loader,
        total_steps: int,
        on_step: Callable[["Trainer"], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``total_steps`` optimizer steps; ``on_step(trainer)`` runs after each step
        (e.g. dev evaluation at epoch ends). Returns the report lines."""
        opts = self.options
        self.wrapped.train()
        device = torch.device(opts.device)
        progress = None
        if opts.progress and is_main_process():
            from tqdm import tqdm

            progress = tqdm(total=total_steps, initial=self.step, desc=opts.desc, unit="step", dynamic_ncols=True, file=sys.stderr)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        tokens, started = 0, time.perf_counter()
        batches = iter(loader)
        self._interrupt_hint()
        while self.step < total_steps:
            for micro in range(opts.accumulation_steps):
                batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
                if "seg" in batch:
                    tokens += int((batch["seg"] > 0).sum())  # real tokens only: padding is not work done
                sync = micro == opts.accumulation_steps - 1 or not isinstance(self.wrapped, nn.parallel.DistributedDataParallel)
                with (contextlib.nullcontext() if sync else self.wrapped.no_sync()), autocast(opts.device, opts.precision):
                    out = self.loss_fn(self.wrapped, batch)
                    loss = self._global_loss(out) / opts.accumulation_steps
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {self.step + 1}; lower the learning rate or check the data")
                self.scaler.scale(loss).backward()
                for key, value in out.items():
                    if value.ndim == 0 and not key.endswith("denominator"):
                        sums[key] = sums.get(key, 0.0) + float(value.detach())
                        counts[key] = counts.get(key, 0) + 1
            if opts.clip_grad_norm > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), opts.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            self._interrupt_hint()
            if progress is not None:
                progress.update(1)
            if self.step % opts.report_steps == 0 or self.step == total_steps:
                elapsed = time.perf_counter() - started
                means, tokens = _reduce_report(sums, counts, tokens)
                line = {"step": self.step, **means,
                        "tokens_per_s": tokens / max(elapsed, 1e-9), "lr": self.scheduler.get_last_lr()[0]}
                self._report(line, progress)
                sums, counts, tokens, started = {}, {}, 0, time.perf_counter()
            if on_step is not None:
                on_step(self)  # before saving, so a checkpoint carries what the callback recorded
            if opts.save_checkpoint_steps and self.step % opts.save_checkpoint_steps == 0:
                self.save(loader)
        if progress is not None:
            progress.close()
        self.save(loader)
        return self.history

    def _global_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss whose DDP-averaged gradient equals one process's gradient on the global batch.

        A target that reports ``<name>_denominator`` (MLM: masked tokens) averages over its own
        rank's count; ranks with different counts would then be weighted wrongly by DDP's mean.
        Re-weighting each such loss by ``local count * world / global count`` makes the average
        over ranks the mean over every rank's tokens, as a single process would compute it.
        """
        loss = out["loss"]
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return loss
        names = sorted(k[: -len("_denominator")] for k in out if k.endswith("_denominator"))
        if not names:
            return loss
        local = torch.stack([out[f"{n}_denominator"].detach().double().cpu() for n in names])
        total = local.clone()
        if dist.get_backend() == "nccl":
            total = total.to(loss.device)
        dist.all_reduce(total)
        total = total.cpu()
        world = dist.get_world_size()
        for i, n in enumerate(names):
            if total[i] > 0:
                weight = float(local[i] * world / total[i])
                loss = loss + out[f"{n}_loss"] * (weight - 1.0)
        return loss

    def _report(self, line: dict[str, float], progress) -> None:
        self.history.append(line)
        if not is_main_process():
            return
        shown = {k: v for k, v in line.items() if k.endswith(("loss", "acc"))}
        text = " ".join(f"{k} {v:.4f}" for k, v in shown.items())
        text += f" | {line['tokens_per_s']:.0f} tokens/s | lr {line['lr']:.2e}"
        if progress is not None:
            progress.write(f"{self.options.desc} step {line['step']}: {text}")
            progress.set_postfix(loss=f"{line['loss']:.4f}", tok_s=f"{line['tokens_per_s']:.0f}")
        elif self.options.log is not None:  # the library does not print: the command says where lines go
            self.options.log(f"{self.options.desc} step {line['step']}: {text}")
        self.write_metrics(line)

    def write_metrics(self, line: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics_path`` (rank 0; synced, so a kill keeps every line
        written; ``maybe_resume`` drops the lines of steps after the checkpoint)."""
        if not self.options.metrics_path or not is_main_process():
            return
        Path(self.options.metrics_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.options.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())


def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    device: str = "cpu",
    precision: str = "fp32",
    loss_fn: LossFn = default_loss,
    parts: Sequence[str] = (),
) -> dict[str, float]:
    """The metrics of ``model`` over a held-out set: eval mode (no dropout), no gradients.

    Means over the whole set, not over batches: a target's ``<name>_loss`` / ``<name>_acc`` is
    weighted by its ``<name>_denominator`` (MLM: the masked tokens of the batch), every other
    scalar by the batch's rows. ``parts``: the targets whose losses ``loss`` sums (a composite
    target's components); ``loss`` is then the sum of their set-wide means, as training sums them.
    No global RNG is drawn, so evaluating between steps leaves training as it would have been.
    The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    target = torch.device(device)
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(target) for k, v in batch.items()}
                rows = float(next(iter(batch.values())).shape[0])
                with autocast(device, precision):
                    out = loss_fn(model, batch)
                for key, value in out.items():
                    if value.ndim != 0 or key.endswith("denominator"):
                        continue
                    weight = _weight_of(key, out, rows)
                    if weight == 0:  # e.g. a batch without a masked token: its MLM mean is 0/0
                        continue
                    sums[key] = sums.get(key, 0.0) + float(value.float()) * weight
                    weights[key] = weights.get(key, 0.0) + weight
    finally:
        model.train(was_training)
    means = {k: sums[k] / weights[k] for k in sorted(sums) if weights[k] > 0}
    if parts and all(f"{p}_loss" in means for p in parts):
        means["loss"] = sum(means[f"{p}_loss"] for p in parts)
    return means


def _weight_of(key: str, out: dict[str, torch.Tensor], rows: float) -> float:
    """The denominator of the target that reported ``key`` (``mlm_acc`` -> ``mlm_denominator``,
    a lone target's ``acc`` -> ``denominator``), else the batch's rows."""
    prefix = key
    while True:
        prefix = prefix.rpartition("_")[0]
        name = f"{prefix}_denominator" if prefix else "denominator"
        if name in out:
            return float(out[name])
        if not prefix:
            return rows
