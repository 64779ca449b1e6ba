"""Imports run one way: formats and core know no stage; detector and classifier know each other not;
pipeline knows no app; the app and the command line sit on top. Read from every module's source, imports
inside functions included."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core", "annotations", "detector", "classifier", "review", "pipeline", "webapp", "gradio_app", "tools",
        "configs", "sources"}
# what each layer may import of ours (itself included)
ALLOWED = {
    "configs": set(),
    "core": {"core", "configs"},
    "annotations": {"core", "annotations"},
    "detector": {"core", "annotations", "detector"},
    "classifier": {"core", "annotations", "classifier"},
    # the store of predictions and the review's exports: records are plain dicts, so no pipeline
    "review": {"core", "annotations", "classifier", "review", "configs"},
    "pipeline": {"core", "annotations", "detector", "classifier", "review", "pipeline", "configs"},
    # the web app lays out what pipeline/ and review/ return; gradio_app.py is only its entry point
    "webapp": {"core", "pipeline", "review", "configs", "webapp"},
    "gradio_app": {"webapp"},
    # training photos from public sources: they know the shared core and no stage
    "sources": {"core", "configs", "sources"},
    "tools": OURS,
}


def imported(path: Path) -> set[str]:
    """Top-level names of our packages that a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


def sources() -> list[tuple[str, Path]]:
    files = [("gradio_app", ROOT / "gradio_app.py")]
    for layer in ALLOWED:
        if layer != "gradio_app":
            files += [(layer, p) for p in sorted((ROOT / layer).rglob("*.py"))]
    return files


@pytest.mark.parametrize(("layer", "path"), sources(), ids=lambda x: str(x.relative_to(ROOT)) if isinstance(x, Path)
                         else x)
def test_imports_run_one_way(layer, path):
    wrong = imported(path) - ALLOWED[layer]
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(wrong)}"


def test_the_rule_catches_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from classifier.predict import Classifier\n    import gradio_app\n")
    assert imported(bad) == {"classifier", "gradio_app"}
