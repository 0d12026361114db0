"""Several processes under ``torchrun`` (DDP: gloo on CPU, NCCL on GPUs), for any command.

    rank, world, device = setup_distributed(device)   # a plain run: rank 0 of 1, nothing initialised
    if is_main_process(): write_the_outputs()
    scores = broadcast(scores)                         # rank 0's value on every rank
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def setup_distributed(device: torch.device) -> tuple[int, int, str]:
    """(rank, world_size, device) from torchrun's environment; a plain run is rank 0 of 1.
    Each rank takes its ``LOCAL_RANK`` GPU on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, str(device)
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), world, f"cuda:{local_rank}" if cuda else "cpu"


def end_distributed() -> None:
    """Leave the process group (a command's last act under torchrun; nothing in a plain run)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def launched_as_main() -> bool:
    """Rank 0 as torchrun's environment says, for what a command does before :func:`setup_distributed`
    (take the output lock, print what it chose); a plain run is rank 0."""
    return os.environ.get("RANK", "0") == "0"


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank; the value itself in a plain run."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(rows: list[int]) -> tuple[list[int], bool]:
    """This rank's contiguous share of one global batch's rows (sizes differ by at most one), and
    whether it is real. A rank left without rows gets the batch's first row as a stand-in, to be
    weighted 0 (its loss must report a ``denominator`` of 0), since every rank must run a step."""
    w, r = world_size(), rank()
    if w == 1:
        return rows, True
    base, extra = divmod(len(rows), w)
    start = r * base + min(r, extra)
    mine = rows[start:start + base + (r < extra)]
    return (mine, True) if mine else (rows[:1], False)
