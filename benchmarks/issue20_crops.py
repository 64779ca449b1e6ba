"""Issue 20: the demo's training crops cut with the detector on PyTorch and on OpenVINO, timed and compared.

Usage: ``benchmarks/issue20_crops.py [DEMO_OUT]`` (default runs/demo, after ``make demo``): for each engine, the
demo's annotation files copied into runs/crops-<engine>/data and ``tools.demo.make_crops`` timed there with the
demo's detector; then the crops per class and the mined boxes of both compared.
"""
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, ".")
from tools.demo import make_crops  # noqa: E402

demo = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
detector = demo / "detector" / "model.pt"
found = {}
for engine in ("torch", "openvino"):
    out = Path("runs") / f"crops-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    for f in (demo / "data").glob("*.json"):
        shutil.copy(f, out / "data" / f.name)
    start = time.perf_counter()
    crops = make_crops(out, detector, engine)
    seconds = time.perf_counter() - start
    counts = {p.name: len(list(p.iterdir())) for p in sorted(crops.iterdir()) if p.is_dir()}
    ants = json.loads((out / "data" / "ants.json").read_text())
    boxes = sorted((a["image_id"], tuple(round(v) for v in a["bbox"])) for a in ants["annotations"])
    found[engine] = {"seconds": round(seconds, 1), "crops_per_class": counts, "ant_boxes": boxes}
    print(engine, f"{seconds:.1f} s", counts, flush=True)
a, b = found["torch"], found["openvino"]
same = sum(x == y for x, y in zip(a["ant_boxes"], b["ant_boxes"]))
print(f"make_crops: torch {a['seconds']} s, openvino {b['seconds']} s ({a['seconds'] / b['seconds']:.2f}x); "
      f"crops per class equal: {a['crops_per_class'] == b['crops_per_class']}; ant boxes equal to the pixel: "
      f"{same} of {len(a['ant_boxes'])} (openvino {len(b['ant_boxes'])})")
