"""Devices, seeds, and loader workers that die with the process that started them."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.runtime import WorkerInit, one_blas_thread, pick_device, seed_everything, seed_worker

ROOT = Path(__file__).resolve().parents[2]


def test_pick_device_names_an_absent_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: no CUDA device"):
            pick_device("cuda")


def test_seed_everything_repeats_every_generator():
    def draw():
        return (np.random.rand(), torch.rand(1).item(), __import__("random").random())

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_seed_worker_seeds_the_dataset_transform():
    seen = []

    class Transform:
        def set_random_seed(self, seed):
            seen.append(seed)

    class Data(torch.utils.data.Dataset):
        transform = Transform()

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return i

    loader = torch.utils.data.DataLoader(Data(), num_workers=1, worker_init_fn=WorkerInit(seed=True))
    assert [int(x) for x in loader] == [0, 1]  # WorkerInit is picklable and runs in the worker
    seed_worker(0)  # in the main process there is no worker info: nothing to seed, no error
    assert seen == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_that_asked_to_die_with_its_parent_dies_when_the_parent_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time, sys; sys.path.insert(0, {str(ROOT)!r}); from core.runtime import die_with_parent; "
             f"die_with_parent(os.getppid()); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"])
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    child_pid = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{child_pid}/status").read_text()
        except FileNotFoundError:
            break
        if "\nState:\tZ" in state:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")


def test_a_network_trained_in_channels_last_is_stored_as_the_usual_one(tmp_path):
    """Training runs convolutions in channels_last where CHANNELS_LAST says; the release file holds contiguous
    weights with the digest of the same weights in the usual layout, and loads with weights_only."""
    from core.modelfile import load_model_file, save_model_file, weights_sha256
    from core.runtime import CHANNELS_LAST

    assert "cuda" in CHANNELS_LAST
    conv = torch.nn.Conv2d(3, 4, 3)
    usual = {k: v.clone() for k, v in conv.state_dict().items()}
    conv = conv.to(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    written = save_model_file(tmp_path / "m.pt", kind="classifier", state_dict=conv.state_dict(),
                              meta={"architecture": "x", "class_names": ["a", "b"]})
    assert written["weights_sha256"] == weights_sha256(usual)
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]
    assert all(t.is_contiguous() for t in loaded.values())
    assert load_model_file(tmp_path / "m.pt", "classifier")["weights_sha256"] == weights_sha256(usual)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_one_blas_thread_holds_every_blas_to_one_thread_with_the_same_products():
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    emb, bank = rng.random((8, 256), np.float32), rng.random((300, 256), np.float32)
    with threadpool_limits(2, user_api="blas"):  # two threads before, on any machine; given back after the test
        assert _blas_threads() and set(_blas_threads()) == {2}
        before = emb @ bank.T
        one_blas_thread()
        assert set(_blas_threads()) == {1}
        assert np.array_equal(emb @ bank.T, before)
