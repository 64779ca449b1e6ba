"""An installed taxolens works outside the checkout: configs ship in the wheel and load from there."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import make_scene

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installed_in_a_fresh_venv_runs_outside_the_checkout(tiny_models, tmp_path):
    dist = tmp_path / "dist"
    # built from a copy, so the checkout gets no build/ or egg-info folders
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "dist", "*.egg-info",
                                                                "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("taxolens-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    # the heavy dependencies (torch, gradio...) come from this environment; taxolens itself only from the wheel
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def taxolens(*args: str) -> str:
        proc = subprocess.run([venv / "bin" / "taxolens", *args], cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    where = subprocess.run([py, "-c", "import core, configs; print(core.__file__); print(configs.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and site in where
    assert "--detector" in taxolens("app", "--help")
    assert "(default: resnet50)" in taxolens("classifier", "train", "--help")  # configs/classifier.yaml's
    assert "(default: efficientnet_lite0)" in taxolens("classifier", "train", "--config", "demo-classifier", "--help")
    cards = subprocess.run([py, "-c", "from pipeline.species import species_card; "
                                      "print(species_card('Vespa velutina', 'gl')['name'])"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert "avespa asiática" in cards
    det, clf = tiny_models
    make_scene(work / "photos" / "a.jpg", [(8, 8, 30, 24)])
    out = taxolens("run", "photos", "--detector", str(det), "--classifier", str(clf), "--out", "results",
                   "--workers", "0")
    assert "1 photos" in out and (work / "results" / "results.json").is_file()
