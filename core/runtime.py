"""Device choice and seeding, shared by training and inference of both stages."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys

import numpy as np
import torch

#: devices where training's convolutions run on channels_last tensors. On this project's CPU (AVX-512) it is 1.49x
#: faster per step for the demo classifier and 1.43x for the demo detector (benchmarks/issue20_training.py), but
#: twice measured over three seeds the classifiers trained so named more never-seen insects wrongly: the demo
#: recipe (bumblebees, issue 20) and the demo's agreeing ensemble (giant hornets named V. velutina 2-5 against 0-1;
#: BENCHMARKS.md, issue 19): kept to CUDA
CHANNELS_LAST = ("cuda",)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; a named device that is absent is an error."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    if name == "mps" and not has_mps:
        raise ValueError("--device mps: Apple MPS is not available (use --device auto or cpu)")
    return torch.device(name)


def one_blas_thread() -> None:
    """Hold every BLAS library loaded by now (NumPy's) to one thread, for the rest of this process.

    For processes that run the networks: OpenBLAS's idle workers spin for about a tenth of a second after each
    threaded call, so the unknown score's product (crops' embeddings by 1,464 training ones) between the classifier
    and the next photo's detector left the detector at 110 ms instead of 58 on two cores, its threads waiting for
    cores the spinning workers held (BENCHMARKS.md, issue 20). One thread gave the same products bit for bit
    (random embeddings of the bank's shape, 1 to 200 rows against 1,464). Process-wide and not
    restored, like ``torch.set_num_threads``: threadpoolctl lets only one Python thread change OpenBLAS's limit, so a
    limit taken and given back in each of the app's request threads would hold for some requests and not others.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; cuDNN picks deterministic kernels where it can."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a child process: be killed (SIGKILL) the moment the parent dies, even by ``kill -9``.

    Linux's ``prctl(PR_SET_PDEATHSIG)``; elsewhere a no-op (DataLoader's own watchdog remains). If the
    parent ``parent_pid`` died before this ran, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


class WorkerInit:
    """A picklable DataLoader ``worker_init_fn``: the worker dies with the process that started it.

    Then :func:`seed_worker` runs when ``seed`` is set. A killed run leaves no loader worker behind.
    """

    def __init__(self, seed: bool = False) -> None:
        self.parent_pid = os.getpid()
        self.seed = seed

    def __call__(self, worker_id: int) -> None:
        """Run in each loader worker as it starts."""
        die_with_parent(self.parent_pid)
        if self.seed:
            seed_worker(worker_id)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: NumPy, Python and the dataset's albumentations seeded from torch's seed.

    torch seeds each worker from the main process's generator (reseeded every epoch); albumentations keeps
    a generator of its own, so it is seeded from the same value to make epochs reproducible.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None:
        transform.set_random_seed(seed)
