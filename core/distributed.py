"""Training on several processes with ``torchrun``: DistributedDataParallel, gloo on CPUs, nccl on GPUs.

``torchrun --nproc_per_node 2 -m tools.cli classifier train ...`` (or ``detector train``) starts two
processes; each reads its rank from the environment torchrun sets. Each trains on its own share of the
photos (a ``DistributedSampler``), gradients are averaged at every step, and only rank 0 writes
checkpoints, history, reports and the model file (the others wait at a barrier). A plain ``python``
launch (no ``WORLD_SIZE``) is one process, exactly as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from core.io import folder_lock
from core.runtime import pick_device


@dataclass(frozen=True)
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def process_device(device: torch.device, d: Dist) -> torch.device:
    """This process's device: its own GPU (``cuda:LOCAL_RANK``) under torchrun, else ``device``."""
    return torch.device("cuda", d.local_rank) if device.type == "cuda" and d.enabled else device


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when several processes train; unchanged otherwise."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        # batch statistics over the whole step's photos, as one process with the same total batch sees them
        # (PyTorch's SyncBatchNorm is GPU-only: on CPUs each process normalises by its own share)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[d.local_rank] if device.type == "cuda" else None)


def mean_across(value: float, d: Dist, weight: float = 1.0) -> float:
    """The weighted mean of ``value`` over all processes (``weight``: how many items it averages)."""
    if not d.enabled:
        return value
    t = torch.tensor([value * weight, weight], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1]) if t[1] else value


def barrier(d: Dist) -> None:
    """Wait for every process (rank 0 writing a checkpoint, say)."""
    if d.enabled:
        dist.barrier()


def finish(d: Dist) -> None:
    """Leave the process group."""
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def training_run(out: Path, device_name: str, what: str) -> Iterator[tuple[torch.device, Dist]]:
    """What both trainers do around a run: ``(device, Dist)`` for this process, ``out`` locked by rank 0.

    Refuses an ``--out`` that is a file; joins the process group under torchrun and leaves it at the end,
    whatever happens.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a folder")
    device = pick_device(device_name)
    d = init_distributed(device)  # several processes under torchrun; one otherwise
    try:
        with folder_lock(out, what) if d.main else contextlib.nullcontext():
            yield process_device(device, d), d
    finally:
        finish(d)
