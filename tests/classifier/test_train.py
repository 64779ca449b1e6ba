import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from classifier import train
from classifier.data import load_class_data
from classifier.predict import Classifier
from core.io import read_image
from core.modelfile import ModelFileError, load_model_file
from tests.conftest import make_photo, shared

FAST = ["--arch", "resnet18", "--weights", "none", "--input-size", "32", "--batch-size", "8", "--lr", "0.01",
        "--momentum", "0.9", "--workers", "0", "--crop-scale", "0.6", "1.0", "--device", "cpu"]


def test_short_training_lowers_the_loss(tiny_classes, tmp_path):
    summary = train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "4",
                          "--no-eval", *FAST])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert summary["val_accuracy"] is not None
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "arch: resnet18" in config and "momentum: 0.9" in config  # resolved settings next to the run


def test_release_file_round_trips_with_weights_only(tiny_classes, tmp_path):
    train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "1", *FAST])
    path = tmp_path / "run" / "model.pt"
    raw = torch.load(path, weights_only=True)
    for key in ("architecture", "class_names", "preprocessing", "threshold", "metrics", "training_data",
                "taxolens_version", "model_version", "weights_sha256"):
        assert key in raw, key
    assert raw["class_names"] == ["blue", "green", "red"] and raw["threshold"] == 0.94
    assert raw["preprocessing"]["input_size"] == 32
    clf = Classifier.from_file(path)
    from core.io import read_image

    probs = clf.predict(read_image(make_photo(tmp_path / "p.jpg", (220, 30, 30))))
    assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    # evaluation wrote the study's tables and figures
    for name in ("report.md", "report.json", "confusion_all.csv", "confusion_all.png",
                 "confusion_thresholded.csv", "confusion_thresholded.png", "sweep.csv", "sweep.png"):
        assert (tmp_path / "run" / "eval" / name).is_file(), name
    # the model file says what its numbers are worth: a fitted temperature and an unknown score
    assert raw["calibration"]["temperature"] > 0 and raw["calibration"]["val_crops"] == raw["training_data"]["val"]
    assert raw["unknown"]["method"] in ("msp", "energy", "maxlogit", "centroid", "knn")
    assert raw["background_classes"] == [] and raw["outlier_classes"] == []
    assert (tmp_path / "run" / "eval" / "reliability.png").is_file()
    # evaluate again from the file alone: the same validation split, recorded in the model file
    from classifier import evaluate

    again = evaluate.main(["--model", str(path), "--data", str(tiny_classes), "--out", str(tmp_path / "ev"),
                           "--workers", "0", "--threshold", "0.5", "--recorded-split"])
    first = json.loads((tmp_path / "run" / "eval" / "report.json").read_text())
    assert again["all"]["confusion_matrix"] == first["all"]["confusion_matrix"]
    assert again["thresholded"]["threshold"] == 0.5
    # a folder of class folders without train/ and val/: every photo in it
    every = evaluate.main(["--model", str(path), "--data", str(tiny_classes), "--out", str(tmp_path / "ev2"),
                           "--workers", "0"])
    assert every["all"]["n"] == 36 and first["all"]["n"] == raw["training_data"]["val"] < 36
    with pytest.raises(ModelFileError, match="detector model file is needed"):
        load_model_file(path, "detector")
    tampered = dict(raw)
    tampered["state_dict"] = {k: v.clone() for k, v in raw["state_dict"].items()}
    next(iter(tampered["state_dict"].values())).add_(1)
    torch.save(tampered, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_model_file(tmp_path / "bad.pt", "classifier")
    torch.save({"model": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(ModelFileError, match="not a taxolens release"):
        load_model_file(tmp_path / "ckpt.pt", "classifier")


def test_resumed_run_equals_uninterrupted_run(tiny_classes, tmp_path):
    args = ["--data", str(tiny_classes), "--no-eval", *FAST]
    train.main([*args, "--out", str(tmp_path / "straight"), "--epochs", "3"])
    train.main([*args, "--out", str(tmp_path / "resumed"), "--epochs", "1"])  # stops after epoch 1...
    train.main([*args, "--out", str(tmp_path / "resumed"), "--epochs", "3"])  # ...and picks up from there
    a = json.loads((tmp_path / "straight" / "history.json").read_text())
    b = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [r["epoch"] for r in b] == [1, 2, 3]
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-5)


def test_resume_after_kill_9(tiny_classes, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tools.cli", "classifier", "train", "--data", str(tiny_classes),
           "--out", str(out), "--epochs", "12", "--no-eval", *FAST]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]  # never half-written
    assert 1 <= done < 12
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming {out / 'checkpoint.pt'} after epoch {done} of 12" in rerun.stderr
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, 13))
    assert (out / "model.pt").is_file()


def test_unreadable_files_are_skipped_and_named(tiny_classes, caplog):
    (tiny_classes / "red" / "fake.jpg").write_text("not a photo")
    (tiny_classes / "blue" / "empty.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        data = load_class_data(tiny_classes, val_fraction=0.25, seed=0)
    skipped = {Path(s["path"]).name: s["reason"] for s in data.skipped}
    assert set(skipped) == {"fake.jpg", "empty.png"}
    assert "not an image" in skipped["fake.jpg"] and "empty" in skipped["empty.png"]
    assert "fake.jpg" in caplog.text and "empty.png" in caplog.text
    assert all("fake" not in p for p, _ in data.train + data.val)
    report = data.report()
    assert report["total"] == 36 and len(report["skipped"]) == 2


def test_dataset_report_and_group_split(tiny_classes):
    data = load_class_data(tiny_classes, val_fraction=0.25, seed=0, group_regex=r"^(obs\d+)_")
    train_groups = {Path(p).name.split("_")[0] for p, _ in data.train}
    val_groups = {Path(p).name.split("_")[0] for p, _ in data.val}
    assert val_groups and not train_groups & val_groups
    rows = {r["class"]: r for r in data.report()["classes"]}
    assert rows["red"]["total"] == 12 and rows["red"]["imbalance"] == 1.0
    assert rows["red"]["train"] + rows["red"]["val"] == 12


def test_unknown_architecture_and_config_key(tmp_path, tiny_classes, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--data", str(tiny_classes), "--out", str(tmp_path), "--arch", "vgg99"])
    assert exc.value.code == 2 and "invalid choice: 'vgg99'" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lernrate: 0.1\n")
    with pytest.raises(SystemExit) as exc:
        train.main(["--config", str(cfg), "--data", str(tiny_classes), "--out", str(tmp_path)])
    assert exc.value.code == 2 and f"{cfg}: unknown setting(s) lernrate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--config", "no-such-profile", "--data", str(tiny_classes), "--out", str(tmp_path)])
    assert "no packaged profile 'no-such-profile'" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_fine_tune_on_real_photos_beats_chance(tmp_path):
    hym = shared("hymenoptera")
    root = tmp_path / "hym"
    for split, per_class in (("train", 24), ("val", 20)):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for src in sorted((hym / split / cls).iterdir())[:per_class]:
                (root / split / cls / src.name).symlink_to(src)
    summary = train.main(["--data", str(root), "--out", str(tmp_path / "run"), "--arch", "efficientnet_lite0",
                          "--weights", "imagenet", "--epochs", "4", "--batch-size", "8", "--lr", "0.01",
                          "--momentum", "0.9", "--input-size", "160", "--crop-scale", "0.4", "1.0", "--workers", "0",
                          "--device", "cpu"])
    # 40 held-out photos, two balanced classes: chance is 0.5
    assert summary["eval"]["accuracy"] >= 0.75, summary


def test_background_and_look_alike_classes_thresholds_and_field_augmentation(tiny_classes, tmp_path):
    # "green" plays the background (a dish, a leaf), "blue" the look-alikes; only "red" is an organism
    (tiny_classes / "green").rename(tiny_classes / "no organism")
    train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "1", "--augment", "field",
                "--outlier-classes", "blue", "--target-precision", "0.9", *FAST])
    raw = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert raw["background_classes"] == ["no organism"] and raw["outlier_classes"] == ["blue"]
    assert raw["training"]["augment"] == "field"
    # thresholds for organisms only, each reached on the validation crops or set out of reach
    assert set(raw["class_thresholds"]) == {"red"} == set(raw["class_thresholds_fit"]["per_class"])
    assert raw["class_thresholds_fit"]["target_precision"] == 0.9
    assert raw["unknown"]["method"] == "knn" and raw["unknown"]["look_alike_val_crops"] > 0
    assert set(raw["unknown"]["measured"]) == {"msp", "energy", "maxlogit", "centroid", "knn"}
    # the half-precision bank is made float32 once per loaded classifier, and scores exactly as stored
    from classifier.calibration import unknown_scores

    clf = Classifier.from_file(tmp_path / "run" / "model.pt")
    bank = clf.unknown_reference()["bank"]
    assert raw["unknown"]["reference"]["bank"].dtype == torch.float16 and bank.dtype == "float32"
    assert clf.unknown_reference()["bank"] is bank
    crops = [read_image(p) for p in sorted((tiny_classes / "red").iterdir())[:4]]
    got = clf.analyse(crops)
    expected = unknown_scores("knn", got.logits, got.embeddings, raw["unknown"]["reference"], clf.temperature,
                              clf.organism_indices)
    assert got.unknown_scores is not None and (got.unknown_scores == expected).all()
    with pytest.raises(ValueError, match="no class folder for outlier class"):
        train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "r2"), "--outlier-classes", "purple",
                    *FAST])


def test_linear_recipe_fits_the_last_layer_on_frozen_features(tiny_classes, tmp_path):
    base = ["--data", str(tiny_classes), "--arch", "resnet18", "--weights", "none", "--input-size", "32",
            "--workers", "0", "--device", "cpu", "--recipe", "linear", "--augment", "field", "--seed", "3"]
    summary = train.main([*base, "--out", str(tmp_path / "run"), "--views", "3", "--hierarchy-weight", "0.5",
                          "--hierarchy-ranks", "genus", "family"])
    raw = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert raw["training"]["recipe"] == "linear" and raw["training"]["views"] == 3
    assert raw["training"]["hierarchy_weight"] == 0.5 and raw["training"]["hierarchy_ranks"] == ["genus", "family"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 1 and history[0]["val_accuracy"] == summary["val_accuracy"]
    # random features of three colours are enough for a linear layer; the release file holds that layer
    clf = Classifier.from_file(tmp_path / "run" / "model.pt")
    data = load_class_data(tiny_classes, seed=3)
    right = [clf.predict(read_image(p)).argmax() == c for p, c in data.val]
    assert sum(right) / len(right) >= 0.9 and summary["val_accuracy"] >= 0.9
    # the backbone is the one it was built with: only the last layer differs from a fresh network
    from classifier.models import build_classifier
    from core.runtime import seed_everything

    seed_everything(3)
    fresh, _ = build_classifier("resnet18", 3, "none")
    differ = {k for k, v in fresh.state_dict().items() if not torch.equal(v, raw["state_dict"][k])}
    assert differ == {"fc.weight", "fc.bias"}


def test_linear_recipe_reads_its_cached_features_back(tiny_classes, tmp_path, caplog):
    base = ["--data", str(tiny_classes), "--arch", "resnet18", "--weights", "none", "--input-size", "32",
            "--workers", "0", "--device", "cpu", "--recipe", "linear", "--views", "3", "--no-eval"]
    from core.runtime import seed_everything

    seed_everything(0)  # the same random network both times
    train.main([*base, "--out", str(tmp_path / "a")])
    cached = sorted((tmp_path / "a" / "features").glob("features-*.npz"))
    assert len(cached) == 4  # three copies of the training crops, the validation crops
    seed_everything(0)
    with caplog.at_level(logging.INFO, logger="classifier.linear"):
        train.main([*base, "--out", str(tmp_path / "b"), "--feature-cache", str(tmp_path / "a" / "features")])
    assert caplog.text.count("features read from") == 4
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True)["state_dict"] for r in ("a", "b"))
    assert torch.equal(a["fc.weight"], b["fc.weight"])
    # another seed: another split and other augmented copies, in new files beside the first
    seed_everything(0)
    train.main([*base, "--out", str(tmp_path / "c"), "--feature-cache", str(tmp_path / "a" / "features"),
                "--seed", "1"])
    assert len(list((tmp_path / "a" / "features").glob("features-*.npz"))) >= 5


def test_linear_finetune_starts_from_the_fitted_last_layer(tiny_classes, tmp_path):
    base = ["--data", str(tiny_classes), "--arch", "resnet18", "--weights", "none", "--input-size", "32",
            "--workers", "0", "--device", "cpu", "--no-eval", "--feature-cache", str(tmp_path / "features")]
    from core.runtime import seed_everything

    seed_everything(0)
    train.main([*base, "--out", str(tmp_path / "linear"), "--recipe", "linear"])
    seed_everything(0)  # the same random network: a tiny learning rate leaves the fitted layer as it was
    train.main([*base, "--out", str(tmp_path / "lpft"), "--recipe", "linear-finetune", "--epochs", "1",
                "--lr", "1e-12"])
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True)["state_dict"] for r in ("linear", "lpft"))
    assert a["fc.weight"].abs().max() > 0.01  # a fitted layer, not a zero one
    assert torch.allclose(a["fc.weight"], b["fc.weight"], atol=1e-6) and torch.allclose(a["fc.bias"], b["fc.bias"],
                                                                                     atol=1e-6)
    assert json.loads((tmp_path / "lpft" / "history.json").read_text())[0]["epoch"] == 1


def _weights(state: dict) -> dict:
    """Float tensors of a state dict, the averaged model's ``module.`` prefix taken off (its counter left out)."""
    return {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged" and v.is_floating_point()}


def test_moving_average_is_validated_kept_and_released(tiny_classes, tmp_path):
    args = ["--data", str(tiny_classes), "--no-eval", *FAST, "--epochs", "1"]
    train.main([*args, "--out", str(tmp_path / "ema"), "--ema", "0.9"])
    ckpt = torch.load(tmp_path / "ema" / "checkpoint.pt", weights_only=True)
    released = torch.load(tmp_path / "ema" / "model.pt", weights_only=True)
    assert released["training"]["ema"] == 0.9
    steps = len(load_class_data(tiny_classes).train) // 8  # batches of 8, the last partial one dropped
    assert int(ckpt["averaged"]["n_averaged"]) == steps >= 2
    sgd, average = _weights(ckpt["model"]), _weights(ckpt["averaged"])
    assert set(sgd) == set(average) == set(_weights(released["state_dict"]))
    for k, v in _weights(released["state_dict"]).items():  # the release holds the average, not SGD's last step
        assert torch.equal(v, average[k]), k
    assert any(not torch.allclose(sgd[k], average[k]) for k in sgd)
    # the average of SGD's weights with decay 0 is SGD's last step itself: the wiring, not only a difference
    train.main([*args, "--out", str(tmp_path / "zero"), "--ema", "0.0"])
    plain = torch.load(tmp_path / "zero" / "checkpoint.pt", weights_only=True)
    assert plain["averaged"] is None
    for k, v in _weights(torch.load(tmp_path / "zero" / "model.pt", weights_only=True)["state_dict"]).items():
        assert torch.equal(v, _weights(plain["model"])[k]), k


def test_moving_average_resumes_where_it_stopped(tiny_classes, tmp_path):
    args = ["--data", str(tiny_classes), "--no-eval", *FAST, "--ema", "0.8"]
    train.main([*args, "--out", str(tmp_path / "straight"), "--epochs", "3"])
    train.main([*args, "--out", str(tmp_path / "resumed"), "--epochs", "1"])
    train.main([*args, "--out", str(tmp_path / "resumed"), "--epochs", "3"])
    a, b = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("straight", "resumed"))
    assert int(a["averaged"]["n_averaged"]) == int(b["averaged"]["n_averaged"])
    for k, v in _weights(a["averaged"]).items():
        assert torch.allclose(v, _weights(b["averaged"])[k], atol=1e-5), k
    with pytest.raises(ValueError, match="--ema"):  # another decay is another run
        train.main([*args[:-2], "--ema", "0.5", "--out", str(tmp_path / "resumed"), "--epochs", "4"])


@pytest.mark.parametrize("options, message", [(["--ema", "1.0"], "a decay in"),
                                              (["--ema", "0.9", "--recipe", "linear"], "takes none")])
def test_moving_average_refused_where_it_means_nothing(tiny_classes, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-eval",
                    *FAST, *options])
