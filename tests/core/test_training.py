"""The trainers' shared skeleton: the kept-epoch policy, one checkpoint format, and a resume that checks settings."""

import pytest
import torch

from classifier import train as ctrain
from core.training import FREE_ON_RESUME, KeptEpoch, ResumeRefused, changed_settings
from detector import train as dtrain
from tests.classifier.test_train import FAST
from tests.detector.test_detector import TINY


def test_the_kept_epoch_policies_on_literal_rows():
    best = KeptEpoch.for_run(has_validation=True)
    assert best.policy == "best val_accuracy"
    rows = [{"val_accuracy": 0.5}, {"val_accuracy": 0.8}, {"val_accuracy": 0.7}, {"val_accuracy": 0.8}]
    assert [best.offer(i + 1, r) for i, r in enumerate(rows)] == [True, True, False, False]
    assert (best.epoch, best.score) == (2, 0.8)
    last = KeptEpoch.for_run(has_validation=False)
    assert last.policy == "last"
    # without validation the last epoch is kept: a training loss is no measure of the best (it was -loss before)
    assert [last.offer(i + 1, {"train_loss": 1 / (i + 1)}) for i in range(3)] == [True, True, True]
    assert (last.epoch, last.score) == (3, None)
    with pytest.raises(ValueError, match="no val_accuracy"):
        KeptEpoch("best val_accuracy").offer(1, {"train_loss": 0.3})
    with pytest.raises(ValueError, match="epoch policy"):
        KeptEpoch("lowest loss")


def test_changed_settings_name_each_one_and_ignore_the_free_ones():
    saved = {"lr": 0.005, "epochs": 4, "workers": 2, "rotations": [0, 90], "seed": 0}
    now = {"lr": 0.01, "epochs": 8, "workers": 0, "rotations": (0, 90), "seed": 0}
    assert changed_settings(saved, now) == ["--lr 0.01 (checkpoint: 0.005)"]
    assert {"epochs", "workers", "device", "force"} <= FREE_ON_RESUME


def test_a_classifier_resume_with_another_lr_is_refused_by_name_and_forced(tiny_classes, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(tiny_classes), "--out", str(out), "--no-eval", *FAST]
    ctrain.main([*args, "--epochs", "1"])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["kept"] == {"policy": "best val_accuracy", "epoch": 1, "score": ckpt["history"][0]["val_accuracy"]}
    assert set(ckpt) >= {"model", "optimizer", "settings"} and "best_state" not in ckpt  # one copy of the weights
    assert [p.name for p in out.glob("kept-*.pt")] == ["kept-1.pt"]
    config_before = (out / "config.yaml").read_text()
    with pytest.raises(ResumeRefused, match=r"--lr 0\.05 \(checkpoint: 0\.01\)"):
        ctrain.main([*args, "--epochs", "2", "--lr", "0.05"])
    assert (out / "config.yaml").read_text() == config_before  # nothing rewritten by a refused resume
    summary = ctrain.main([*args, "--epochs", "2"])  # more epochs: the same run, resumed
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(resumed["history"]) == 2 and summary["best_epoch"] in (1, 2)
    # the kept weights are the file the checkpoint names, and no other is left
    assert [p.name for p in out.glob("kept-*.pt")] == [f"kept-{resumed['kept']['epoch']}.pt"]
    forced = ctrain.main([*args, "--epochs", "3", "--lr", "0.05", "--force"])
    assert forced["best_epoch"] in (1, 2, 3) and "lr: 0.05" in (out / "config.yaml").read_text()


def test_the_detector_keeps_its_last_epoch_says_so_and_refuses_a_changed_resume(tiny_coco, tmp_path):
    out = tmp_path / "det"
    args = ["--train", str(tiny_coco), "--out", str(out), "--epochs", "1", "--no-eval", *TINY]
    dtrain.main(args)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["kept"]["policy"] == "last" and ckpt["settings"]["lr"] == 0.01
    raw = torch.load(out / "model.pt", weights_only=True)
    assert raw["metrics"]["epoch_policy"] == "last" and raw["metrics"]["kept_epoch"] == 1
    with pytest.raises(ResumeRefused, match="--batch-size 2"):
        dtrain.main([*args[:-len(TINY)], *TINY, "--batch-size", "2", "--epochs", "2"])
