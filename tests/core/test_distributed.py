"""Several training processes (torchrun's environment, gloo on CPUs): averages, barriers, DDP, the locked folder."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from core.distributed import Dist, barrier, init_distributed, mean_across, process_device, training_run, wrap


def test_one_process_without_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = init_distributed(torch.device("cpu"))
    assert d == Dist() and d.main and not d.enabled
    assert mean_across(3.0, d, weight=5) == 3.0
    model = torch.nn.Linear(2, 1)
    assert wrap(model, d, torch.device("cpu")) is model
    assert process_device(torch.device("cpu"), d) == torch.device("cpu")
    barrier(d)  # no group: returns at once


def test_training_run_locks_the_folder_and_refuses_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        with training_run(tmp_path / "file", "cpu", "test"):
            pass
    with training_run(tmp_path / "run", "cpu", "first") as (device, d):
        assert device.type == "cpu" and d.main
        with pytest.raises(Exception, match="first|in use|running|locked"):
            with training_run(tmp_path / "run", "cpu", "second"):
                pass


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    d = init_distributed(torch.device("cpu"))
    # rank 0 averaged 1.0 over 1 item, rank 1 averaged 4.0 over 3 items: the weighted mean is 13/4
    value = mean_across(1.0 if rank == 0 else 4.0, d, weight=1 if rank == 0 else 3)
    model = wrap(torch.nn.Linear(2, 1), d, torch.device("cpu"))
    barrier(d)
    out[rank] = (d.rank, d.world_size, value, type(model).__name__)
    torch.distributed.destroy_process_group()


def test_two_processes_average_by_weight_and_wrap_in_ddp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
        results = dict(out)
    assert results[0] == (0, 2, pytest.approx(13 / 4), "DistributedDataParallel")
    assert results[1] == (1, 2, pytest.approx(13 / 4), "DistributedDataParallel")
