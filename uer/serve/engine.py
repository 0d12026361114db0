"""Batching across requests: one worker thread owns the model, requests hand it rows.

Two engines, one interface (``submit`` -> :class:`Job`, ``cancel``, ``start``/``stop``):

- :class:`ContinuousEngine` (FastBERT classifiers): batching at layer granularity. The rows in
  flight live in one pool per layer. A *sweep* runs every non-empty pool once, deepest first, so
  each row moves on by exactly one layer per sweep; rows of different requests (and lengths) in a
  pool are padded together. After each layer the exit policy, with each row's own speed and
  policy, decides who leaves; a row that leaves resolves its slot in its request at once, and the
  rows waiting in the queue take the free places at layer 1 before the next sweep's layer 1 runs.
  A short, confident text therefore never waits for the slowest row of "its" batch, and a burst
  of arrivals does not wait for the rows already deep in the network.
- :class:`PlainEngine` (any model): micro-batching. Collect requests until ``max_batch`` rows or
  ``max_wait_ms`` have passed, run the predictor's own ``predict`` on them to completion. Kept as
  the baseline the continuous engine is measured against, and for taggers.

A row's result never depends on what it was batched with: every layer and branch is per sample
with padding masked (``uer.fastbert.inference``), and the policy state is per row.
A cancelled job (its client went away) has its rows dropped before the next layer they would run.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

Item = str | tuple[str, str]  # one text, or a (text_a, text_b) pair


class Job:
    """One request: its rows, the speed and policy they run with, a Future of their results."""

    def __init__(self, items: Sequence[Any], speed: float, policy: str | None) -> None:
        self.items = list(items)
        self.speed = speed
        self.policy = policy
        self.future: Future = Future()
        self.results: list[Any] = [None] * len(self.items)
        self.remaining = len(self.items)
        self.cancelled = False
        self.submitted = time.monotonic()
        self.encoded: tuple[list[list[int]], list[list[int]]] | None = None  # (ids, segs), the continuous engine's

    def finish_row(self, index: int, result: Any) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.results)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclasses.dataclass
class EngineHooks:
    """What the engine reports (the server turns these into Prometheus metrics); no-ops by default."""

    batch: Callable[[int], None] = lambda rows: None  # rows in one model call (a layer, or a plain batch)
    exit_layer: Callable[[float], None] = lambda layer: None  # a row's exit layer (a tagger: its mean)
    dropped: Callable[[int], None] = lambda rows: None  # rows dropped because their client went away


class Engine:
    """The worker thread, the queue and the life cycle; subclasses implement :meth:`_work`."""

    name = "?"

    def __init__(self, max_batch: int, hooks: EngineHooks | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.hooks = hooks or EngineHooks()
        self._queue: collections.deque[Job] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what killed the worker, if anything did

    # ------------------------------------------------------------------ called from any thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"uer-{self.name}-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the rows already submitted, then end the worker."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, items: Sequence[Any], speed: float, policy: str | None) -> Job:
        job = Job(items, speed, policy)
        if not job.items:
            job.future.set_result([])
            return job
        with self._wake:
            if self._stopping or self.error is not None:
                raise RuntimeError("the engine is stopped")
            self._queue.append(job)
            self._wake.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The client went away: its rows are dropped (counted) before they run another layer."""
        job.cancelled = True
        with self._wake:
            if job in self._queue:
                self._queue.remove(job)
                self.hooks.dropped(job.remaining)
                job.remaining = 0

    def queued_rows(self) -> int:
        """Rows waiting to start (not counting those in flight): the controller's load signal."""
        with self._wake:
            return sum(job.remaining for job in self._queue)

    def in_flight(self) -> int:
        return 0

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # the worker must not die silently: every waiting request fails
            self.error = exc
            with self._wake:
                jobs, self._queue = list(self._queue), collections.deque()
            for job in jobs + self._orphans():
                job.fail(exc)

    def _orphans(self) -> list[Job]:
        return []

    def _work(self) -> None:
        raise NotImplementedError


# ==============================================================================================
# continuous batching (classifiers)


class LayerStack:
    """A FastBERT model as the per-layer steps the continuous engine runs.

    ``fused=True`` runs the layers through ``uer.fused`` (unpadded oneDNN linears; eager where it
    does not support the encoder, saying why in ``reason``), else the model's own modules (the
    server's default: continuous batching changes the row count at almost every call, and a new
    shape costs the oneDNN linears a new primitive). The
    branches are ``FrozenBranch`` snapshots, as in the predictor's runtimes."""

    def __init__(self, model: torch.nn.Module, fused: bool = False) -> None:
        from uer.fused import optimize_for_inference
        from uer.targets.fastbert import FrozenBranch, fastbert_target

        self.model = model.eval()
        target = fastbert_target(model)
        self.layers_num = len(target.branches)
        self.labels_num = target.labels_num
        self.branches = [FrozenBranch(b) for b in target.branches]
        self.activation = target.activation  # the probabilities predict() reads, computed the same way
        self.device = next(model.parameters()).device
        if fused:
            self.encoder = optimize_for_inference(model.embedding, model.encoder)
            self.name, self.reason = self.encoder.mode, self.encoder.reason
        else:
            self.encoder, self.name, self.reason = model.encoder, "eager", "asked for eager"


@dataclasses.dataclass
class _Row:
    job: Job
    index: int  # its place in the job's results
    hidden: torch.Tensor  # (T, H) the output of the last layer it ran (the embedding at first)
    seg: torch.Tensor  # (T,) segments, no padding
    rule: Any  # its ExitPolicy
    state: Any  # its PolicyState (a batch of one)
    full: bool  # runs the full model at its speed (ContinuousEngine.full_depth): only the last branch is needed


def merge_states(states: list) -> Any:
    """Per-row policy states (same policy and speed) -> one state for their rows, in order.

    A state is a dataclass whose tensor fields are per row (first dimension) and whose other
    fields follow from the speed and the model (the same for every row of the group)."""
    first = states[0]
    if len(states) == 1 or not dataclasses.is_dataclass(first):
        return first
    values = {}
    for f in dataclasses.fields(first):
        column = [getattr(s, f.name) for s in states]
        if isinstance(column[0], torch.Tensor):
            values[f.name] = torch.cat(column)
        elif any(v != column[0] for v in column[1:]):
            raise ValueError(f"{type(first).__name__}.{f.name} differs between rows of one group")
        else:
            values[f.name] = column[0]
    return type(first)(**values)


class ContinuousEngine(Engine):
    """Layer-granularity batching across requests for a FastBERT classifier (see the module doc).

    ``max_batch``: the most rows in flight (all pools together); ``pad_id``: the vocabulary's.
    Results per row: ``(probs (labels,) tensor, exit layer 1-based)``.
    """

    name = "continuous"

    def __init__(self, stack: LayerStack, encode: Callable[[list[Item]], tuple[list[list[int]], list[list[int]]]],
                 pad_id: int, max_batch: int = 32, hooks: EngineHooks | None = None,
                 full_depth: Callable[[Any, float], bool] | None = None) -> None:
        super().__init__(max_batch, hooks)
        # (rule, speed) -> the row runs the full model: where the policy never exits early, or where
        # the predictor's exit plan says early exit does not pay (``EarlyExit.plan``), as predict() does
        self.full_depth = full_depth or (lambda rule, speed: rule.never_early(speed))
        self.stack = stack
        self.encode = encode  # items -> (ids, segs) per row, the predictor's own tokenisation
        self.pad_id = pad_id
        self.pools: list[list[_Row]] = [[] for _ in range(stack.layers_num)]
        self._admitting: tuple[Job, int] | None = None  # a job partly admitted: (job, next row)

    def submit(self, items: Sequence[Any], speed: float, policy: Any) -> Job:
        """``policy``: an ExitPolicy, or a name / ``{"name": ...}`` mapping (resolved here, so an
        unknown one is the caller's error and never reaches the worker)."""
        from uer.exit.policies import resolve

        return super().submit(items, speed, resolve(policy))

    def in_flight(self) -> int:
        return sum(len(p) for p in self.pools)

    def _orphans(self) -> list[Job]:
        jobs = {id(r.job): r.job for pool in self.pools for r in pool}
        if self._admitting is not None:
            jobs[id(self._admitting[0])] = self._admitting[0]
        return list(jobs.values())

    # ------------------------------------------------------------------ admission
    def _take(self, room: int) -> list[tuple[Job, int]]:
        """Up to ``room`` (job, row) places from the queue, oldest job first, a job possibly split."""
        taken: list[tuple[Job, int]] = []
        with self._wake:
            while len(taken) < room:
                if self._admitting is None:
                    if not self._queue:
                        break
                    self._admitting = (self._queue.popleft(), 0)
                job, start = self._admitting
                if job.cancelled:
                    self.hooks.dropped(len(job.items) - start)
                    self._admitting = None
                    continue
                stop = min(len(job.items), start + room - len(taken))
                taken += [(job, k) for k in range(start, stop)]
                self._admitting = None if stop == len(job.items) else (job, stop)
        return taken

    @torch.inference_mode()
    def _admit(self, places: list[tuple[Job, int]]) -> None:
        """Tokenise, embed (one call for all of them) and put the rows in the pool of layer 1."""
        kept: list[tuple[Job, int]] = []
        ids: list[list[int]] = []
        segs: list[list[int]] = []
        for job, k in places:
            if job.encoded is None:  # a job is tokenised once, when its first row is admitted
                try:
                    job.encoded = self.encode(job.items)
                except (TypeError, ValueError) as exc:  # what the predictor refuses: this request's error alone
                    job.fail(exc)
                    job.cancelled = True
            if job.future.done():
                continue
            kept.append((job, k))
            ids.append(job.encoded[0][k])
            segs.append(job.encoded[1][k])
        if not kept:
            return
        device = self.stack.device
        src = pad_sequence([torch.tensor(r) for r in ids], batch_first=True, padding_value=self.pad_id).to(device)
        seg = pad_sequence([torch.tensor(r) for r in segs], batch_first=True, padding_value=0).to(device)
        hidden = self.stack.model.embed(src, seg)  # (B, T, H); per token, so padding changes nothing
        labels, layers = self.stack.labels_num, self.stack.layers_num
        for j, (job, k) in enumerate(kept):
            rule = job.policy
            n = len(ids[j])
            self.pools[0].append(_Row(job, k, hidden[j, :n], seg[j, :n], rule,
                                      rule.start(1, labels, layers, job.speed), self.full_depth(rule, job.speed)))

    # ------------------------------------------------------------------ one layer on one pool
    def _drop_cancelled(self, i: int) -> None:
        pool = self.pools[i]
        live = [r for r in pool if not r.job.cancelled]
        if len(live) < len(pool):
            self.hooks.dropped(len(pool) - len(live))
            self.pools[i] = live

    @torch.inference_mode()
    def _step(self, i: int) -> None:
        rows = self.pools[i]
        self.pools[i] = []
        stack = self.stack
        last = i == stack.layers_num - 1
        self.hooks.batch(len(rows))
        hidden = pad_sequence([r.hidden for r in rows], batch_first=True)  # (B, T, H), zeros at padding
        seg = pad_sequence([r.seg for r in rows], batch_first=True)  # (B, T), 0 = padding
        hidden = stack.encoder.layer(i, hidden, stack.encoder.context(seg))
        if last:
            hidden = stack.encoder.finish(hidden)
        need = [j for j, r in enumerate(rows) if last or not r.full]  # rows whose exit test reads this branch
        probs = None
        if need:
            sub_h, sub_s = (hidden, seg) if len(need) == len(rows) else (hidden[need], seg[need])
            real = sub_s > 0
            logits = stack.branches[i](sub_h, None if bool(real.all()) else real)
            probs = stack.activation(logits.float())  # (len(need), labels)
        groups: dict[tuple[int, float], list[int]] = {}  # rows deciding together: same rule, same speed
        for slot, j in enumerate(need):
            groups.setdefault((id(rows[j].rule), rows[j].job.speed), []).append(slot)
        leaving = set()
        for slots in groups.values():
            group = [rows[need[s]] for s in slots]
            state = merge_states([r.state for r in group])
            done = group[0].rule.exits(probs[slots], i, state, last).tolist()
            for n, (s, r) in enumerate(zip(slots, group)):
                if done[n]:
                    leaving.add(need[s])
                    r.job.finish_row(r.index, (probs[s].clone(), i + 1))
                    self.hooks.exit_layer(i + 1)
                elif len(group) > 1:
                    r.state = state.select(torch.tensor([n]))
                else:
                    r.state = state
        if last:
            return
        following = self.pools[i + 1]
        for j, r in enumerate(rows):
            if j not in leaving:
                r.hidden = hidden[j, :r.seg.shape[0]]
                following.append(r)

    def _work(self) -> None:
        layers = self.stack.layers_num
        while True:
            with self._wake:
                while not self._queue and self._admitting is None and not self.in_flight():
                    if self._stopping:
                        return
                    self._wake.wait()
            for i in range(layers - 1, 0, -1):  # deepest first: every row moves on by one layer
                self._drop_cancelled(i)
                if self.pools[i]:
                    self._step(i)
            self._drop_cancelled(0)
            room = self.max_batch - self.in_flight()
            if room > 0:
                places = self._take(room)
                if places:
                    self._admit(places)
            if self.pools[0]:
                self._step(0)


# ==============================================================================================
# plain micro-batching (any model)


class PlainEngine(Engine):
    """Collect up to ``max_batch`` rows or ``max_wait_ms``, then ``run(items, speed, policy)`` to
    completion for each (speed, policy) group. ``run`` returns one result per item."""

    name = "plain"

    def __init__(self, run: Callable[[list[Any], float, str | None], list[Any]], max_batch: int = 32,
                 max_wait_ms: float = 5.0, hooks: EngineHooks | None = None,
                 exit_of: Callable[[Any], float] | None = None) -> None:
        super().__init__(max_batch, hooks)
        self.run = run
        self.max_wait = max_wait_ms / 1000.0
        self.exit_of = exit_of  # a result -> its exit layer (for the hook)
        self._current: list[Job] = []

    def _orphans(self) -> list[Job]:
        return list(self._current)

    def in_flight(self) -> int:
        return sum(job.remaining for job in self._current)

    def _collect(self) -> list[Job] | None:
        with self._wake:
            while not self._queue:
                if self._stopping:
                    return None
                self._wake.wait()
            deadline = time.monotonic() + self.max_wait
            while True:
                rows = sum(len(j.items) for j in self._queue)
                left = deadline - time.monotonic()
                if rows >= self.max_batch or left <= 0 or self._stopping:
                    break
                self._wake.wait(left)
            jobs, rows = [], 0
            while self._queue and (not jobs or rows + len(self._queue[0].items) <= self.max_batch):
                job = self._queue.popleft()
                jobs.append(job)
                rows += len(job.items)
            return jobs

    def _work(self) -> None:
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            self._current = jobs
            groups: dict[tuple[float, str | None], list[Job]] = {}
            for job in jobs:
                if job.cancelled:
                    continue
                groups.setdefault((job.speed, job.policy), []).append(job)
            for (speed, policy), group in groups.items():
                group = [job for job in group if not job.cancelled]  # a client may leave while another group runs
                if not group:
                    continue
                items = [item for job in group for item in job.items]
                self.hooks.batch(len(items))
                try:
                    results = self.run(items, speed, policy)
                except (TypeError, ValueError) as exc:  # a bad request (the app checks first): fail its jobs only
                    for job in group:
                        job.fail(exc)
                    continue
                at = 0
                for job in group:
                    for k in range(len(job.items)):
                        if self.exit_of is not None:
                            self.hooks.exit_layer(self.exit_of(results[at + k]))
                        job.finish_row(k, results[at + k])
                    at += len(job.items)
            self._current = []
