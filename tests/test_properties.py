"""Property-based tests (Hypothesis) for the readers of annotation files and the writer of records.

Whatever a label file or a results file holds, the reader never raises on it and never invents a box;
whatever numbers a record holds, what is written is strict JSON.
"""

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotations.coco import import_annotations
from core.io import check_jsonl, finite, to_json
from tests.conftest import make_scene

W, H = 100, 80
ROOT = Path(tempfile.mkdtemp(prefix="taxolens-properties-"))
make_scene(ROOT / "yolo" / "images" / "a.jpg", [(8, 8, 30, 24)], size=(W, H))
(ROOT / "yolo" / "labels").mkdir(parents=True, exist_ok=True)
(ROOT / "yolo" / "data.yaml").write_text("names: [bee, hornet, wasp]\n")
make_scene(ROOT / "csv" / "a.jpg", [(8, 8, 30, 24)], size=(W, H))

NUMBER_TOKENS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-5, 5).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "0.5", "1.0", "", "x", "0x10", "١"]),
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_boxes(coco: dict) -> None:
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert all(math.isfinite(v) for v in (x, y, w, h))
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W + 1e-6 and y + h <= H + 1e-6
        assert a["area"] == w * h


@SETTINGS
@given(st.lists(st.lists(NUMBER_TOKENS, min_size=0, max_size=9).map(" ".join), max_size=6))
def test_yolo_reader_never_raises_nor_invents_a_box(lines):
    (ROOT / "yolo" / "labels" / "a.txt").write_text("\n".join(lines))
    coco, problems = import_annotations("yolo", ROOT / "yolo", ROOT / "yolo.json")
    _check_boxes(coco)
    assert len(coco["annotations"]) <= sum(bool(line.split()) for line in lines)
    json.loads((ROOT / "yolo.json").read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["a.jpg", "missing.jpg", "../a.jpg", "/etc/passwd", ""]),
                          st.sampled_from(["bee", "", "wasp"]), NUMBER_TOKENS, NUMBER_TOKENS, NUMBER_TOKENS,
                          NUMBER_TOKENS), max_size=6))
def test_csv_reader_never_raises_nor_invents_a_box(rows):
    text = "image,label,xmin,ymin,xmax,ymax\n" + "".join(",".join(r).replace("\n", " ") + "\n" for r in rows)
    (ROOT / "csv" / "labels.csv").write_text(text)
    coco, _ = import_annotations("csv", ROOT / "csv" / "labels.csv", ROOT / "csv.json")
    _check_boxes(coco)
    assert all(im["file_name"].endswith("a.jpg") for im in coco["images"])  # nothing outside the folder


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6))
def test_records_are_always_written_as_strict_json(record):
    text = to_json(record)
    back = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert back == json.loads(json.dumps(finite(record)))


@SETTINGS
@given(st.lists(st.binary(max_size=40) | JSON_VALUES.map(lambda v: to_json(v).encode()), max_size=8))
def test_a_results_file_of_any_bytes_is_read_without_raising(lines):
    path = ROOT / "results.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    records, broken = check_jsonl(path)
    assert all(isinstance(r, dict) for _, r in records)
    numbers = [n for n, _ in records] + [n for n, *_ in broken]
    assert len(numbers) == len(set(numbers)) == sum(bool(line.replace(b"\n", b" ").strip()) for line in lines)
