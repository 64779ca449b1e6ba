"""``taxolens run --engine ray``: the same records as the local run, from Ray Data actors on a local Ray."""

import json

import pytest

from tests.conftest import make_scene, shared
from tools.cli import main as cli


@pytest.fixture
def local_ray():
    """One local Ray instance with 2 CPUs for the test (the run uses it, as it would use a cluster's)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_records_equal_local_records_and_resume(tiny_models, tmp_path, local_ray):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    try:
        for p in sorted((shared("hymenoptera") / "val" / "ants").iterdir())[:3]:
            (folder / p.name).parent.mkdir(parents=True, exist_ok=True)
            (folder / p.name).symlink_to(p)
    except BaseException:  # no shared data: generated scenes
        for i in range(3):
            make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    make_scene(folder / "sub" / "scene.jpg", [(8, 8, 30, 24)], seed=7)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    base = [str(folder), "--detector", str(det), "--classifier", str(clf), "--workers", "0", "--threads", "1"]
    assert cli(["run", *base, "--out", str(tmp_path / "local")]) == 0
    # as if a Ray run had been killed after its first photo: the rerun does the rest, nothing twice
    local = json.loads((tmp_path / "local" / "results.json").read_text())
    assert cli(["run", *base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-actors", "2"]) == 0
    ray_run = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert [r["file"] for r in ray_run["images"]] == [r["file"] for r in local["images"]]
    for a, b in zip(local["images"], ray_run["images"]):
        assert a["status"] == b["status"] and a.get("failure") == b.get("failure")
        assert [(d["box"], d["taxon"], d["reason"]) for d in a["detections"]] == [
            (d["box"], d["taxon"], d["reason"]) for d in b["detections"]]
    jsonl = tmp_path / "ray" / "results.jsonl"
    lines = jsonl.read_text().splitlines()
    jsonl.write_text(lines[0] + "\n")
    assert cli(["run", *base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--ray-actors", "2"]) == 0
    files = [json.loads(line)["file"] for line in jsonl.read_text().splitlines()]
    assert sorted(files) == sorted(r["file"] for r in local["images"]) and len(files) == len(set(files))
